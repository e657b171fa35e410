"""Non-learned references a policy on the synthetic families must beat, and the per-family tallies.

Every reference is a prompt in the IMAGE frame, segmented with the same segmenter as the policy's prompts:

* ``whole-image box`` and ``fixed box, 3% margin``: image-independent boxes (the latter chosen on training
  scenes, kept for continuity with earlier tables);
* ``best fixed box``: one image-independent box from `box_grid` (centred boxes with x / y margins, halves,
  quadrants), chosen per family by mean IoU on a VALIDATION folder (`choose_fixed_box`), never on the test set;
* ``best fixed box + centre point``: the same box plus one positive point at the image centre;
* ``random object (GT box + point)`` / ``largest object (GT box + point)``: text-blind baselines of the
  multi-object text tasks (referring, reasoning): the box of one of the scene's objects (drawn uniformly with
  a seeded generator, or the one of largest ``area``) from the manifest's ``meta["objects"]``, with one
  positive point in its interior (`object_prompt`). A policy that ignores the text does at best as well;
* ``GT box + GT points``: the target mask's tight box with 2 positive and 1 negative point sampled from the
  mask (an upper reference for the segmenter).

`Cell` sums one (family, method): gIoU (mean IoU), cIoU (sum of intersections / sum of unions), S-measure,
format validity (policies), empty masks, and how many positive (label 1) points fall inside the target mask.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segr1.answer import SegPrompt

logger = logging.getLogger(__name__)

WHOLE_IMAGE = "whole-image box"
FIXED_BOX = "fixed box, 3% margin"
BEST_FIXED = "best fixed box"
BEST_FIXED_CENTRE = "best fixed box + centre point"
RANDOM_OBJECT = "random object (GT box + point)"
LARGEST_OBJECT = "largest object (GT box + point)"
GT_PROMPT = "GT box + GT points"
REFERENCES: tuple[str, ...] = (
    WHOLE_IMAGE,
    FIXED_BOX,
    BEST_FIXED,
    BEST_FIXED_CENTRE,
    RANDOM_OBJECT,
    LARGEST_OBJECT,
    GT_PROMPT,
)
#: references whose prompt does not depend on the image (the margin row compares a policy with the best one)
IMAGE_INDEPENDENT: tuple[str, ...] = (WHOLE_IMAGE, FIXED_BOX, BEST_FIXED, BEST_FIXED_CENTRE)
#: references that need a box chosen on a validation folder
NEEDS_VALIDATION: tuple[str, ...] = (BEST_FIXED, BEST_FIXED_CENTRE)
#: references that read the scene's objects but not its text
TEXT_BLIND: tuple[str, ...] = (RANDOM_OBJECT, LARGEST_OBJECT)
TEXT_TASKS: tuple[str, ...] = ("referring", "reasoning")
FIXED_MARGIN = 0.03  # of `FIXED_BOX`: chosen on training scenes (seed 100) among 2%, 3%, 5%
GRID_MARGINS: tuple[float, ...] = (0.02, 0.1, 0.2, 0.3)


def box_grid(margins: Sequence[float] = GRID_MARGINS) -> dict[str, tuple[float, float, float, float]]:
    """The candidate image-independent boxes, name -> (x1, y1, x2, y2) as fractions of the image side:
    centred boxes with every (x margin, y margin) pair of ``margins``, the four halves and four quadrants."""
    grid: dict[str, tuple[float, float, float, float]] = {}
    for mx in margins:
        for my in margins:
            grid[f"centred, margins x {mx:g} y {my:g}"] = (mx, my, 1.0 - mx, 1.0 - my)
    grid.update({"left half": (0.0, 0.0, 0.5, 1.0), "right half": (0.5, 0.0, 1.0, 1.0),
                 "top half": (0.0, 0.0, 1.0, 0.5), "bottom half": (0.0, 0.5, 1.0, 1.0),
                 "top-left quadrant": (0.0, 0.0, 0.5, 0.5), "top-right quadrant": (0.5, 0.0, 1.0, 0.5),
                 "bottom-left quadrant": (0.0, 0.5, 0.5, 1.0),
                 "bottom-right quadrant": (0.5, 0.5, 1.0, 1.0)})  # fmt: skip
    return grid


def fraction_box(fractions: Sequence[float], width: int, height: int) -> np.ndarray:
    """(1, 4) image-frame box (inclusive pixel coordinates) of a box given as fractions of the image."""
    x1, y1, x2, y2 = (float(f) for f in fractions)
    return np.array([[x1 * (width - 1), y1 * (height - 1), x2 * (width - 1), y2 * (height - 1)]])


def centre_point(width: int, height: int) -> np.ndarray:
    """(1, 2) xy of the image centre (pixel coordinates)."""
    return np.array([[(width - 1) / 2.0, (height - 1) / 2.0]])


def interior_point(mask: np.ndarray) -> np.ndarray | None:
    """(2,) xy of the mask pixel farthest from the mask's boundary (the image border counts as boundary;
    ties: the first in row-major order), or None for an empty mask: `segr1.geometry.interior_point` with
    OpenCV's 5x5 distance mask."""
    from segr1.geometry import interior_point as deepest

    return deepest(mask, mask_size=5)


