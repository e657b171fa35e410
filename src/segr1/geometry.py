"""Frames and prompt geometry: model frame <-> image frame, clipping, points-to-boxes, masks -> prompts.

Conventions (all pixels, x right, y down, boxes xyxy):

* The **model frame** is the square ``frame x frame`` image the LMM saw (the original image resized without
  keeping the aspect ratio; 768 for foreground, 1024 for referring/reasoning). The **image frame** is the
  original ``W x H`` image.
* Scaling is a plain multiplication, as in Seg-R1: ``x_img = x_model * W / frame``, ``y_img = y_model * H /
  frame`` (and the inverse for `to_model_frame`).
* A coordinate is a pixel index: a point (x, y) designates the pixel in column x, row y, and a box covers
  columns x1..x2 and rows y1..y2 (`mask_to_box` returns the inclusive extremes). Valid coordinates therefore
  lie in ``[0, W-1] x [0, H-1]``; `clip_prompt` (and the frame conversions) clip to that range and order box
  corners so that ``x1 <= x2`` and ``y1 <= y2``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TypeVar

import numpy as np
from PIL import Image

from segr1.answer import SegPrompt

logger = logging.getLogger(__name__)

ImageT = TypeVar("ImageT", np.ndarray, Image.Image)


def _check_size(image_size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (W, H) positive ints; got {image_size!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"image_size must be (W, H) positive ints; got {image_size!r}")
    return w, h


def _check_frame(frame: int) -> int:
    if not isinstance(frame, (int, np.integer)) or isinstance(frame, bool) or frame <= 0:
        raise ValueError(f"frame must be a positive int (e.g. 768 or 1024); got {frame!r}")
    return int(frame)


def resize_to_frame(image: ImageT, frame: int) -> ImageT:
    """Resize an image (or mask) to the square model frame ``frame x frame``, ignoring the aspect ratio.

    PIL images: bicubic, except nearest for bilevel ("1") and palette ("P") images. Arrays (H, W) or (H, W, C):
    uint8 bicubic, bool nearest (for masks), other dtypes bilinear. Returns the same type and dtype as given,
    of size frame x frame ((frame, frame[, C]) for arrays).
    """
    frame = _check_frame(frame)
    if isinstance(image, Image.Image):
        nearest = image.mode in ("1", "P")
        resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
        return image.resize((frame, frame), resample)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"resize_to_frame expects a PIL.Image or np.ndarray; got {type(image).__name__}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must have shape (H, W) or (H, W, C) with H, W > 0; got {image.shape}")
    if image.dtype == bool:
        out = Image.fromarray(image.astype(np.uint8) * 255).resize((frame, frame), Image.Resampling.NEAREST)
        return np.asarray(out) > 127
    if image.dtype == np.uint8 and (image.ndim == 2 or image.shape[2] in (1, 3, 4)):
        squeeze = image.ndim == 3 and image.shape[2] == 1
        src = image[:, :, 0] if squeeze else image
        out = np.asarray(Image.fromarray(src).resize((frame, frame), Image.Resampling.BICUBIC))
        return out[:, :, None] if squeeze else out
    import cv2  # lazy: only float or many-channel arrays need it

    arr = image.astype(np.float32) if image.dtype not in (np.float32, np.float64) else image
    out = cv2.resize(arr, (frame, frame), interpolation=cv2.INTER_LINEAR)
    if image.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out.astype(image.dtype, copy=False)


def _with(prompt: SegPrompt, boxes: np.ndarray, points: np.ndarray, labels: np.ndarray) -> SegPrompt:
    """A new prompt with these arrays and copies of the rest (validity is copied, not shared)."""
    return replace(prompt, boxes=boxes, points=points, labels=labels, validity=replace(prompt.validity))


def _order_boxes(boxes: np.ndarray) -> np.ndarray:
    x1 = np.minimum(boxes[:, 0], boxes[:, 2])
    x2 = np.maximum(boxes[:, 0], boxes[:, 2])
    y1 = np.minimum(boxes[:, 1], boxes[:, 3])
    y2 = np.maximum(boxes[:, 1], boxes[:, 3])
    return np.stack([x1, y1, x2, y2], axis=1)


def clip_prompt(prompt: SegPrompt, image_size: tuple[int, int]) -> SegPrompt:
    """Order box corners and clip boxes and points to ``[0, W-1] x [0, H-1]`` (any frame, ``image_size`` =
    that frame's (W, H)). Returns a new prompt; labels, think and validity are kept."""
    w, h = _check_size(image_size)
    boxes = _order_boxes(prompt.boxes)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h - 1)
    points = prompt.points.copy()
    points[:, 0] = np.clip(points[:, 0], 0, w - 1)
    points[:, 1] = np.clip(points[:, 1], 0, h - 1)
    return _with(prompt, boxes, points, prompt.labels.copy())


def _scale(prompt: SegPrompt, sx: float, sy: float) -> SegPrompt:
    boxes = prompt.boxes * np.array([sx, sy, sx, sy])
    points = prompt.points * np.array([sx, sy])
    return _with(prompt, boxes, points, prompt.labels.copy())


def to_image_frame(prompt: SegPrompt, image_size: tuple[int, int], frame: int) -> SegPrompt:
    """Map a prompt from the square model frame (``frame x frame``) to the image frame (``image_size`` =
    (W, H)): scale x by W/frame and y by H/frame, order corners, clip to ``[0, W-1] x [0, H-1]``."""
    w, h = _check_size(image_size)
    frame = _check_frame(frame)
    return clip_prompt(_scale(prompt, w / frame, h / frame), (w, h))


