"""Prompt-shaping rewards for Seg-R1's tag answers: they pay for tight, correct prompts, not only for the mask.

The mask reward (`segr1.rewards.SegmentationReward`) pays for whatever prompt gives the segmenter a good mask;
with GrabCut, a loose box often scores as well as a tight one, so a policy can stay vague. These two terms, meant
as auxiliaries in a recipe's ``reward_funcs`` (with small ``reward_weights``), read the ground-truth mask of each
GRPO row (the ``mask`` column) and score the answer's prompts directly:

* ``box_iou``: IoU of the answer's first box with the mask's tight box (inclusive pixel corners, as the SFT
  targets), both in the image frame; 0 without a valid box or for an empty mask.
* ``points``: the share of the answer's points that are right: label-1 points inside the mask, label-0 points
  outside it; 0 without valid points and labels.

The answer is mapped from the model frame to the image frame (`segr1.geometry.to_image_frame`) exactly as the
pipeline maps it before segmenting. A row whose mask cannot be read scores 0 and is logged, never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from segr1 import geometry
from segr1.answer import SegPrompt, parse_answer
from segr1.geometry import mask_to_box, to_image_frame
from segr1.rewards import completion_text, decode_mask

logger = logging.getLogger(__name__)

SHAPING_REWARDS: tuple[str, ...] = ("box_iou", "points")


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes with inclusive pixel corners (`segr1.geometry.box_iou` on the
    pixel areas they cover)."""
    grow = np.array([0.0, 0.0, 1.0, 1.0])
    return geometry.box_iou(np.asarray(a, float) + grow, np.asarray(b, float) + grow)


def point_correctness(prompt: SegPrompt, mask: np.ndarray) -> float:
    """Share of ``prompt``'s points (image frame) on the right side of ``mask``: label 1 inside, label 0
    outside. 0.0 for a prompt without points."""
    n = prompt.points.shape[0]
    if n == 0 or prompt.labels.shape[0] != n:
        return 0.0
    h, w = mask.shape
    xs = np.clip(np.rint(prompt.points[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.rint(prompt.points[:, 1]).astype(int), 0, h - 1)
    inside = mask[ys, xs]
    right = np.where(prompt.labels == 1, inside, ~inside)
    return float(right.mean())


class PromptShapingReward:
    """TRL reward callable: ``box_iou`` or ``points`` (module docstring), for answers in the ``frame`` model
    frame."""

    def __init__(self, term: str, *, frame: int) -> None:
        if term not in SHAPING_REWARDS:
            raise ValueError(f"term must be one of {SHAPING_REWARDS}; got {term!r}")
        self.term = term
        self.frame = int(frame)
        self.__name__ = term

    def __repr__(self) -> str:
        return f"PromptShapingReward({self.term!r}, frame={self.frame})"

    def __call__(
        self, completions: Sequence[Any], *, mask: Sequence[Any] | None = None, **kwargs: Any
    ) -> list[float]:
        if mask is None:
            raise ValueError(f"the {self.term} reward needs the dataset's 'mask' column")
        out: list[float] = []
        cache: dict[int, np.ndarray | None] = {}
        for completion, value in zip(completions, mask, strict=True):
            key = id(value)
            if key not in cache:
                try:
                    cache[key] = decode_mask(value)
                except (OSError, ValueError) as exc:
                    logger.warning("%s reward: unreadable mask (%s); scoring 0", self.term, exc)
                    cache[key] = None
            gt = cache[key]
            out.append(0.0 if gt is None else self.score(completion_text(completion), gt))
        return out

    def score(self, answer: str, gt: np.ndarray) -> float:
        """The term for one answer text against one (H, W) bool ground truth (image frame)."""
        prompt = parse_answer(answer)
        h, w = gt.shape
        v = prompt.validity
        if self.term == "box_iou":
            target = mask_to_box(gt)
            if not v.bbox or prompt.boxes.shape[0] == 0 or target is None:
                return 0.0
            return box_iou(to_image_frame(prompt, (w, h), self.frame).boxes[0], target)
        if not (v.points and v.labels):
            return 0.0
        return point_correctness(to_image_frame(prompt, (w, h), self.frame), gt)
