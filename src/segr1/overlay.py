"""Draw a segmentation result for people: mask tint + contour, prompt boxes and labelled points.

Pure functions on ``np.ndarray (H, W, 3) uint8 RGB`` images; all coordinates are in the IMAGE frame
(pixels, x right, y down, boxes xyxy).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from segr1.answer import SegPrompt

logger = logging.getLogger(__name__)

MASK_COLOR = (30, 144, 255)  # RGB, the mask tint and its contour
BOX_COLOR = (255, 215, 0)  # RGB, prompt boxes
POSITIVE_COLOR = (0, 220, 0)  # RGB, foreground points (label 1)
NEGATIVE_COLOR = (230, 0, 0)  # RGB, background points (label 0)
#: RGB colours of instances 1, 2, ... in `draw_instance_overlay` (cycled; the first is MASK_COLOR).
INSTANCE_COLORS: tuple[tuple[int, int, int], ...] = (
    MASK_COLOR,
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (23, 190, 207),
    (227, 119, 194),
    (188, 189, 34),
    (140, 86, 75),
    (127, 127, 127),
)


def _line_width(height: int, width: int) -> int:
    """Stroke width in pixels that stays visible on large images and does not swamp small ones."""
    return max(1, round(min(height, width) / 250))


def draw_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    prompt: SegPrompt | None = None,
    *,
    alpha: float = 0.45,
    mask_color: tuple[int, int, int] = MASK_COLOR,
) -> np.ndarray:
    """Return a copy of ``image`` with ``mask`` tinted and outlined and ``prompt`` drawn on top.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) bool (any dtype; non-zero = foreground).
        prompt: boxes (N, 4) xyxy and points (M, 2) xy with labels (M,) in the IMAGE frame, or None.
            Boxes are drawn as rectangles, points with label 1 as green dots and label 0 as red dots.
        alpha: tint opacity inside the mask, in [0, 1].
        mask_color: RGB colour of the tint and the contour.

    Returns:
        (H, W, 3) uint8 RGB; the inputs are not modified.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")

    height, width = mask.shape
    out = np.ascontiguousarray(image).copy()
    fg = mask.astype(bool)
    lw = _line_width(height, width)
    if fg.any():
        tint = np.asarray(mask_color, dtype=np.float32)
        out[fg] = np.round((1.0 - alpha) * out[fg].astype(np.float32) + alpha * tint).astype(np.uint8)
        contours, _ = cv2.findContours(fg.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, mask_color, lw, lineType=cv2.LINE_AA)
    if prompt is not None:
        _draw_prompt(out, prompt, lw)
    return out


def instance_color(k: int) -> tuple[int, int, int]:
    """RGB colour of instance ``k`` (0-based) in `draw_instance_overlay`."""
    return INSTANCE_COLORS[k % len(INSTANCE_COLORS)]


def draw_instance_overlay(
    image: np.ndarray,
    masks: list[np.ndarray],
    prompts: list[SegPrompt] | None = None,
    *,
    alpha: float = 0.45,
) -> np.ndarray:
    """Return a copy of ``image`` with each instance mask tinted and outlined in its own colour
    (`instance_color`), and each instance's prompt drawn with its box in that colour.

    Args:
        image: (H, W, 3) uint8 RGB.
        masks: one (H, W) mask per instance (any dtype; non-zero = the instance); where instances overlap the
            later one's tint is on top.
        prompts: one prompt per instance (IMAGE frame) or None; points keep the green (1) / red (0) of
            `draw_overlay`.
        alpha: tint opacity inside each mask, in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB; the inputs are not modified.
    """
    if prompts is not None and len(prompts) != len(masks):
        raise ValueError(f"got {len(prompts)} prompts for {len(masks)} instance masks")
    out = np.ascontiguousarray(np.asarray(image)).copy()
    for k, mask in enumerate(masks):
        out = draw_overlay(out, mask, None, alpha=alpha, mask_color=instance_color(k))
    if prompts is not None:
        lw = _line_width(*out.shape[:2])
        for k, prompt in enumerate(prompts):
            _draw_prompt(out, prompt, lw, box_color=instance_color(k))
    return out


def _to_pixels(values: np.ndarray, limit: int) -> np.ndarray:
    """Round float coordinates to ints in [0, limit - 1] (NaN -> 0) so OpenCV never sees huge values."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=limit - 1, neginf=0.0)
    return np.clip(np.round(values), 0, max(limit - 1, 0)).astype(np.int64)


def _draw_prompt(
    out: np.ndarray, prompt: SegPrompt, lw: int, box_color: tuple[int, int, int] = BOX_COLOR
) -> None:
    """Draw boxes and points of ``prompt`` (image frame) onto ``out`` in place."""
    height, width = out.shape[:2]
    boxes = np.asarray(prompt.boxes, dtype=np.float64).reshape(-1, 4)
    for x1, y1, x2, y2 in zip(
        _to_pixels(boxes[:, 0], width),
        _to_pixels(boxes[:, 1], height),
        _to_pixels(boxes[:, 2], width),
        _to_pixels(boxes[:, 3], height),
        strict=True,
    ):
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), box_color, lw, lineType=cv2.LINE_8)

    points = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(prompt.labels).reshape(-1)
    if len(labels) != len(points):  # defensive: SegPrompt keeps them aligned
        labels = np.ones(len(points), dtype=np.int64)
    radius = max(3, 3 * lw)
    xs, ys = _to_pixels(points[:, 0], width), _to_pixels(points[:, 1], height)
    for x, y, label in zip(xs, ys, labels, strict=True):
        color = POSITIVE_COLOR if int(label) == 1 else NEGATIVE_COLOR
        center = (int(x), int(y))
        cv2.circle(out, center, radius + lw, (255, 255, 255), -1, lineType=cv2.LINE_AA)
        cv2.circle(out, center, radius, color, -1, lineType=cv2.LINE_AA)
