"""Image (+ text) -> answer text, prompt, mask and overlay: the Seg-R1 inference pipeline.

Data flow per batch of images::

    image (H, W) ──resize──> model frame (frame x frame) ──policy──> answer text (model frame)
    answer ──parse──> one SegPrompt per object (model frame) ──scale──> SegPrompts (image frame)
    image + SegPrompts (image frame) ──segmenter──> one mask (H, W) bool per object ──union──> mask
    masks ──> overlay (H, W, 3) uint8 (one colour per object when there are several)

An *object* (instance) is one ``<bbox>`` with the points inside it in Seg-R1's tags, one entry of a
VisionReasoner answer, the one object of a Seg-Zero answer (`segr1.formats.AnswerFormat.objects`); the union of
the instance masks is the mask Seg-R1 always returned. The policy is called once per batch of images (once per
distinct system turn), the segmenter once per image with all its objects. The instruction, system turn, frame
and answer budget come from the checkpoint's prompt style (:mod:`segr1.styles`), the parser from its answer
format (:mod:`segr1.formats`), and the release-protocol switches (:mod:`segr1.protocol`) from ``protocol``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from segr1.result import SegResult

if TYPE_CHECKING:
    from segr1.answer import SegPrompt
    from segr1.policies import Policy
    from segr1.segmenters import Segmenter

logger = logging.getLogger(__name__)

ERROR_UNPARSABLE = "unparsable answer"
ERROR_TRUNCATED = "truncated answer"  # the budget ran out before the answer held a usable prompt
ERROR_EMPTY_MASK = "empty mask"
PIPELINE_STAGES = ("eval", "demo")

ImageInput = Image.Image | np.ndarray

__all__ = [
    "ERROR_EMPTY_MASK",
    "ERROR_TRUNCATED",
    "ERROR_UNPARSABLE",
    "SegR1Pipeline",
    "SegResult",
    "as_rgb_array",
]


def as_rgb_array(image: ImageInput) -> np.ndarray:
    """Return ``image`` as a contiguous (H, W, 3) uint8 RGB array.

    Accepts a PIL image of any mode, or an array (H, W) grey, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA
    (alpha dropped) of dtype uint8, or bool / float in [0, 1].
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a PIL.Image or np.ndarray, got {type(image).__name__}")
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    arr = arr[:, :, :3]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"image array dtype must be uint8, bool or float in [0, 1], got {arr.dtype}")
    return np.ascontiguousarray(arr)


