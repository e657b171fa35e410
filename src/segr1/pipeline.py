"""Image (+ text) -> answer text, prompt, mask and overlay: the Seg-R1 inference pipeline.

Data flow per batch of images::

    image (H, W) ──resize──> model frame (frame x frame) ──policy──> answer text (model frame)
    answer ──parse──> SegPrompt (model frame) ──scale──> SegPrompt (image frame)
    image + SegPrompt (image frame) ──segmenter──> mask (H, W) bool ──> overlay (H, W, 3) uint8

The policy is called once per batch of images, the segmenter once per image.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from segr1.answer import SegPrompt
    from segr1.policies import Policy
    from segr1.segmenters import Segmenter

logger = logging.getLogger(__name__)

ERROR_UNPARSABLE = "unparsable answer"
ERROR_EMPTY_MASK = "empty mask"

ImageInput = Image.Image | np.ndarray


@dataclass
class SegResult:
    """The outcome for one image.

    Attributes:
        answer: the policy's raw completion text (answers in the MODEL frame).
        prompt: the parsed prompt in the IMAGE frame: boxes (N, 4) xyxy, points (M, 2) xy, labels (M,).
        prompt_model_frame: the same prompt as parsed, in the square MODEL frame (``frame`` x ``frame``).
        mask: (H, W) bool at the original image size; all False when ``error`` is set.
        overlay: (H, W, 3) uint8 RGB: the image with the mask, boxes and points drawn.
        timings: seconds: ``generate_s`` (this image's share of the batched policy call), ``segment_s``.
        error: None on success, else why no usable mask came out ("unparsable answer", "empty mask", ...).
        frame: side of the square model frame the policy saw.
    """

    answer: str
    prompt: SegPrompt
    prompt_model_frame: SegPrompt
    mask: np.ndarray
    overlay: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    frame: int = 0

    @property
    def ok(self) -> bool:
        """True when the answer parsed and gave a non-empty mask."""
        return self.error is None

    @property
    def image_size(self) -> tuple[int, int]:
        """(W, H) of the original image."""
        return int(self.mask.shape[1]), int(self.mask.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no pixel arrays): answer, prompts in both frames, area, error, timings."""
        return {
            "answer": self.answer,
            "prompt": self.prompt.to_dict(),
            "prompt_model_frame": self.prompt_model_frame.to_dict(),
            "frame": self.frame,
            "image_size": list(self.image_size),
            "mask_area": int(np.count_nonzero(self.mask)),
            "error": self.error,
            "timings": {k: round(float(v), 6) for k, v in self.timings.items()},
        }

    def to_json(self, **extra: Any) -> str:
        """One JSON line (no newline) of :meth:`to_dict` plus ``extra`` keys (e.g. ``image=path``)."""
        return json.dumps({**extra, **self.to_dict()}, ensure_ascii=False)


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
            it was trained at, else ``segr1.prompts.DEFAULT_FRAME[task]`` (768 foreground, 1024
            referring/reasoning, as the released checkpoints were trained).
        system: system prompt passed to the policy; None -> the one the checkpoint records in
            ``segr1_policy.json`` (``policy.metadata``), else ``segr1.prompts.system_prompt(task)`` (the
            Seg-R1 system prompt for the box tasks, none for "prerl"); "" -> no system turn.
        max_new_tokens: generation budget per answer.
        temperature: 0 -> greedy decoding.
        batch_size: images per policy call.

    Calling the pipeline on one image returns one :class:`SegResult`; on a sequence, a list.
    """

    def __init__(
        self,
        policy: Policy,
        segmenter: Segmenter,
        task: str = "foreground",
        frame: int | None = None,
        system: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        batch_size: int = 4,
    ) -> None:
        from segr1.prompts import DEFAULT_FRAME, TASKS, system_prompt

        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if frame is None:  # the checkpoint's own frame when it records one, else the task default
            frame = getattr(policy, "frame", None) or DEFAULT_FRAME[task]
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 1:
            raise ValueError(f"frame must be a positive int (pixels), got {frame!r}")
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

            system = recorded_system_prompt(getattr(policy, "metadata", None))
        self.system = system_prompt(task) if system is None else (system or None)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.batch_size = batch_size

    @classmethod
    def from_specs(
        cls,
        model: str | None = None,
        segmenter: str = "grabcut",
        task: str = "foreground",
        device: str | None = None,
        **kwargs: Any,
    ) -> SegR1Pipeline:
        """Load a policy and a segmenter by spec and build a pipeline.

        Args:
            model: policy spec for ``segr1.policies.load_policy``: None -> the embedded default,
                else a hub id (``geshang/Seg-R1-7B``) or a local checkpoint folder.
            segmenter: spec for ``segr1.segmenters.load_segmenter``: "grabcut", "sam2-hf:<id|folder>",
                "sam2:<config>@<checkpoint>".
            task: see :class:`SegR1Pipeline`.
            device: e.g. "cuda", "cpu"; None lets each backend choose.
            **kwargs: the other :class:`SegR1Pipeline` arguments (frame, system, max_new_tokens, ...).
        """
        from segr1.policies import load_policy
        from segr1.segmenters import load_segmenter

        seg = load_segmenter(segmenter, device=device)  # first: a bad spec fails before the big model loads
        return cls(load_policy(model, device=device), seg, task=task, **kwargs)

    def __repr__(self) -> str:
        return (
            f"SegR1Pipeline(policy={getattr(self.policy, 'name', '?')!r}, "
            f"segmenter={getattr(self.segmenter, 'name', '?')!r}, task={self.task!r}, frame={self.frame})"
        )

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        texts: str | Sequence[str | None] | None = None,
    ) -> SegResult | list[SegResult]:
        """Segment one image or a sequence of images.

        Args:
            images: a PIL image / (H, W, 3) uint8 RGB array, or a sequence of them (sizes may differ).
            texts: the referring expression or question: one string for all images, one per image, or
                None (foreground task). Required for "referring" and "reasoning".

        Returns:
            one :class:`SegResult` for a single image, else a list in input order. Unparsable answers and
            empty masks are recorded in ``SegResult.error``, not raised.
        """
        single = isinstance(images, (Image.Image, np.ndarray))
        image_list: list[ImageInput] = [images] if single else list(images)  # type: ignore[list-item]
        text_list = self._texts_for(texts, len(image_list))
        results: list[SegResult] = []
        for start in range(0, len(image_list), self.batch_size):
            stop = start + self.batch_size
            results.extend(self._run_batch(image_list[start:stop], text_list[start:stop]))
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

    def _run_batch(self, images: list[ImageInput], texts: list[str | None]) -> list[SegResult]:
        from segr1.geometry import resize_to_frame
        from segr1.prompts import build_instruction

        arrays = [as_rgb_array(im) for im in images]
        model_images = [resize_to_frame(Image.fromarray(a), self.frame) for a in arrays]
        instructions = [build_instruction(self.task, t, self.frame) for t in texts]
        t0 = time.perf_counter()
        completions = self.policy.generate(
            model_images,
            instructions,
            num_samples=1,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            system=self.system,
        )
        generate_s = (time.perf_counter() - t0) / max(len(arrays), 1)
        if len(completions) != len(arrays):
            raise RuntimeError(f"policy returned {len(completions)} answers for {len(arrays)} images")
        return [
            self._finish(array, samples[0] if samples else "", generate_s)
            for array, samples in zip(arrays, completions, strict=True)
        ]

    def _finish(self, image: np.ndarray, answer: str, generate_s: float) -> SegResult:
        """Parse one answer, map it to the image frame, segment and draw."""
        from segr1.answer import parse_answer
        from segr1.geometry import to_image_frame
        from segr1.overlay import draw_overlay

        height, width = image.shape[:2]
        prompt_model = parse_answer(answer)
        prompt = to_image_frame(prompt_model, (width, height), self.frame)
        mask = np.zeros((height, width), dtype=bool)
        error: str | None = None
        t0 = time.perf_counter()
        if prompt.is_empty:
            error = ERROR_UNPARSABLE
        else:
            try:
                mask = self._segment(image, prompt)
            except Exception as exc:  # a bad image or prompt must not stop a batch job
                name = getattr(self.segmenter, "name", "?")
                logger.error("segmenter %r failed: %s: %s", name, type(exc).__name__, exc)
                logger.debug("segmenter %r traceback", name, exc_info=True)  # shown with --debug
                error = f"segmentation failed: {type(exc).__name__}: {exc}"
            else:
                if not mask.any():
                    error = ERROR_EMPTY_MASK
        segment_s = time.perf_counter() - t0
        return SegResult(
            answer=answer,
            prompt=prompt,
            prompt_model_frame=prompt_model,
            mask=mask,
            overlay=draw_overlay(image, mask, prompt),
            timings={"generate_s": generate_s, "segment_s": segment_s},
            error=error,
            frame=self.frame,
        )

    def _segment(self, image: np.ndarray, prompt: SegPrompt) -> np.ndarray:
        (mask,) = self.segmenter.segment(image, [prompt])
        mask = np.asarray(mask).astype(bool)
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"segmenter returned a mask of shape {mask.shape} for an image of {image.shape[:2]}"
            )
        return mask
