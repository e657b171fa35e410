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
import math
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from segr1.answer_json import MAX_TEXT_CHARS, JsonAnswer, parse_json_answer, structure_ok
from segr1.family import FamilyProtocol, RewardSpec, get_family
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
    before the +1 (Seg-Zero's scalar IoU). 0 where the union is empty; NaN boxes give NaN."""
    one = 1.0 if inclusive else 0.0
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (M, N, 2)
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = rb - lt + one
    keep = (rb > lt) if strict else (wh > 0)
    inter = np.where(keep, wh, 0.0).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2] + one).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2] + one).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.where(np.isnan(union), np.nan, 0.0), where=union > 0)


def _inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M,) all of each object's points (M, K, 2) lie in its own box (M, 4), borders included (NaN: False)."""
    return np.all((points >= boxes[:, None, :2]) & (points <= boxes[:, None, 2:]), axis=(1, 2))


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
    in pixels are multiplied by ``scale``. (0, 0, 0) for a broken answer or no ground truth. Invalid entries
    (NaN in `JsonAnswer.boxes` / ``points``) hit nothing."""
    spec, v = protocol.reward, answer.validity
    pb, pp = answer.boxes[: spec.max_objects], answer.points[: spec.max_objects]
    if not v.json or v.layout != protocol.layout or pb.shape[0] == 0 or gt_boxes.shape[0] == 0:
        return 0.0, 0.0, 0.0
    if spec.all_or_nothing and not (
        all(v.box_ok[: spec.max_objects]) and all(v.point_ok[: spec.max_objects])
    ):
        return 0.0, 0.0, 0.0
    gb, gp = gt_boxes[: spec.max_objects], gt_points[: spec.max_objects]
    m, n = pb.shape[0], gb.shape[0]
    if spec.truncate_points:
        pp = np.trunc(pp)
    if m == 1 and n == 1:  # the common single-object case, in plain floats (same rules as below)
        return _one_to_one(pb[0].tolist(), pp[0].tolist(), gb[0].tolist(), gp[0].tolist(), spec, scale)
    iou_hit = box_iou_matrix(pb, gb, strict=spec.iou_strict_overlap) > spec.iou_threshold
    l1_hit = np.abs(pb[:, None, :] - gb[None, :, :]).mean(axis=2) < spec.l1_threshold * scale
    if spec.point_rule == "nearest":
        dist = np.sqrt(((pp[:, None, 0, :] - gp[None, :, 0, :]) ** 2).sum(axis=2))
    else:  # two predicted points against two ground-truth points, the better of the two pairings
        g = gp if gp.shape[1] >= 2 else np.repeat(gp, 2, axis=1)
        d = np.sqrt(((pp[:, None, :2, None, :] - g[None, :, None, :2, :]) ** 2).sum(axis=4))  # (M, N, 2, 2)
        dist = np.minimum(d[..., 0, 0] + d[..., 1, 1], d[..., 0, 1] + d[..., 1, 0]) / 2
    point_hit = (dist < spec.point_threshold * scale) & _inside(pp, pb)[:, None]
    hits = np.stack([iou_hit, l1_hit, point_hit]).astype(np.float64)  # (3, M, N)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(3.0 - hits.sum(axis=0))
    matched = hits[:, rows, cols].sum(axis=1) / max(m, n)
    return float(matched[0]), float(matched[1]), float(matched[2])


def _one_to_one(
    pb: list[float],
    pp: list[list[float]],
    gb: list[float],
    gp: list[list[float]],
    spec: RewardSpec,
    scale: float,
) -> tuple[float, float, float]:
    """`accuracy_terms` for one predicted and one ground-truth object (no matching needed)."""
    one = 1.0 if spec.iou_inclusive else 0.0
    w, h = min(pb[2], gb[2]) - max(pb[0], gb[0]), min(pb[3], gb[3]) - max(pb[1], gb[1])
    if spec.iou_strict_overlap:
        inter = (w + one) * (h + one) if w > 0 and h > 0 else 0.0
    else:
        inter = max(0.0, w + one) * max(0.0, h + one)
    union = (
        (pb[2] - pb[0] + one) * (pb[3] - pb[1] + one) + (gb[2] - gb[0] + one) * (gb[3] - gb[1] + one) - inter
    )
    iou_hit = union > 0 and inter / union > spec.iou_threshold
    l1_hit = sum(abs(a - b) for a, b in zip(pb, gb, strict=True)) / 4 < spec.l1_threshold * scale
    inside = all(pb[0] <= x <= pb[2] and pb[1] <= y <= pb[3] for x, y in pp)
    if spec.point_rule == "nearest":
        dist = math.dist(pp[0], gp[0])
    else:
        g0, g1 = (gp[0], gp[1]) if len(gp) >= 2 else (gp[0], gp[0])
        d00, d11, d01, d10 = (
            math.dist(pp[0], g0),
            math.dist(pp[1], g1),
            math.dist(pp[0], g1),
            math.dist(pp[1], g0),
        )
        dist = min(d00 + d11, d01 + d10) / 2
    point_hit = inside and dist < spec.point_threshold * scale
    return float(iou_hit), float(l1_hit), float(point_hit)


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
    ok = np.array(v.box_ok, dtype=bool) & np.array(v.point_ok, dtype=bool)
    if not ok.any():
        return 0.0
    return float(np.mean(_inside(answer.points[ok], answer.boxes[ok])))


# -------------------------------------------------------------------------------------------- the callable


_MEMO_COLUMNS = ("boxes", "points", "image_size", "instances", "mask", "image")


class _StepMemo:
    """The accuracy terms of the last batch, shared by the ground-truth terms of one GRPO step: TRL calls every
    reward of a step with the same column lists, so (family options, ids of those lists, completion texts)
    identifies the batch. The memo holds the lists, so their ids cannot be reused while it is kept."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.refs: list[Any] = []
        self.texts: list[str] = []
        self.values: list[tuple[float, float, float] | None] = []

    def get(self, key: tuple, texts: list[str]) -> list[tuple[float, float, float] | None] | None:
        with self.lock:
            return self.values if self.key == key and self.texts == texts else None

    def put(self, key: tuple, refs: list[Any], texts: list[str], values: list) -> None:
        with self.lock:
            self.key, self.refs, self.texts, self.values = key, refs, texts, values