def scene_objects(sample: Any) -> list[dict[str, Any]] | None:
    """The ``objects`` a synthetic scene's meta lists (target first), or None when it lists none."""
    objects = (getattr(sample, "meta", None) or {}).get("objects")
    return list(objects) if isinstance(objects, list) and objects else None


def object_prompt(obj: dict[str, Any], mask: np.ndarray | None = None) -> SegPrompt:
    """GT box of one of ``meta["objects"]`` (its ``box``: exclusive end, made inclusive) and one positive point
    in its interior: `interior_point` of ``mask`` (the object's own mask, when there is one: the target's),
    else the object's ``centre`` (non-target objects have no mask file)."""
    x1, y1, x2, y2 = (float(v) for v in obj["box"])
    point = interior_point(mask) if mask is not None else None
    if point is None:
        point = np.asarray(obj["centre"], dtype=float)
    return SegPrompt(boxes=np.array([[x1, y1, x2 - 1.0, y2 - 1.0]]), points=point[None], labels=np.array([1]))


def random_object_index(n_objects: int, seed: int, index: int) -> int:
    """The object the ``random object`` baseline takes in scene ``index`` (uniform, seeded)."""
    return int(np.random.default_rng([int(seed), 7919, int(index)]).integers(n_objects))


def largest_object_index(objects: Sequence[dict[str, Any]]) -> int:
    """The object of largest ``area`` (the first of equal ones)."""
    return int(np.argmax([float(o.get("area", 0)) for o in objects]))


def text_blind_applies(samples: Sequence[Any]) -> bool:
    """True when every sample is a text task (referring / reasoning) whose meta lists several objects."""
    return bool(samples) and all(s.task in TEXT_TASKS and len(scene_objects(s) or ()) >= 2 for s in samples)


def applicable_references(
    samples: Sequence[Any], wanted: Iterable[str] = REFERENCES, *, has_validation: bool = True
) -> list[str]:
    """The references of ``wanted`` that apply to a family (text-blind ones only to multi-object text tasks;
    the chosen fixed box only when the family has a validation folder), in `REFERENCES` order."""
    wanted = set(wanted)
    unknown = wanted - set(REFERENCES)
    if unknown:
        raise ValueError(f"unknown references {sorted(unknown)}; choose from {list(REFERENCES)}")
    blind = text_blind_applies(samples)
    return [
        r
        for r in REFERENCES
        if r in wanted and (r not in TEXT_BLIND or blind) and (r not in NEEDS_VALIDATION or has_validation)
    ]


