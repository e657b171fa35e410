"""The family rewards by short name, for ``reward_funcs`` in recipes (beside ``segmentation``, ``format``, ...).

=========================================  ==================================================================
name                                       reward (TRL's shape; `segr1.family_rewards`, `segr1.tiered_rewards`)
=========================================  ==================================================================
``seg_zero``, ``vision_reasoner``          the family's published reward, all its terms summed in one callable
                                           (Seg-Zero: max 5; VisionReasoner: max 7)
``seg_zero_<term>``,                       one term: ``think_format``, ``json_format``, ``box_iou``, ``box_l1``,
``vision_reasoner_<term>``                 ``point``, ``accuracy`` (the three accuracy terms summed),
                                           ``point_in_box``; VisionReasoner also ``non_repeat``
``non_repeat``                             VisionReasoner's non-repeat reward (0 once two sentences repeat)
``sam_r1_tiered``                          SAM-R1's tiered mask IoU (> 0.8: 4, > 0.7: 3, > 0.5: 2) of the recipe's
                                           ``segmenter`` (GrabCut in the tiny recipes, SAM2 in the paper's)
=========================================  ==================================================================

Every box / point reward is built with the recipe's model frame (its pixel thresholds scale from 840) and reads
the ground-truth objects from the GRPO rows (``boxes`` / ``points`` / ``instances`` / ``mask``, `segr1.gt_columns`).
The mask rewards (``segmentation``, ``sam_r1_tiered``) parse answers in the recipe's answer format: Seg-R1's tags
or the families' JSON (`FormattedSegmentationReward`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from segr1.rewards import SegmentationReward, completion_text

logger = logging.getLogger(__name__)

FAMILY_NAMES = {"seg_zero": "seg-zero", "vision_reasoner": "vision-reasoner"}
_TERMS = {
    "seg-zero": ("think_format", "json_format", "box_iou", "box_l1", "point", "accuracy", "point_in_box"),
    "vision-reasoner": (
        "think_format",
        "json_format",
        "box_iou",
        "box_l1",
        "point",
        "accuracy",
        "point_in_box",
        "non_repeat",
    ),
}
#: Every short name this module builds.
NAMED_REWARDS: tuple[str, ...] = (
    *FAMILY_NAMES,
    *(f"{short}_{term}" for short, family in FAMILY_NAMES.items() for term in _TERMS[family]),
    "non_repeat",
    "sam_r1_tiered",
)


class PublishedReward:
    """A family's published reward in one callable: the weight-1 sum of `segr1.family_rewards.published_rewards`.
    ``last_stats`` holds each term's mean after a call (``<term>``) and the mean total (``mean``)."""

    def __init__(self, family: str, *, frame: int | None = None, name: str | None = None) -> None:
        from segr1.family_rewards import published_rewards

        self.terms = published_rewards(family, frame=frame)
        self.family = family
        self.__name__ = name or family.replace("-", "_")
        self.last_stats: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"PublishedReward(family={self.family!r}, terms={[t.term for t in self.terms]})"

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        per_term = [term(completions, **kwargs) for term in self.terms]
        totals = [float(sum(values)) for values in zip(*per_term, strict=True)] if per_term else []
        self.last_stats = {
            t.term: float(np.mean(v)) if v else 0.0 for t, v in zip(self.terms, per_term, strict=True)
        }
        self.last_stats["mean"] = float(np.mean(totals)) if totals else 0.0
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and totals:
            for term, value in self.last_stats.items():
                if term != "mean":
                    log_metric(f"{self.__name__}/{term}", value)
        return totals


class FormattedSegmentationReward(SegmentationReward):
    """`segr1.rewards.SegmentationReward` (0.7 IoU + 0.3 S-measure of the segmenter's mask) on answers in another
    answer format: ``answer_format`` (a `segr1.formats.AnswerFormat` or name) parses each completion into its
    objects, each segmented with its own box and point(s) and united (`segr1.tiered_rewards.segment_objects`),
    as the pipeline segments them at inference. Everything else -- grouping by image, one segmenter call per
    image, the protocol's switches -- is the parent's."""

    def __init__(self, segmenter: Any = "grabcut", *, answer_format: Any, **kwargs: Any) -> None:
        from segr1.formats import get_format

        super().__init__(segmenter, **kwargs)
        self.answer_format = get_format(answer_format)

    def _parse(self, completion: Any) -> Any:
        from segr1.answer import SegPrompt
        from segr1.tiered_rewards import objects_prompt

        prompt = objects_prompt(completion_text(completion), self.answer_format)
        if self.requires_complete:
            v = prompt.validity
            if not (v.points and v.labels and (self.points_only or v.bbox)):
                return SegPrompt(validity=v)
        if self.points_only and prompt.boxes.shape[0]:
            objects = [replace(o, boxes=np.zeros((0, 4))) for o in prompt.objects]
            prompt = replace(prompt, boxes=np.zeros((0, 4)), objects=objects)
        return prompt

    def _segment_group(self, image: np.ndarray, prompts: list[Any]) -> list[np.ndarray] | None:
        from segr1.geometry import to_image_frame
        from segr1.tiered_rewards import segment_objects

        h, w = image.shape[:2]
        try:
            return segment_objects(
                self.segmenter, image, prompts, lambda p: to_image_frame(p, (w, h), self.frame)
            )
        except Exception:  # a reward must never stop training; the failure is logged and counted
            logger.exception(
                "segmenter failed on a %dx%d image; scoring %d completions 0", w, h, len(prompts)
            )
            return None


def build_named_reward(
    name: str, *, frame: int, segmenter: str, answer_format: Any, device: str | None = None
) -> Any:
    """The reward called ``name`` (one of `NAMED_REWARDS`). ``frame``: the model frame of the recipe;
    ``segmenter``: the recipe's segmenter spec (``sam_r1_tiered``); ``answer_format``: the recipe's format."""
    from segr1.family_rewards import FamilyReward

    if name in FAMILY_NAMES:
        return PublishedReward(FAMILY_NAMES[name], frame=frame, name=name)
    if name == "non_repeat":
        return FamilyReward("non_repeat", "vision-reasoner", frame=frame, name="non_repeat")
    if name == "sam_r1_tiered":
        from segr1.formats import DEFAULT_FORMAT, get_format
        from segr1.tiered_rewards import TieredMaskIoUReward

        tags = get_format(answer_format).name == DEFAULT_FORMAT
        return TieredMaskIoUReward(
            segmenter, answer_format="tags" if tags else "json", name=name, device=device
        )
    for short, family in FAMILY_NAMES.items():
        term = name.removeprefix(f"{short}_")
        if name.startswith(f"{short}_") and term in _TERMS[family]:
            return FamilyReward(term, family, frame=frame, name=name)
    raise ValueError(f"unknown reward {name!r}; the family rewards are {', '.join(NAMED_REWARDS)}")
