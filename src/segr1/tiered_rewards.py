"""SAM-R1's tiered mask-IoU reward: the segmenter's mask from the answer's prompts, scored in IoU tiers.

SAM-R1 (arXiv 2505.22596; `segr1.family.SAM_R1`) rewards the IoU of the SAM mask against the ground truth in
steps instead of linearly: IoU > 0.8 -> 4, > 0.7 -> 3, > 0.5 -> 2, else 0 (the tiers are a parameter). The mask
comes from a `segr1.segmenters.Segmenter` exactly as in `segr1.rewards.SegmentationReward` (which this class
extends): every completion is parsed (Seg-Zero / VisionReasoner JSON by default: all its valid boxes and points;
or Seg-R1's tags), completions are grouped by image, and the segmenter is called ONCE per distinct image with
all its completions' prompt sets; a prompt set's mask is the union of its per-box masks (a box takes the points
inside it). Unparsable answers score 0; segmenter and ground-truth failures score 0 and are counted. A JSON answer's
objects are segmented one by one, each with its own box and point(s) (`ObjectsPrompt`), as the families'
inference does and as `segr1.pipeline.SegR1Pipeline` does, and their masks united.

Frames: with ``frame=None`` (the default) answers are in the frame of the row's ``image`` column (GRPO rows hold
the image the model saw, so no rescaling is needed); an int ``frame`` maps from a square model frame of that
side to each image's own size, as `SegmentationReward` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from segr1.answer import SegPrompt, parse_answer
from segr1.family import SAM_R1
from segr1.geometry import clip_prompt, to_image_frame
from segr1.rewards import SegmentationReward, _resize_nearest, completion_text, decode_mask

logger = logging.getLogger(__name__)

ANSWER_FORMATS = ("json", "tags")


@dataclass(eq=False)
class ObjectsPrompt(SegPrompt):
    """The union prompt of an answer (what empty / complete checks read) plus its objects, each segmented with
    its own box and points (`segment_objects`); same frame as the union."""

    objects: list[SegPrompt] = field(default_factory=list)


def objects_prompt(text: str, answer_format: Any) -> ObjectsPrompt:
    """``text`` parsed by ``answer_format`` (a `segr1.formats.AnswerFormat`): its union prompt and its objects."""
    union = answer_format.parse(text)
    fields_ = {f.name: getattr(union, f.name) for f in fields(SegPrompt)}
    return ObjectsPrompt(**fields_, objects=answer_format.objects(text))


def segment_objects(
    segmenter: Any, image: np.ndarray, prompts: list[SegPrompt], to_image: Callable[[SegPrompt], SegPrompt]
) -> list[np.ndarray]:
    """One (H, W) bool mask per prompt on ``image``, in one segmenter call: an `ObjectsPrompt`'s objects are
    segmented one by one and united, any other prompt as one prompt set. ``to_image`` maps a prompt to the
    image frame."""
    h, w = image.shape[:2]
    flat: list[SegPrompt] = []
    owner: list[int] = []
    for k, prompt in enumerate(prompts):
        parts = getattr(prompt, "objects", None) or [prompt]
        for part in parts:
            flat.append(to_image(part))
            owner.append(k)
    masks = segmenter.segment(image, flat)
    if len(masks) != len(flat):
        raise ValueError(f"segmenter returned {len(masks)} masks for {len(flat)} prompt sets")
    out = [np.zeros((h, w), dtype=bool) for _ in prompts]
    for k, mask in zip(owner, masks, strict=True):
        out[k] |= np.asarray(mask, dtype=bool)
    return out


def tier_reward(iou: float, tiers: Sequence[tuple[float, float]]) -> float:
    """The reward of the first tier (highest threshold first) whose threshold the IoU exceeds, else 0.0."""
    for threshold, reward in tiers:
        if iou > threshold:
            return float(reward)
    return 0.0


class TieredMaskIoUReward(SegmentationReward):
    """Tiered mask IoU (see the module docstring). Built once around a segmenter or a spec loaded on first use.

    tiers: ``((threshold, reward), ...)`` by decreasing threshold (default SAM-R1's).
    answer_format: ``"json"`` (`segr1.answer_json`, every valid box and point of every entry) or ``"tags"``.
    frame: None (answers in the ``image`` column's frame) or the square model frame side.
    After each call ``last_stats`` holds ``mask_iou`` (mean), ``tier_<threshold>`` (fraction of completions
    above each threshold), ``empty``, ``errors`` and ``segment_calls``; with TRL's ``log_metric`` the IoU and
    the tier fractions are logged under ``<name>/``.
    """

    def __init__(
        self,
        segmenter: Any = "grabcut",
        *,
        tiers: Sequence[tuple[float, float]] = SAM_R1.reward.tiers,
        answer_format: str = "json",
        frame: int | None = None,
        mask_column: str = "mask",
        num_workers: int = 1,
        name: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        super().__init__(
            segmenter,
            frame=840 if frame is None else frame,
            iou_weight=1.0,
            s_weight=0.0,
            mask_column=mask_column,
            num_workers=num_workers,
            name=name or "tiered_mask_iou",
            device=device,
            dtype=dtype,
        )
        tiers = tuple((float(t), float(r)) for t, r in tiers)
        if not tiers or any(a[0] <= b[0] for a, b in zip(tiers, tiers[1:], strict=False)):
            raise ValueError(
                f"tiers must be a non-empty list of (threshold, reward), decreasing; got {tiers!r}"
            )
        if answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}; got {answer_format!r}")
        self.tiers = tiers
        self.answer_format = answer_format
        self.frame_from_image = frame is None

    def __repr__(self) -> str:
        frame = "image" if self.frame_from_image else self.frame
        return f"TieredMaskIoUReward(name={self.__name__!r}, tiers={self.tiers}, format={self.answer_format!r}, frame={frame})"

    def _parse(self, completion: Any) -> SegPrompt:
        text = completion_text(completion)
        if self.answer_format == "tags":
            return parse_answer(text)
        from segr1.formats import get_format

        return objects_prompt(text, get_format("vision-reasoner-json"))  # reads either JSON layout

    def _segment_group(self, image: np.ndarray, prompts: list[SegPrompt]) -> list[np.ndarray] | None:
        h, w = image.shape[:2]
        try:
            if self.frame_from_image:
                return segment_objects(self.segmenter, image, prompts, lambda p: clip_prompt(p, (w, h)))
            return segment_objects(
                self.segmenter, image, prompts, lambda p: to_image_frame(p, (w, h), self.frame)
            )
        except Exception:  # a reward must never stop training; the failure is logged and counted
            logger.exception(
                "segmenter failed on a %dx%d image; scoring %d completions 0", w, h, len(prompts)
            )
            return None

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        """One tiered reward per completion; ``image`` and the mask column come from the dataset."""
        from segr1.metrics import iou as mask_iou

        n = len(completions)
        images, gts = self._columns(n, kwargs)
        prompts = [self._parse(c) for c in completions]
        masks, errors = self._segment_all(images, prompts)
        ious = [0.0] * n
        gt_cache: dict[Any, np.ndarray] = {}
        for i, pred in sorted(masks.items()):
            try:
                key = gts[i] if isinstance(gts[i], (str, bytes)) else id(gts[i])
                if key not in gt_cache:
                    gt_cache[key] = decode_mask(gts[i])
                gt = gt_cache[key]
                ious[i] = float(mask_iou(_resize_nearest(pred, gt.shape), gt))
            except Exception:  # a broken ground truth must not stop training either
                logger.exception("could not score completion %d against its ground truth; scoring it 0", i)
                errors += 1
                ious[i] = 0.0
        rewards = [tier_reward(v, self.tiers) for v in ious]
        self.last_mean_iou = float(np.mean(ious)) if n else None
        self.last_stats = {
            "mask_iou": self.last_mean_iou or 0.0,
            **{f"tier_{t:g}": float(np.mean([v > t for v in ious])) if n else 0.0 for t, _ in self.tiers},
            "empty": float(np.mean([p.is_empty for p in prompts])) if n else 0.0,
            "errors": float(errors),
            "segment_calls": float(self._last_calls),
        }
        log_metric: Callable[[str, float], None] | None = kwargs.get("log_metric")
        if log_metric is not None and n:
            for key, value in self.last_stats.items():
                if key == "mask_iou" or key.startswith("tier_"):
                    log_metric(f"{self.__name__}/{key}", value)
        return rewards


# Ready-made instances for recipes (`reward_funcs: [segr1.tiered_rewards.sam_r1_tiered_iou]`); each loads its
# segmenter on first use (SAM2 on the default device: this rank's GPU when there is one).
sam_r1_tiered_iou = TieredMaskIoUReward("sam2-hf:facebook/sam2.1-hiera-large", name="sam_r1_tiered_iou")
tiered_iou_grabcut = TieredMaskIoUReward("grabcut", name="tiered_iou_grabcut")
