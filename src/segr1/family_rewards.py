"""Seg-Zero / VisionReasoner rewards in TRL's shape: box and point terms matched object by object, no segmenter.

Every reward is a `FamilyReward` (a callable with a readable ``__name__``) for one *term* of one family's
published reward (`segr1.family`: Seg-Zero's ``seg_strict``, VisionReasoner's ``vision_reasoner``):

* ``think_format``: 1.0 when the whole completion is ``<think>...</think>\\s*<answer>...</answer>``.
* ``json_format``: VisionReasoner: per entry, 1 for a valid ``bbox_2d`` and 1 for a valid ``point_2d``, divided by
  the number of entries (range [0, 2]); Seg-Zero: 1.0 when ``bbox``, ``points_1`` and ``points_2`` are valid.
* ``box_iou`` / ``box_l1`` / ``point``: the accuracy terms. Predicted and ground-truth objects are matched
  one-to-one with `scipy.optimize.linear_sum_assignment` on the summed hit matrix (IoU > 0.5; mean absolute
  corner difference < 10 px; point within 30 px of the ground-truth point and inside its own predicted box --
  Seg-Zero: both points inside the box, matched two-to-two, mean distance < 100 px); each term is its matched
  hits divided by max(#predicted, #ground truth). The three terms sum to ``accuracy`` (also a term), the
  published accuracy reward, range [0, 3].
* ``non_repeat``: VisionReasoner's: 0.0 when two sentences (the text split on '.') repeat an earlier one.
* ``point_in_box``: a diagnostic outside the published sums: the fraction of valid entries whose point(s) lie in
  their own box.

The published total is the sum of the family's terms with weight 1 (`published_rewards`): VisionReasoner
think_format + json_format + box_iou + box_l1 + point + non_repeat (max 7); Seg-Zero the same without
non_repeat (max 5).

Frames. Answers are in the model frame; the pixel thresholds are in ``reference_frame`` (840) pixels and are
scaled by ``max(frame) / 840`` when the policy sees another frame (``scale_thresholds``). The model frame is
``frame`` when given, else the size of the row's ``image`` column (GRPO rows hold the image the model saw).

Ground truth comes from dataset columns (`segr1.gt_columns`): ``boxes`` (N, 4) image frame with optional
``points`` and ``image_size``; else an ``instances`` map; else the ``mask`` column (one object, or one per
connected component with ``gt_from_mask="components"``). Broken rows score 0.0 and are counted
(``last_stats["errors"]``); a missing column raises ValueError.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from segr1.answer_json import MAX_TEXT_CHARS, JsonAnswer, parse_json_answer, structure_ok
from segr1.family import FamilyProtocol, get_family
from segr1.gt_columns import GT_FROM_MASK, frame_of, ground_truth
from segr1.rewards import completion_text

logger = logging.getLogger(__name__)

TERMS = (
    "think_format",
    "json_format",
    "non_repeat",
    "point_in_box",
    "box_iou",
    "box_l1",
    "point",
    "accuracy",
)
_GT_TERMS = ("box_iou", "box_l1", "point", "accuracy")


@lru_cache(maxsize=4096)
def parse_cached(text: str) -> JsonAnswer:
    """`parse_json_answer` memoised on the text (the rewards of one step parse each completion once). The
    answer is shared: treat it as read-only."""
    return parse_json_answer(text)


# -------------------------------------------------------------------------------------------- the terms


def box_iou_matrix(
    a: np.ndarray, b: np.ndarray, *, inclusive: bool = True, strict: bool = False
) -> np.ndarray:
    """(M, N) IoU of boxes a (M, 4) and b (N, 4), xyxy. ``inclusive``: a box covers ``x2 - x1 + 1`` columns
    (both projects' convention). ``strict``: no intersection unless the overlap is positive in both axes
    before the +1 (Seg-Zero's scalar IoU). 0 where the union is empty."""
    one = 1.0 if inclusive else 0.0
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(0.0, x2 - x1 + one) * np.maximum(0.0, y2 - y1 + one)
    if strict:
        inter = np.where((x1 < x2) & (y1 < y2), inter, 0.0)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M,) all of each object's points (M, K, 2) lie in its own box (M, 4), borders included."""
    x, y = points[..., 0], points[..., 1]
    return np.all(
        (x >= boxes[:, None, 0])
        & (x <= boxes[:, None, 2])
        & (y >= boxes[:, None, 1])
        & (y <= boxes[:, None, 3]),
        axis=1,
    )


def accuracy_terms(
    answer: JsonAnswer,
    gt_boxes: np.ndarray,
    gt_points: np.ndarray,
    protocol: FamilyProtocol,
    *,
    scale: float = 1.0,
) -> tuple[float, float, float]:
    """(box_iou, box_l1, point) of an answer against ground truth already in the model frame: boxes (N, 4),
    points (N, K, 2). Hungarian matching on the summed hits; each term's matched hits / max(M, N). Thresholds
    in pixels are multiplied by ``scale``. (0, 0, 0) for a broken answer or no ground truth."""
    spec, v = protocol.reward, answer.validity
    if not v.json or v.layout != protocol.layout or not answer.objects or gt_boxes.shape[0] == 0:
        return 0.0, 0.0, 0.0
    objects = answer.objects[: spec.max_objects]
    box_ok = np.array(v.box_ok[: spec.max_objects])
    point_ok = box_ok & np.array(v.point_ok[: spec.max_objects])
    if spec.all_or_nothing and not point_ok.all():
        return 0.0, 0.0, 0.0
    gt_boxes, gt_points = gt_boxes[: spec.max_objects], gt_points[: spec.max_objects]
    k = 2 if spec.point_rule == "pair" else 1
    m, n = len(objects), gt_boxes.shape[0]
    pb = np.array([o.boxes[0] if o.boxes.shape[0] else np.zeros(4) for o in objects])
    pp = np.array([o.points[:k] if o.points.shape[0] >= k else np.zeros((k, 2)) for o in objects])
    if spec.truncate_points:
        pp = np.trunc(pp)
    iou_hit = box_iou_matrix(pb, gt_boxes, strict=spec.iou_strict_overlap) > spec.iou_threshold
    l1_hit = np.abs(pb[:, None, :] - gt_boxes[None, :, :]).mean(axis=2) < spec.l1_threshold * scale
    if k == 1:
        dist = np.linalg.norm(pp[:, None, 0, :] - gt_points[None, :, 0, :], axis=2)
    else:
        g = gt_points if gt_points.shape[1] >= 2 else np.repeat(gt_points, 2, axis=1)
        d = np.linalg.norm(pp[:, None, :, None, :] - g[None, :, None, :2, :], axis=4)  # (M, N, 2, 2)
        dist = np.minimum(d[..., 0, 0] + d[..., 1, 1], d[..., 0, 1] + d[..., 1, 0]) / 2
    point_hit = (dist < spec.point_threshold * scale) & (point_ok & _inside(pp, pb))[:, None]
    hits = np.stack([iou_hit, l1_hit, point_hit]).astype(np.float64) * box_ok[None, :, None]
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(3.0 - hits.sum(axis=0))
    matched = hits[:, rows, cols].sum(axis=1) / max(m, n)
    return float(matched[0]), float(matched[1]), float(matched[2])


def json_format_score(answer: JsonAnswer, protocol: FamilyProtocol) -> float:
    """The family's segmentation-format reward (see the module docstring)."""
    v = answer.validity
    if not v.json or v.layout != protocol.layout or v.entries == 0:
        return 0.0
    if protocol.reward.format_per_object:
        return (sum(v.box_ok) + sum(v.point_ok)) / v.entries
    return 1.0 if v.box_ok[0] and v.point_ok[0] else 0.0


def non_repeat_score(text: str) -> float:
    """VisionReasoner's non-repeat reward: 0.0 once two sentences (split on '.', stripped, empty ones dropped)
    repeat an earlier sentence, else 1.0."""
    seen: set[str] = set()
    repeats = 0
    for sentence in text[:MAX_TEXT_CHARS].split("."):
        sentence = sentence.strip()
        if not sentence:
            continue
        if sentence in seen:
            repeats += 1
            if repeats >= 2:
                return 0.0
        seen.add(sentence)
    return 1.0


def point_in_box_score(answer: JsonAnswer) -> float:
    """Fraction of entries with a valid box and point(s) whose point(s) lie in their own box (0.0: none)."""
    v = answer.validity
    ok = [o for o, b, p in zip(answer.objects, v.box_ok, v.point_ok, strict=True) if b and p]
    if not ok:
        return 0.0
    return float(np.mean(_inside(np.array([o.points for o in ok]), np.array([o.boxes[0] for o in ok]))))


# -------------------------------------------------------------------------------------------- the callable


class FamilyReward:
    """One term of a family's reward (`TERMS`), in TRL's shape: ``reward(completions, **columns) -> list[float]``.

    ``family``: ``"vision-reasoner"`` or ``"seg-zero"`` (`segr1.family`). ``frame``: the model frame side, or
    None to read it from each row's ``image`` column. ``gt_from_mask``: how a ``mask``-only row becomes objects
    (`GT_FROM_MASK`). ``scale_thresholds``: scale pixel thresholds by ``frame / 840``. After each call
    ``last_stats`` holds the mean reward and the number of rows that could not be scored.
    """

    def __init__(
        self,
        term: str,
        family: str = "vision-reasoner",
        *,
        frame: int | None = None,
        gt_from_mask: str = "union",
        scale_thresholds: bool = True,
        name: str | None = None,
    ) -> None:
        if term not in TERMS:
            raise ValueError(f"unknown term {term!r}; choose one of {TERMS}")
        self.protocol = get_family(family)
        if self.protocol.layout is None:
            raise ValueError(
                f"family {family!r} has no JSON answer layout; its rewards are not box/point rewards"
            )
        if frame is not None and (not isinstance(frame, int) or frame <= 0):
            raise ValueError(
                f"frame must be a positive int or None (read from the image column); got {frame!r}"
            )
        if gt_from_mask not in GT_FROM_MASK:
            raise ValueError(f"gt_from_mask must be one of {GT_FROM_MASK}; got {gt_from_mask!r}")
        if term == "non_repeat" and not self.protocol.reward.non_repeat:
            logger.warning("the %s reward has no non-repeat term; using VisionReasoner's", family)
        self.term = term
        self.frame = frame
        self.gt_from_mask = gt_from_mask
        self.scale_thresholds = scale_thresholds
        self.__name__ = name or f"{self.protocol.name.replace('-', '_')}_{term}"
        self.last_stats: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"FamilyReward(term={self.term!r}, family={self.protocol.name!r}, frame={self.frame})"

    def _model_frame(self, columns: dict[str, Any], i: int) -> tuple[int, int]:
        if self.frame is not None:
            return self.frame, self.frame
        images = columns.get("image")
        if images is None:
            raise ValueError(
                f"{self.__name__} needs frame=... or an 'image' column (the image the model saw)"
            )
        return frame_of(images[i])

    def _gt_score(self, answer: JsonAnswer, columns: dict[str, Any], i: int) -> float:
        k = 2 if self.protocol.reward.point_rule == "pair" else 1
        gt = ground_truth(columns, i, points_per_object=k, from_mask=self.gt_from_mask)
        fw, fh = self._model_frame(columns, i)
        sx, sy = fw / gt.size[0], fh / gt.size[1]
        boxes = gt.boxes * np.array([sx, sy, sx, sy])
        points = gt.points * np.array([sx, sy])
        scale = max(fw, fh) / self.protocol.reward.reference_frame if self.scale_thresholds else 1.0
        terms = accuracy_terms(answer, boxes, points, self.protocol, scale=scale)
        return (
            sum(terms) if self.term == "accuracy" else terms[("box_iou", "box_l1", "point").index(self.term)]
        )

    def score(self, text: str, columns: dict[str, Any] | None = None, i: int = 0) -> float:
        """The reward of one completion text (``columns``/``i``: its row, for the ground-truth terms)."""
        if self.term == "non_repeat":
            return non_repeat_score(text)
        if self.term == "think_format":
            return 1.0 if structure_ok(text[:MAX_TEXT_CHARS]) else 0.0
        answer = parse_cached(text)
        if self.term == "json_format":
            return json_format_score(answer, self.protocol)
        if self.term == "point_in_box":
            return point_in_box_score(answer)
        return self._gt_score(answer, columns or {}, i)

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        """One reward per completion; ground-truth columns as in the module docstring."""
        n = len(completions)
        if self.term in _GT_TERMS:
            if all(kwargs.get(c) is None for c in ("boxes", "instances", "mask")):
                raise ValueError(f"{self.__name__} needs a 'boxes', 'instances' or 'mask' dataset column")
            for col in ("boxes", "points", "image_size", "instances", "mask", "image"):
                if kwargs.get(col) is not None and len(kwargs[col]) != n:
                    raise ValueError(f"column {col!r} has {len(kwargs[col])} entries for {n} completions")
            if self.frame is None and kwargs.get("image") is None:
                raise ValueError(
                    f"{self.__name__} needs frame=... or an 'image' column (the image the model saw)"
                )
        rewards, errors = [], 0
        for i, completion in enumerate(completions):
            try:
                rewards.append(float(self.score(completion_text(completion), kwargs, i)))
            except Exception:  # a reward must never stop training; the row is counted and scored 0
                if errors == 0:
                    logger.exception("%s could not score completion %d; scoring it 0", self.__name__, i)
                errors += 1
                rewards.append(0.0)
        self.last_stats = {"mean": float(np.mean(rewards)) if n else 0.0, "errors": float(errors)}
        return rewards


def published_rewards(family: str, **kwargs: Any) -> list[FamilyReward]:
    """The terms whose weight-1 sum is the family's published reward, in order (keyword arguments go to every
    `FamilyReward`)."""
    protocol = get_family(family)
    terms = ["think_format", "json_format", "box_iou", "box_l1", "point"]
    if protocol.reward.non_repeat:
        terms.append("non_repeat")
    return [FamilyReward(t, family, **kwargs) for t in terms]


# Ready-made instances for recipes (`reward_funcs: [segr1.family_rewards.vision_reasoner_box_iou, ...]`): the
# frame is read from the image column, a mask-only row is one object.
vision_reasoner_think_format = FamilyReward("think_format", "vision-reasoner")
vision_reasoner_json_format = FamilyReward("json_format", "vision-reasoner")
vision_reasoner_box_iou = FamilyReward("box_iou", "vision-reasoner")
vision_reasoner_box_l1 = FamilyReward("box_l1", "vision-reasoner")
vision_reasoner_point = FamilyReward("point", "vision-reasoner")
vision_reasoner_accuracy = FamilyReward("accuracy", "vision-reasoner")
vision_reasoner_non_repeat = FamilyReward("non_repeat", "vision-reasoner")
vision_reasoner_point_in_box = FamilyReward("point_in_box", "vision-reasoner")
seg_zero_think_format = FamilyReward("think_format", "seg-zero")
seg_zero_json_format = FamilyReward("json_format", "seg-zero")
seg_zero_box_iou = FamilyReward("box_iou", "seg-zero")
seg_zero_box_l1 = FamilyReward("box_l1", "seg-zero")
seg_zero_point = FamilyReward("point", "seg-zero")
seg_zero_accuracy = FamilyReward("accuracy", "seg-zero")
seg_zero_point_in_box = FamilyReward("point_in_box", "seg-zero")
