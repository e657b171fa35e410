"""Per-instance ground truth: instance maps, connected components, representative points, instance matching.

Conventions: an *instance map* is an (H, W) integer array, 0 = background and k >= 1 = object k (image frame);
masks are (H, W) bool; boxes are ``[x1, y1, x2, y2]`` inclusive pixel extremes (`segr1.geometry.mask_to_box`);
points are ``(x, y)`` pixel indices.

* `decode_instance_map` reads one from a path, PNG bytes, a 🤗 ``Image`` cell, a PIL image or an array.
* `instance_masks` / `connected_components` split a map or a binary mask into per-object masks.
* `inscribed_point` is the ground-truth point of Seg-Zero / VisionReasoner (the maximum of the mask's
  Euclidean distance transform: the centre of its largest inscribed circle); `two_points` adds Seg-Zero's second
  point (the same maximum over the half of the mask farther from the first point).
* `mask_iou_matrix` + `match_instances` pair predicted and ground-truth instances one-to-one (Hungarian
  algorithm on IoU), for per-instance scoring.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import numpy as np
from PIL import Image

from segr1.geometry import mask_to_box

logger = logging.getLogger(__name__)

MAX_INSTANCES = 255  # objects read from one map or mask


def decode_instance_map(value: Any) -> np.ndarray:
    """An (H, W) int32 instance map (0 = background) from a path, PNG bytes, a ``{"bytes", "path"}`` dict, a
    PIL image (modes L, P, I, I;16) or a 2-D integer/bool array. Raises ValueError/OSError on anything else
    (an RGB image is refused: colour-coded maps are ambiguous)."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (str, os.PathLike)):
        with Image.open(value) as im:
            im.load()
            value = im.copy()
    elif isinstance(value, (bytes, bytearray, memoryview)):
        with Image.open(io.BytesIO(bytes(value))) as im:
            im.load()
            value = im.copy()
    if isinstance(value, Image.Image):
        if value.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
            raise ValueError(f"an instance map must be a single-channel image; got mode {value.mode}")
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise ValueError(f"cannot read an instance map from a {type(value).__name__}")
    if value.ndim != 2 or value.size == 0 or value.dtype.kind not in "biu":
        raise ValueError(
            f"an instance map must be a non-empty (H, W) integer array; got {value.dtype} {value.shape}"
        )
    if value.dtype.kind == "i" and value.min() < 0:
        raise ValueError(f"instance ids must be >= 0; got {int(value.min())}")
    return value.astype(np.int32, copy=False)


def instance_masks(instance_map: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """The ids (ascending, 0 excluded, at most `MAX_INSTANCES`) and (H, W) bool masks of a map's objects."""
    arr = np.asarray(instance_map)
    if arr.ndim != 2:
        raise ValueError(f"instance map must have shape (H, W); got {arr.shape}")
    ids = [int(i) for i in np.unique(arr) if i != 0][:MAX_INSTANCES]
    return ids, [arr == i for i in ids]


def connected_components(mask: np.ndarray, *, min_pixels: int = 1) -> list[np.ndarray]:
    """The 8-connected components of an (H, W) mask with at least ``min_pixels`` pixels, largest first
    (ties: top-most, then left-most first), at most `MAX_INSTANCES`."""
    import cv2

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got {mask.shape}")
    if min_pixels < 1:
        raise ValueError(f"min_pixels must be >= 1; got {min_pixels}")
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= min_pixels]
    keep.sort(
        key=lambda k: (-stats[k, cv2.CC_STAT_AREA], stats[k, cv2.CC_STAT_TOP], stats[k, cv2.CC_STAT_LEFT])
    )
    return [labels == k for k in keep[:MAX_INSTANCES]]


def _distance(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.distance_transform_edt(mask)


def inscribed_point(mask: np.ndarray) -> np.ndarray | None:
    """(2,) float64 ``(x, y)``: the pixel of an (H, W) mask farthest from the background (first in row-major
    order among ties), or None for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got {mask.shape}")
    if not mask.any():
        return None
    y, x = np.unravel_index(int(np.argmax(_distance(mask))), mask.shape)
    return np.array([x, y], dtype=np.float64)


def two_points(mask: np.ndarray) -> np.ndarray | None:
    """(2, 2) float64: `inscribed_point`, then the pixel farthest from the background among the mask pixels
    whose distance to the first point exceeds the median such distance (the first point again when there are
    none). None for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got {mask.shape}")
    if not mask.any():
        return None
    dist = _distance(mask)
    y1, x1 = np.unravel_index(int(np.argmax(dist)), mask.shape)
    ys, xs = np.nonzero(mask)
    far = np.hypot(ys - y1, xs - x1)
    sel = far > np.median(far)
    if sel.any():
        k = int(np.argmax(dist[ys[sel], xs[sel]]))
        x2, y2 = xs[sel][k], ys[sel][k]
    else:
        x2, y2 = x1, y1
    return np.array([[x1, y1], [x2, y2]], dtype=np.float64)


def objects_from_masks(
    masks: list[np.ndarray], *, points_per_object: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) and points (N, K, 2) (K = ``points_per_object``, 1 or 2: `inscribed_point` / `two_points`)
    of the non-empty masks, image frame; empty masks are skipped."""
    if points_per_object not in (1, 2):
        raise ValueError(f"points_per_object must be 1 or 2; got {points_per_object}")
    boxes, points = [], []
    for m in masks:
        box = mask_to_box(m)
        if box is None:
            continue
        boxes.append(box)
        points.append(inscribed_point(m)[None, :] if points_per_object == 1 else two_points(m))
    if not boxes:
        return np.zeros((0, 4)), np.zeros((0, points_per_object, 2))
    return np.stack(boxes), np.stack(points)


def mask_iou_matrix(pred: list[np.ndarray], gt: list[np.ndarray]) -> np.ndarray:
    """(M, N) float64 IoU of every predicted mask with every ground-truth mask (all (H, W), same shape);
    0 where both are empty."""
    if not pred or not gt:
        return np.zeros((len(pred), len(gt)))
    p = np.stack([np.asarray(m, dtype=bool).reshape(-1) for m in pred]).astype(np.float32)
    g = np.stack([np.asarray(m, dtype=bool).reshape(-1) for m in gt]).astype(np.float32)
    if p.shape[1] != g.shape[1]:
        raise ValueError(f"predicted and ground-truth masks differ in size: {pred[0].shape} vs {gt[0].shape}")
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0).astype(np.float64)


def match_instances(score: np.ndarray, *, min_score: float = 0.0) -> list[tuple[int, int]]:
    """One-to-one pairs (pred index, gt index) maximising the summed (M, N) ``score`` (Hungarian algorithm),
    keeping pairs whose score is > ``min_score``; sorted by gt index."""
    from scipy.optimize import linear_sum_assignment

    score = np.asarray(score, dtype=np.float64)
    if score.ndim != 2:
        raise ValueError(f"score must be an (M, N) matrix; got shape {score.shape}")
    if score.size == 0:
        return []
    rows, cols = linear_sum_assignment(score, maximize=True)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if score[r, c] > min_score]
    return sorted(pairs, key=lambda rc: rc[1])