def reference_prompt(
    name: str,
    sample: Any,
    gt: np.ndarray,
    index: int,
    seed: int,
    fixed_box: Sequence[float] | None = None,
) -> SegPrompt:
    """The image-frame prompt of reference ``name`` for scene ``index`` (``gt``: its (H, W) bool mask).

    ``fixed_box``: the fractions of the box `choose_fixed_box` chose (for `BEST_FIXED*`)."""
    from segr1.geometry import mask_to_box, sample_points

    h, w = gt.shape
    none_pts = {"points": np.zeros((0, 2)), "labels": np.zeros(0, dtype=np.int64)}
    if name == WHOLE_IMAGE:
        return SegPrompt(boxes=np.array([[0.0, 0.0, w - 1.0, h - 1.0]]), **none_pts)
    if name == FIXED_BOX:
        m = FIXED_MARGIN
        return SegPrompt(boxes=np.array([[m * w, m * h, (1 - m) * (w - 1), (1 - m) * (h - 1)]]), **none_pts)
    if name in NEEDS_VALIDATION:
        if fixed_box is None:
            raise ValueError(f"{name!r} needs the box chosen on a validation folder")
        box = fraction_box(fixed_box, w, h)
        if name == BEST_FIXED:
            return SegPrompt(boxes=box, **none_pts)
        return SegPrompt(boxes=box, points=centre_point(w, h), labels=np.array([1]))
    if name in TEXT_BLIND:
        objects = scene_objects(sample)
        if not objects:
            raise ValueError(f"{name!r} needs meta['objects'] (scene {getattr(sample, 'id', index)!r})")
        k = (
            random_object_index(len(objects), seed, index)
            if name == RANDOM_OBJECT
            else largest_object_index(objects)
        )
        target = int((sample.meta or {}).get("target", 0))
        return object_prompt(objects[k], gt if k == target else None)
    if name == GT_PROMPT:
        box = mask_to_box(gt)
        points, labels = sample_points(gt, 2, 1, np.random.default_rng([seed, index]), margin=0.0)
        return SegPrompt(
            boxes=np.zeros((0, 4)) if box is None else box[None].astype(float), points=points, labels=labels
        )
    raise ValueError(f"unknown reference {name!r}; choose from {list(REFERENCES)}")


# ------------------------------------------------------------------------------------------------ scores


def positive_points_inside(prompt: SegPrompt | None, gt: np.ndarray) -> tuple[int, int]:
    """(positive points, positive points inside ``gt``) of an image-frame prompt; a point is inside when the
    pixel it rounds to lies in the image and in the mask."""
    if prompt is None:
        return 0, 0
    points = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(prompt.labels).reshape(-1)
    pos = points[labels == 1] if len(labels) == len(points) else points[:0]
    pos = pos[np.isfinite(pos).all(axis=1)]
    if not len(pos):
        return 0, 0
    h, w = gt.shape
    xy = np.round(pos).astype(np.int64)
    ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    inside = np.zeros(len(xy), dtype=bool)
    inside[ok] = gt[xy[ok, 1], xy[ok, 0]]
    return int(len(pos)), int(inside.sum())


def score_scene(pred: np.ndarray, gt: np.ndarray, prompt: SegPrompt | None) -> dict[str, Any]:
    """Every per-scene number of a (H, W) bool prediction against the (H, W) bool ground truth."""
    from segr1.metrics import s_measure
    from segr1.metrics.iou import intersection_union

    pred = np.asarray(pred, dtype=bool)
    inter, union = intersection_union(pred, gt)
    n_pos, n_in = positive_points_inside(prompt, gt)
    return {"s": float(s_measure(pred, gt)), "iou": inter / union if union else 1.0, "inter": inter,
            "union": union, "empty": not pred.any(), "pos": n_pos, "pos_inside": n_in}  # fmt: skip


@dataclass
class Cell:
    """Sums over the scenes of one (family, method); ``valid`` stays None for the references."""

    n: int = 0
    s_sum: float = 0.0
    iou_sum: float = 0.0
    inter: int = 0
    union: int = 0
    valid: int | None = None
    empty: int = 0
    pos: int = 0
    pos_inside: int = 0
    answers_with_pos: int = 0
    answers_all_inside: int = 0
    seconds: float = 0.0
    per_scene: list[dict[str, Any]] = field(default_factory=list)

    def add(self, sid: str, scores: dict[str, Any], valid: bool | None = None) -> None:
        self.n += 1
        self.s_sum += scores["s"]
        self.iou_sum += scores["iou"]
        self.inter += scores["inter"]
        self.union += scores["union"]
        self.empty += int(scores["empty"])
        self.pos += scores["pos"]
        self.pos_inside += scores["pos_inside"]
        if scores["pos"]:
            self.answers_with_pos += 1
            self.answers_all_inside += int(scores["pos_inside"] == scores["pos"])
        if valid is not None:
            self.valid = (self.valid or 0) + int(valid)
        self.per_scene.append({"id": sid, "s": round(scores["s"], 5), "iou": round(scores["iou"], 5),
                               "pos": scores["pos"], "pos_inside": scores["pos_inside"], "valid": valid})  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """gIoU (= mean IoU), cIoU, S-measure, format validity, empty masks and the positive-point shares:
        ``pos_points_in_target`` = positive points inside the target / all positive points (None without
        any), ``answers_all_pos_in_target`` = answers with at least one positive point, all inside / all
        answers (None when no answer has a positive point)."""
        n = max(self.n, 1)
        return {
            "n": self.n,
            "mean_iou": self.iou_sum / n,
            "giou": self.iou_sum / n,
            "ciou": self.inter / self.union if self.union else 1.0,
            "s_measure": self.s_sum / n,
            "format_validity": None if self.valid is None else self.valid / n,
            "empty_masks": self.empty,
            "positive_points": self.pos,
            "pos_points_in_target": self.pos_inside / self.pos if self.pos else None,
            "answers_with_pos_points": self.answers_with_pos,
            "answers_all_pos_in_target": self.answers_all_inside / n if self.pos else None,
            "seconds": round(self.seconds, 2),
        }