_MEMO = _StepMemo()


def clear_caches(*, ground_truth: bool = False) -> None:
    """Forget parsed answers and the step memo (and, with ``ground_truth``, the mask-derived objects): what a
    new GRPO step with new completions sees. For benchmarks and tests."""
    parse_cached.cache_clear()
    _MEMO.put(None, [], [], [])  # type: ignore[arg-type]
    if ground_truth:
        from segr1 import gt_columns

        gt_columns.clear_cache()


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

    def _terms(self, answer: JsonAnswer, columns: dict[str, Any], i: int) -> tuple[float, float, float]:
        k = 2 if self.protocol.reward.point_rule == "pair" else 1
        gt = ground_truth(columns, i, points_per_object=k, from_mask=self.gt_from_mask)
        fw, fh = self._model_frame(columns, i)
        sx, sy = fw / gt.size[0], fh / gt.size[1]
        boxes = gt.boxes * np.array([sx, sy, sx, sy])
        points = gt.points * np.array([sx, sy])
        scale = max(fw, fh) / self.protocol.reward.reference_frame if self.scale_thresholds else 1.0
        return accuracy_terms(answer, boxes, points, self.protocol, scale=scale)

    def _pick(self, terms: tuple[float, float, float]) -> float:
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
        return self._pick(self._terms(answer, columns or {}, i))

    def _gt_rewards(self, texts: list[str], kwargs: dict[str, Any]) -> tuple[list[float], int]:
        """The ground-truth term of every row, through the step memo; (rewards, rows that failed)."""
        key = (self.protocol.name, self.frame, self.gt_from_mask, self.scale_thresholds)
        key += tuple(id(kwargs.get(c)) for c in _MEMO_COLUMNS)
        values = _MEMO.get(key, texts)
        if values is None:
            values = []
            for i, text in enumerate(texts):
                try:
                    values.append(self._terms(parse_cached(text), kwargs, i))
                except Exception:  # a reward must never stop training; the row is counted and scored 0
                    if all(v is not None for v in values):
                        logger.exception("%s could not score completion %d; scoring it 0", self.__name__, i)
                    values.append(None)
            _MEMO.put(key, [kwargs.get(c) for c in _MEMO_COLUMNS], texts, values)
        return [0.0 if v is None else float(self._pick(v)) for v in values], sum(v is None for v in values)

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
        texts = [completion_text(c) for c in completions]
        if self.term in _GT_TERMS:
            rewards, errors = self._gt_rewards(texts, kwargs)
            self.last_stats = {"mean": float(np.mean(rewards)) if n else 0.0, "errors": float(errors)}
            return rewards
        rewards, errors = [], 0
        for i, text in enumerate(texts):
            try:
                rewards.append(float(self.score(text, kwargs, i)))
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
