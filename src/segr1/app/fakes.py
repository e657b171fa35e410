"""A deterministic stand-in policy and matching test scenes, for exercising the demo without a model.

:class:`RedBlobPolicy` looks at the model-frame image it is given and answers, in Seg-R1's format, with
the box around the red pixels and a foreground point at their centre (MODEL frame). On the scenes
:func:`red_disc_scene` draws, GrabCut then recovers the disc, so tests and load benchmarks can check
that every response belongs to its own request. It reads nothing but the image: no weights, no hub.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

RED = (220, 30, 30)


def red_pixels(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of (H, W, 3) uint8 RGB ``image`` that are clearly red."""
    arr = np.asarray(image).astype(np.int16)
    return (arr[..., 0] > 170) & (arr[..., 1] < 100) & (arr[..., 2] < 100)


class RedBlobPolicy:
    """Answers with a box around the red pixels plus their centre as a foreground point (model frame).

    ``frame``: the square model frame it reports (the demo's pipelines resize images to it). An image with
    no red pixel gets an answer with no prompt (parsed as unparsable). ``delay_s`` sleeps in each call, to
    stand in for a slow model in load tests. ``per_blob``: one box and point per 8-connected red blob (one
    object each, as a multi-object answer) instead of one box around all the red pixels.
    """

    def __init__(self, frame: int = 256, delay_s: float = 0.0, *, per_blob: bool = False) -> None:
        self.name = "red-blob"
        self.frame = frame
        self.delay_s = delay_s
        self.per_blob = per_blob

    def generate(
        self,
        images: Sequence[Image.Image],
        instructions: Sequence[str],
        num_samples: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
        system: str | None = None,
    ) -> list[list[str]]:
        """One answer per image (repeated ``num_samples`` times); coordinates in the image's own frame."""
        if self.delay_s:
            import time

            time.sleep(self.delay_s)
        return [
            [self.answer_for(np.asarray(im.convert("RGB")), self.per_blob)] * num_samples for im in images
        ]

    @staticmethod
    def answer_for(image: np.ndarray, per_blob: bool = False) -> str:
        """Seg-R1 answer text for (H, W, 3) uint8 RGB ``image``, in that image's pixel frame (``per_blob``:
        one ``<bbox>`` per red blob, largest first)."""
        red = red_pixels(image)
        if not red.any():
            return "<think>I see nothing red.</think>"
        if per_blob:
            from segr1.instances import connected_components

            blobs = connected_components(red, min_pixels=4)
        else:
            blobs = [red]
        h, w = red.shape
        boxes, points = [], []
        for blob in blobs:
            ys, xs = np.nonzero(blob)
            x1, y1 = max(int(xs.min()) - 2, 0), max(int(ys.min()) - 2, 0)
            x2, y2 = min(int(xs.max()) + 2, w - 1), min(int(ys.max()) + 2, h - 1)
            boxes.append(f"<bbox>[{x1},{y1},{x2},{y2}]</bbox>")
            points.append((int(round(xs.mean())), int(round(ys.mean()))))
        where = ", ".join(f"({cx}, {cy})" for cx, cy in points)
        kind = "object lies" if len(blobs) == 1 else f"{len(blobs)} objects lie"
        return (
            f"<think>The red {kind} around {where}.</think> {', '.join(boxes)}, "
            f"<points>[{','.join(f'[{cx},{cy}]' for cx, cy in points)}]</points>, <labels>[{','.join('1' * len(points))}]</labels>"
        )


def red_disc_scene(
    width: int, height: int, cx: float, cy: float, r: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A textured grey-green background with one red disc; returns (image (H, W, 3) uint8 RGB, mask (H, W) bool)."""
    return red_discs_scene(width, height, [(cx, cy, r)], seed)


def red_discs_scene(
    width: int, height: int, discs: Sequence[tuple[float, float, float]], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A textured grey-green background with red discs ``(cx, cy, r)`` (pixels); returns (image (H, W, 3) uint8
    RGB, mask (H, W) bool of the discs' union)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 150, size=(height, width, 3), dtype=np.uint8)
    image[..., 2] //= 2
    yy, xx = np.mgrid[:height, :width]
    mask = np.zeros((height, width), dtype=bool)
    for cx, cy, r in discs:
        mask |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    noise = rng.integers(-15, 16, size=(int(mask.sum()), 3))
    image[mask] = np.clip(np.array(RED) + noise, 0, 255).astype(np.uint8)
    return image, mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H, W) bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