def to_model_frame(prompt: SegPrompt, image_size: tuple[int, int], frame: int) -> SegPrompt:
    """Map a prompt from the image frame (``image_size`` = (W, H)) to the square model frame: scale x by
    frame/W and y by frame/H, order corners, clip to ``[0, frame-1]^2``. (Used to build SFT targets.)"""
    w, h = _check_size(image_size)
    frame = _check_frame(frame)
    return clip_prompt(_scale(prompt, frame / w, frame / h), (frame, frame))


def split_by_box(prompt: SegPrompt) -> list[SegPrompt]:
    """Split a prompt as Seg-R1 does before calling the segmenter (any frame).

    One sub-prompt per box, holding that box and the points that lie inside it (borders included; a point
    inside several boxes goes with each). Points outside every box are dropped when there are boxes. With no
    box: a single points-only prompt. An empty prompt gives ``[]``. The caller unites the per-box masks.
    With ``prompt.point_assignment == "all"`` every box takes every point instead (the release's reasoning
    evaluation: one box with all the points).
    """
    if prompt.boxes.shape[0] == 0:
        if prompt.points.shape[0] == 0:
            return []
        return [_with(prompt, np.zeros((0, 4)), prompt.points.copy(), prompt.labels.copy())]
    boxes = _order_boxes(prompt.boxes)
    out = []
    px, py = prompt.points[:, 0], prompt.points[:, 1]
    for box in boxes:
        inside = (px >= box[0]) & (px <= box[2]) & (py >= box[1]) & (py <= box[3])
        if prompt.point_assignment == "all":
            inside = np.ones_like(inside)
        out.append(_with(prompt, box[None, :].copy(), prompt.points[inside], prompt.labels[inside]))
    return out


def mask_to_box(mask: np.ndarray) -> np.ndarray | None:
    """Tight box of a (H, W) mask (nonzero = foreground): (4,) float64 ``[x_min, y_min, x_max, y_max]`` with
    inclusive pixel indices, or None when the mask is empty."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got {mask.shape}")
    mask = mask.astype(bool, copy=False)
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def box_iou(a, b) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes (continuous coordinates).

    0.0 when either box is None or the union is empty (both boxes degenerate).
    """
    if a is None or b is None:
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _pick(coords: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n rows of coords (without replacement when there are enough, else all of them)."""
    if n <= 0 or coords.shape[0] == 0:
        return coords[:0]
    if coords.shape[0] <= n:
        return coords
    return coords[rng.choice(coords.shape[0], size=n, replace=False)]


def interior_point(mask: np.ndarray, *, mask_size: int = 3) -> np.ndarray | None:
    """The (x, y) pixel of a (H, W) bool mask farthest from its boundary (ties: the first in row order), or None
    for an empty mask. A positive point that always lies well inside the object, also for rings and crosses
    whose centre is background. ``mask_size``: OpenCV's L2 distance-transform mask (3, as the embedded SFT
    targets; 5, as the synthetic baselines)."""
    import cv2

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got {mask.shape}")
    if not mask.any():
        return None
    padded = np.pad(mask.astype(np.uint8), 1)  # the image border counts as boundary
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, mask_size)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([float(x), float(y)])


def sample_points(
    mask: np.ndarray,
    n_pos: int,
    n_neg: int,
    rng: np.random.Generator | int | None = None,
    *,
    margin: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample labelled points from a (H, W) mask (image frame).

    Positives (label 1) are drawn uniformly from the mask's pixels; negatives (label 0) from pixels outside the
    mask, preferring those inside the mask's box grown by ``margin`` of its size on each side (hard negatives
    near the object), then anywhere outside. Sampling is without replacement, so fewer points come back when
    there are fewer candidate pixels (an empty mask gives no positives, a full mask no negatives).

    Returns points (M, 2) float64 xy pixel indices, positives first, and labels (M,) int64.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got {mask.shape}")
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in (n_pos, n_neg)):
        raise TypeError(f"n_pos and n_neg must be ints; got {n_pos!r}, {n_neg!r}")
    if n_pos < 0 or n_neg < 0:
        raise ValueError(f"n_pos and n_neg must be >= 0; got {n_pos}, {n_neg}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0; got {margin}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    mask = mask.astype(bool, copy=False)

    pos = _pick(np.argwhere(mask)[:, ::-1], n_pos, rng)
    neg = np.zeros((0, 2), dtype=np.int64)
    box = mask_to_box(mask)
    if n_neg > 0:
        outside = ~mask
        if box is not None:
            h, w = mask.shape
            gx = (box[2] - box[0] + 1) * margin
            gy = (box[3] - box[1] + 1) * margin
            x0, x1 = int(max(0, box[0] - gx)), int(min(w - 1, box[2] + gx))
            y0, y1 = int(max(0, box[1] - gy)), int(min(h - 1, box[3] + gy))
            near = np.zeros_like(mask)
            near[y0 : y1 + 1, x0 : x1 + 1] = True
            near &= outside
            neg = _pick(np.argwhere(near)[:, ::-1], n_neg, rng)
            outside = outside & ~near
        if neg.shape[0] < n_neg:
            more = _pick(np.argwhere(outside)[:, ::-1], n_neg - neg.shape[0], rng)
            neg = np.concatenate([neg, more])
    points = np.concatenate([pos, neg]).astype(np.float64).reshape(-1, 2)
    labels = np.concatenate([np.ones(pos.shape[0], np.int64), np.zeros(neg.shape[0], np.int64)])
    return points, labels