# -------------------------------------------------------------------------------------------- running


def _map(fn: Callable[[int], Any], n: int, workers: int) -> list[Any]:
    """``[fn(i) for i in range(n)]``, on ``workers`` threads when > 1 (GrabCut runs in worker processes of
    its own, `segr1.segmenters._grabcut_worker`, so threads segment in parallel)."""
    if workers <= 1 or n <= 1:
        return [fn(i) for i in range(n)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, range(n)))


def _read(sample: Any) -> tuple[np.ndarray, np.ndarray]:
    from segr1.data.io import read_image, read_mask

    image = sample.image if isinstance(sample.image, np.ndarray) else read_image(sample.image)
    gt = sample.mask if isinstance(sample.mask, np.ndarray) else read_mask(sample.mask)
    return image, np.asarray(gt, dtype=bool)


def choose_fixed_box(
    samples: Sequence[Any],
    segmenter: Any,
    *,
    grid: dict[str, tuple[float, float, float, float]] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """The box of ``grid`` (default `box_grid`) with the highest mean IoU over ``samples`` (a VALIDATION
    folder), each image segmented once per box. Returns ``{"name", "box" (fractions), "val_mean_iou",
    "val_n", "grid_iou" {name: mean IoU}}``; ties go to the first box in grid order."""
    from segr1.metrics import iou

    grid = dict(grid or box_grid())
    if not samples:
        raise ValueError("no validation scenes to choose the fixed box on")
    names = list(grid)

    def one(i: int) -> list[float]:
        image, gt = _read(samples[i])
        h, w = gt.shape
        prompts = [SegPrompt(boxes=fraction_box(grid[k], w, h)) for k in names]
        return [float(iou(np.asarray(segmenter.segment(image, [p])[0], dtype=bool), gt)) for p in prompts]

    rows = np.asarray(_map(one, len(samples), workers))
    means = rows.mean(axis=0)
    best = int(np.argmax(means))
    return {"name": names[best], "box": list(grid[names[best]]), "val_mean_iou": float(means[best]),
            "val_n": len(samples), "grid_iou": {k: float(m) for k, m in zip(names, means, strict=True)}}  # fmt: skip


def run_references(
    names: Sequence[str],
    samples: Sequence[Any],
    segmenter: Any,
    *,
    seed: int = 0,
    fixed_box: Sequence[float] | None = None,
    workers: int = 1,
) -> dict[str, Cell]:
    """One `Cell` per reference of ``names`` over ``samples``; each image and mask is read once for all."""
    names = list(names)

    def one(i: int) -> list[tuple[dict[str, Any], float]]:
        sample = samples[i]
        image, gt = _read(sample)
        out = []
        for name in names:
            t0 = time.perf_counter()
            prompt = reference_prompt(name, sample, gt, i, seed, fixed_box)
            (mask,) = segmenter.segment(image, [prompt])
            out.append((score_scene(np.asarray(mask, dtype=bool), gt, prompt), time.perf_counter() - t0))
        return out

    cells = {name: Cell() for name in names}
    for sample, row in zip(samples, _map(one, len(samples), workers), strict=True):
        for name, (scores, seconds) in zip(names, row, strict=True):
            cells[name].add(sample.id, scores)
            cells[name].seconds += seconds
    return cells