class SegR1Pipeline:
    """Seg-R1 inference: a policy writes box/point prompts, a segmenter turns them into a mask.

    Args:
        policy: a ``segr1.policies.Policy`` (``generate(images, instructions, ...)``).
        segmenter: a ``segr1.segmenters.Segmenter`` (``segment(image, prompts)``).
        task: "foreground", "referring", "reasoning" or "prerl"; picks the instruction template.
        frame: side of the square model frame; None -> ``policy.frame`` when the policy records the frame
            it was trained at, else the prompt style's (768 foreground, 1024 referring/reasoning; 1024 for
            the seg-r1 style's demo stage).
        system: system prompt passed to the policy; None -> the one the checkpoint records in
            ``segr1_policy.json`` (``policy.metadata``), else the prompt style's (for the seg-r1 demo stage it
            depends on the typed text); "" -> no system turn.
        max_new_tokens: generation budget per answer; None -> the prompt style's (segr1: 256; seg-r1: the
            release's 1024 foreground, 512 referring/reasoning, 1024 demo).
        temperature: 0 -> greedy decoding.
        batch_size: images per policy call.
        prompt_style: a style name or object; None -> `segr1.styles.style_for(policy.metadata)` (what the
            checkpoint records; ``seg-r1`` when it records nothing).
        answer_format: a format name or object; None -> what the checkpoint records, else the prompt style's
            (``seg-r1``'s tags for the segr1 and seg-r1 styles; the families' JSON for theirs). With an explicit
            ``prompt_style`` the style's format wins over the recorded one.
        protocol: release-protocol switches (`segr1.protocol.get_protocol` spec or object); None -> ``segr1``.
        stage: "eval" (default) or "demo": which of the style's texts, frames and budgets to use.

    Calling the pipeline on one image returns one :class:`SegResult`; on a sequence, a list.
    """

    def __init__(
        self,
        policy: Policy,
        segmenter: Segmenter,
        task: str = "foreground",
        frame: int | None = None,
        system: str | None = None,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        batch_size: int = 4,
        *,
        prompt_style: Any = None,
        answer_format: Any = None,
        protocol: Any = None,
        stage: str = "eval",
    ) -> None:
        from segr1.formats import format_for
        from segr1.protocol import for_style, get_protocol
        from segr1.styles import TASKS, style_for

        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if stage not in PIPELINE_STAGES:
            raise ValueError(f"stage must be one of {PIPELINE_STAGES}, got {stage!r}")
        metadata = getattr(policy, "metadata", None) or {}
        self.style = style_for(metadata, prompt_style)
        self.answer_format = format_for(metadata if prompt_style is None else None, answer_format, self.style)
        self.protocol = for_style(get_protocol(protocol, "demo" if stage == "demo" else "eval"), self.style)
        self.stage = stage
        if frame is None:  # the checkpoint's own frame when it records one, else the style's
            frame = getattr(policy, "frame", None) or self.style.frame(task, stage)
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 1:
            raise ValueError(f"frame must be a positive int (pixels), got {frame!r}")
        if max_new_tokens is None:
            max_new_tokens = self.style.max_new_tokens(task, stage)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        from segr1.policies import task_warning

        warning = task_warning(getattr(policy, "metadata", None), task, getattr(policy, "name", "the policy"))
        if warning:
            logger.warning(warning)
        self.policy = policy
        self.segmenter = segmenter
        self.task = task
        self.frame = frame
        if system is None:  # the system turn the checkpoint was trained with, when it records one
            from segr1.policies import recorded_system_prompt

            system = recorded_system_prompt(metadata)
        self._system = system  # None: the style's; "": no system turn; else this text
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.batch_size = batch_size

    @property
    def system(self) -> str | None:
        """The system turn of an instruction that does not choose its own (None: no system turn)."""
        return self.system_for(None)

    def system_for(self, user_text: str | None) -> str | None:
        """The system turn paired with ``user_text`` (the seg-r1 demo stage picks it by the text)."""
        if self._system is not None:
            return self._system or None
        return self.style.system(self.task, self.stage, user_text)

    @classmethod
    def from_specs(
        cls,
        model: str | None = None,
        segmenter: str | None = None,
        task: str = "foreground",
        device: str | None = None,
        **kwargs: Any,
    ) -> SegR1Pipeline:
        """Load a policy and a segmenter by spec and build a pipeline.

        Args:
            model: policy spec for ``segr1.policies.load_policy``: None -> the embedded default,
                else a hub id (``geshang/Seg-R1-7B``) or a local checkpoint folder.
            segmenter: spec for ``segr1.segmenters.load_segmenter``: "grabcut", "sam2-hf:<id|folder>",
                "sam2:<config>@<checkpoint>"; None -> `segr1.defaults.default_segmenter(model)` (GrabCut for
                the embedded policy, SAM2.1-hiera-large for any other).
            task: see :class:`SegR1Pipeline`.
            device: e.g. "cuda", "cpu"; None lets each backend choose.
            **kwargs: the other :class:`SegR1Pipeline` arguments (frame, system, max_new_tokens, prompt_style,
                protocol, ...). The protocol's SAM2 switches (fp32, single-point mask) reach the segmenter.
        """
        from segr1.defaults import default_segmenter
        from segr1.policies import load_policy, parse_policy_spec
        from segr1.protocol import get_protocol, segmenter_options
        from segr1.segmenters import load_segmenter

        _, source = parse_policy_spec(model)  # a bad --model fails before anything loads
        if source is not None:  # a missing folder or an uncached hub id offline: say so before SAM2 loads
            from segr1.hub import check_model_source

            check_model_source(source, "policy", "geshang/Seg-R1-7B")
        options = segmenter_options(get_protocol(kwargs.get("protocol")))
        spec = segmenter if segmenter is not None else default_segmenter(model)
        seg = load_segmenter(spec, device=device, **options)  # before the big policy: a bad spec fails fast
        return cls(load_policy(model, device=device), seg, task=task, **kwargs)

    def __repr__(self) -> str:
        return (
            f"SegR1Pipeline(policy={getattr(self.policy, 'name', '?')!r}, "
            f"segmenter={getattr(self.segmenter, 'name', '?')!r}, task={self.task!r}, frame={self.frame}, "
            f"prompt_style={self.style.name!r}, answer_format={self.answer_format.name!r}, "
            f"protocol={self.protocol.name!r})"
        )

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        texts: str | Sequence[str | None] | None = None,
        query_kinds: str | Sequence[str | None] | None = None,
    ) -> SegResult | list[SegResult]:
        """Segment one image or a sequence of images.

        Args:
            images: a PIL image / (H, W, 3) uint8 RGB array, or a sequence of them (sizes may differ).
            texts: the referring expression or question: one string for all images, one per image, or
                None (foreground task). Required for "referring" and "reasoning".
            query_kinds: reasoning queries: "sentence" or "phrase" (ReasonSeg's ``is_sentence``), one for all
                or one per image; styles with a template per kind use it (None: the sentence one).

        Returns:
            one :class:`SegResult` for a single image, else a list in input order. Unparsable and truncated
            answers and empty masks are recorded in ``SegResult.error``, not raised.
        """
        single = isinstance(images, (Image.Image, np.ndarray))
        image_list: list[ImageInput] = [images] if single else list(images)  # type: ignore[list-item]
        text_list = self._texts_for(texts, len(image_list))
        if query_kinds is None or isinstance(query_kinds, str):
            kind_list: list[str | None] = [query_kinds] * len(image_list)
        else:
            kind_list = list(query_kinds)
            if len(kind_list) != len(image_list):
                raise ValueError(f"got {len(kind_list)} query kinds for {len(image_list)} images")
        results: list[SegResult] = []
        for start in range(0, len(image_list), self.batch_size):
            stop = start + self.batch_size
            results.extend(
                self._run_batch(image_list[start:stop], text_list[start:stop], kind_list[start:stop])
            )
        return results[0] if single else results

    def _texts_for(self, texts: str | Sequence[str | None] | None, n: int) -> list[str | None]:
        if texts is None or isinstance(texts, str):
            text_list: list[str | None] = [texts] * n
        else:
            text_list = list(texts)
            if len(text_list) != n:
                raise ValueError(f"got {len(text_list)} texts for {n} images; pass one text or one per image")
        if self.task in ("referring", "reasoning"):
            missing = [i for i, t in enumerate(text_list) if not (t and t.strip())]
            if missing:
                raise ValueError(
                    f"task {self.task!r} needs a text for every image; missing for images {missing}"
                )
        return text_list

    def _run_batch(
        self, images: list[ImageInput], texts: list[str | None], kinds: list[str | None]
    ) -> list[SegResult]:
        from segr1.policies import generate_with_info
        from segr1.protocol import model_image

        arrays = [as_rgb_array(im) for im in images]
        model_images = [model_image(a, self.frame, self.protocol) for a in arrays]
        instructions = [
            self.style.user(self.task, t, frame=self.frame, stage=self.stage, query_kind=k)
            for t, k in zip(texts, kinds, strict=True)
        ]
        systems = [self.system_for(u) for u in instructions]
        answers: list[str] = [""] * len(arrays)
        truncated: list[bool] = [False] * len(arrays)
        # Only a text-first style passes the order, so policies written for image-first prompts keep working.
        order = {} if getattr(self.style, "image_first", True) else {"image_first": False}
        t0 = time.perf_counter()
        for system in dict.fromkeys(systems):  # one policy call per distinct system turn, in first-seen order
            idx = [i for i, s in enumerate(systems) if s == system]
            got = generate_with_info(
                self.policy,
                [model_images[i] for i in idx],
                [instructions[i] for i in idx],
                num_samples=1,
                temperature=self.temperature,
                max_new_tokens=self.max_new_tokens,
                system=system,
                **order,
            )
            if len(got.texts) != len(idx):
                raise RuntimeError(f"policy returned {len(got.texts)} answers for {len(idx)} images")
            for j, i in enumerate(idx):
                answers[i] = got.texts[j][0] if got.texts[j] else ""
                truncated[i] = bool(got.truncated[j][0]) if got.truncated[j] else False
        generate_s = (time.perf_counter() - t0) / max(len(arrays), 1)
        return [
            self._finish(array, answer, generate_s, cut)
            for array, answer, cut in zip(arrays, answers, truncated, strict=True)
        ]

    def _finish(
        self, image: np.ndarray, answer: str, generate_s: float, truncated: bool = False
    ) -> SegResult:
        """Parse one answer into its objects, map them to the image frame, segment each and draw."""
        from segr1.geometry import split_by_box, to_image_frame
        from segr1.overlay import draw_instance_overlay, draw_overlay
        from segr1.protocol import adjust_prompt

        height, width = image.shape[:2]
        parsed = self.answer_format.parse(answer)
        prompt_model = adjust_prompt(parsed, self.task, self.protocol)
        # the format's objects, unless a protocol switch changed the prompt (then Seg-R1's split of what is left)
        objects_model = (
            self.answer_format.objects(answer) if prompt_model is parsed else split_by_box(prompt_model)
        )
        prompt = to_image_frame(prompt_model, (width, height), self.frame)
        objects = [to_image_frame(o, (width, height), self.frame) for o in objects_model]
        mask = np.zeros((height, width), dtype=bool)
        instances: list[np.ndarray] = []
        error: str | None = None
        t0 = time.perf_counter()
        if not objects:
            error = ERROR_TRUNCATED if truncated else ERROR_UNPARSABLE
            objects = []
        else:
            try:
                instances = self._segment(image, objects, objects_model)
            except Exception as exc:  # a bad image or prompt must not stop a batch job
                name = getattr(self.segmenter, "name", "?")
                logger.error("segmenter %r failed: %s: %s", name, type(exc).__name__, exc)
                logger.debug("segmenter %r traceback", name, exc_info=True)  # shown with --debug
                error = f"segmentation failed: {type(exc).__name__}: {exc}"
                instances, objects = [], []
            else:
                mask = np.logical_or.reduce(instances) if len(instances) > 1 else instances[0].copy()
                if not mask.any():
                    error = ERROR_EMPTY_MASK
        segment_s = time.perf_counter() - t0
        if len(instances) > 1:
            overlay = draw_instance_overlay(image, instances, objects)
        else:
            overlay = draw_overlay(image, mask, prompt)
        return SegResult(
            answer=answer,
            prompt=prompt,
            prompt_model_frame=prompt_model,
            mask=mask,
            overlay=overlay,
            timings={"generate_s": generate_s, "segment_s": segment_s},
            error=error,
            frame=self.frame,
            truncated=truncated,
            instances=instances,
            instance_prompts=objects,
        )

    def _segment(
        self, image: np.ndarray, prompts: list[SegPrompt], prompts_model: list[SegPrompt] | None = None
    ) -> list[np.ndarray]:
        """One (H, W) bool mask per prompt (image frame) on ``image``, in one segmenter call; the protocol's
        ``ablation_*`` switches instead segment the squashed model-frame image (with ``prompts_model``) and/or
        swap its channels."""
        protocol = self.protocol
        on_frame = protocol.ablation_sam_on_model_frame and prompts_model is not None
        if on_frame:
            from segr1.geometry import clip_prompt

            seg_image = np.asarray(
                Image.fromarray(image).resize((self.frame, self.frame), Image.Resampling.BILINEAR)
            )
            seg_prompts = [clip_prompt(p, (self.frame, self.frame)) for p in prompts_model]  # type: ignore[union-attr]
        else:
            seg_image, seg_prompts = image, prompts
        if protocol.ablation_bgr_to_sam:
            seg_image = np.ascontiguousarray(seg_image[:, :, ::-1])
        masks = self.segmenter.segment(seg_image, seg_prompts)
        if len(masks) != len(seg_prompts):
            raise ValueError(f"segmenter returned {len(masks)} masks for {len(seg_prompts)} prompt sets")
        out = []
        for mask in masks:
            mask = np.asarray(mask).astype(bool)
            if mask.shape != seg_image.shape[:2]:
                raise ValueError(
                    f"segmenter returned a mask of shape {mask.shape} for an image of {seg_image.shape[:2]}"
                )
            if on_frame:  # back to the image size as the release did: bilinear on 0/255, then > 128
                height, width = image.shape[:2]
                back = Image.fromarray(mask.astype(np.uint8) * 255).resize(
                    (width, height), Image.Resampling.BILINEAR
                )
                mask = np.asarray(back) > 128
            out.append(mask)
        return out
