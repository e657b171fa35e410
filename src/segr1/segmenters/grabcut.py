"""`grabcut`: OpenCV GrabCut seeded by boxes and labelled points. CPU only, no weights; the offline default.

How a sub-prompt (one box and the points inside it, or points alone; see `geometry.split_by_box`) seeds GrabCut,
at the working resolution (the image downscaled so its long side is at most ``max_side``):

* **box**: outside the box is definite background (``GC_BGD``), inside is probable foreground (``GC_PR_FGD``).
* **points**: a small disc around each point, definite foreground (``GC_FGD``, label 1) or definite background
  (``GC_BGD``, label 0), drawn over the box seeds.
* **points only** (no box): the whole image is probable background (``GC_PR_BGD``) except a seed rectangle
  around the positive points, grown by ``points_margin`` x the long side, which is probable foreground. Without
  any positive point there is nothing to grow and the sub-prompt gives an empty mask.

When GrabCut cannot run (too few background or foreground seed pixels, e.g. a box covering the whole image or
a degenerate box), the sub-prompt's mask is its seed foreground (the box interior plus positive discs, minus
negative discs) instead. Sub-prompt masks of one prompt set are united, then upscaled to the image size
(nearest). cv2's RNG is reseeded before every call, so results are deterministic.

Bounded time. GrabCut's max-flow can run for minutes on near-flat images (a single-colour 600x600 PNG ran
over 190 s). A working image of one flat colour has nothing to separate: the seed mask is returned at once.
Every other call runs in a worker process (`segr1.segmenters._grabcut_worker`) that is stopped when
``timeout_s`` (for the whole ``segment`` call) has passed; the call then raises :class:`GrabCutTimeout`,
which the pipeline records as a failed segmentation ("GrabCut did not finish within ... s").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from segr1.answer import SegPrompt
from segr1.segmenters._common import start_segment
from segr1.segmenters._grabcut_worker import POOL, SUPPORTED, GrabCutTimeout

__all__ = ["GrabCutConfig", "GrabCutSegmenter", "GrabCutTimeout"]

logger = logging.getLogger(__name__)

_MIN_SEED_PIXELS = 16  # GrabCut's GMMs (5 components each) need a few samples on each side


@dataclass
class GrabCutConfig:
    """Settings of the GrabCut backend.

    max_side: images are downscaled so their long side is at most this many pixels (speed); masks are upscaled back.
    iterations: GrabCut iterations per sub-prompt.
    point_radius: radius of a point's seed disc as a fraction of the working long side (at least 2 px).
    points_margin: points-only prompts: the seed rectangle around the positive points grows by this fraction of
        the working long side on each side.
    seed: cv2 RNG seed (GMM initialisation), reset before each GrabCut call.
    timeout_s: most seconds one ``segment`` call may spend in GrabCut (it runs in a worker process that is
        stopped then; :class:`GrabCutTimeout`). None runs GrabCut in this process, unbounded.
    """

    max_side: int = 512
    iterations: int = 3
    point_radius: float = 0.01
    points_margin: float = 0.15
    seed: int = 0
    timeout_s: float | None = 15.0

    def __post_init__(self) -> None:
        if self.max_side < 16:
            raise ValueError(f"max_side must be >= 16 pixels; got {self.max_side}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1; got {self.iterations}")
        if not 0 <= self.point_radius <= 0.5:
            raise ValueError(f"point_radius must be a fraction in [0, 0.5]; got {self.point_radius}")
        if not 0 <= self.points_margin <= 1:
            raise ValueError(f"points_margin must be a fraction in [0, 1]; got {self.points_margin}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds or None; got {self.timeout_s}")


class GrabCutSegmenter:
    """OpenCV GrabCut behind the `Segmenter` protocol (see the module docstring for the seeding rules)."""

    name = "grabcut"

    def __init__(self, config: GrabCutConfig | None = None) -> None:
        # No lock needed: the backend keeps no state between calls, and cv2's default RNG is per thread.
        self.config = config or GrabCutConfig()
        self._bounded = self.config.timeout_s is not None and SUPPORTED
        if self._bounded:
            POOL.prestart()  # the worker starts while the caller loads the policy

    def __repr__(self) -> str:
        return f"GrabCutSegmenter({self.config})"

    def segment(self, image: np.ndarray | Image.Image, prompts: Sequence[SegPrompt]) -> list[np.ndarray]:
        """Segment ONE image with MANY prompt sets.

        Args:
            image: PIL image or (H, W, 3) uint8 RGB array.
            prompts: prompt sets in the IMAGE frame (boxes (N, 4) xyxy, points (M, 2) xy, labels (M,)).

        Returns:
            One (H, W) bool mask per prompt set: the union of its per-box masks; all False for an empty prompt.
        """
        rgb, subs, masks = start_segment(image, prompts)
        if not subs.items:
            return masks
        h, w = rgb.shape[:2]
        scale = min(1.0, self.config.max_side / max(h, w))
        ww, wh = max(1, round(w * scale)), max(1, round(h * scale))
        work = rgb if (ww, wh) == (w, h) else cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA)
        sx, sy = ww / w, wh / h
        small = [np.zeros((wh, ww), dtype=bool) for _ in range(len(prompts))]
        flat = _is_flat(work)
        if flat:
            logger.info("the image is one flat colour: GrabCut has nothing to separate; masks are the seeds")
        deadline = time.monotonic() + self.config.timeout_s if self._bounded else None  # type: ignore[operator]
        for sub, owner in zip(subs.items, subs.owner, strict=True):
            small[owner] |= self._segment_one(work, _scale_prompt(sub, sx, sy), flat, deadline)
        for i, m in enumerate(small):
            if m.any():
                masks[i] = m if (ww, wh) == (w, h) else _upscale(m, w, h)
        return masks

    def _segment_one(
        self, work: np.ndarray, sub: SegPrompt, flat: bool = False, deadline: float | None = None
    ) -> np.ndarray:
        """Mask (h, w) bool of one sub-prompt (at most one box) on the working-resolution image.

        ``flat``: the image is one colour (the seed mask is returned). ``deadline``: ``time.monotonic()``
        value after which GrabCut is stopped (:class:`GrabCutTimeout`); None runs it in this process."""
        seeds = self._seeds(work.shape[:2], sub)
        if seeds is None:
            return np.zeros(work.shape[:2], dtype=bool)
        fg_seed = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
        n_fg = int(fg_seed.sum())
        n_bg = seeds.size - n_fg
        if flat or n_fg < _MIN_SEED_PIXELS or n_bg < _MIN_SEED_PIXELS or not (seeds == cv2.GC_PR_FGD).any():
            return fg_seed
        try:
            if deadline is None:
                cv2.setRNGSeed(self.config.seed)
                bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
                seeds, _, _ = cv2.grabCut(
                    work, seeds, None, bgd, fgd, self.config.iterations, cv2.GC_INIT_WITH_MASK
                )
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GrabCutTimeout("no time left")
                seeds = POOL.grabcut(work, seeds, self.config.iterations, self.config.seed, left)
        except cv2.error as exc:  # e.g. a degenerate colour distribution; keep the seed
            logger.debug("grabCut failed (%s); using the seed mask", exc)
            return fg_seed
        except GrabCutTimeout:
            raise GrabCutTimeout(
                f"GrabCut did not finish within {self.config.timeout_s:g} s and was stopped (near-flat "
                "images make its max-flow very slow)"
            ) from None
        return (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)

    def _seeds(self, shape: tuple[int, int], sub: SegPrompt) -> np.ndarray | None:
        """GrabCut's initial label map (h, w) uint8, or None when the sub-prompt has no foreground signal."""
        h, w = shape
        long_side = max(h, w)
        pos = sub.points[sub.labels == 1]
        if sub.boxes.shape[0]:
            seeds = np.full((h, w), cv2.GC_BGD, dtype=np.uint8)
            x1, y1, x2, y2 = _pixel_box(sub.boxes[0], w, h)
            seeds[y1 : y2 + 1, x1 : x2 + 1] = cv2.GC_PR_FGD
        elif pos.shape[0]:
            seeds = np.full((h, w), cv2.GC_PR_BGD, dtype=np.uint8)
            grow = self.config.points_margin * long_side
            lo = pos.min(axis=0) - grow
            hi = pos.max(axis=0) + grow
            x1, y1, x2, y2 = _pixel_box(np.array([lo[0], lo[1], hi[0], hi[1]]), w, h)
            seeds[y1 : y2 + 1, x1 : x2 + 1] = cv2.GC_PR_FGD
        else:
            return None
        radius = max(2, round(self.config.point_radius * long_side))
        for (x, y), label in zip(sub.points, sub.labels, strict=True):
            value = cv2.GC_FGD if label == 1 else cv2.GC_BGD
            cv2.circle(seeds, (round(float(x)), round(float(y))), radius, int(value), thickness=-1)
        return seeds


def _is_flat(work: np.ndarray) -> bool:
    """True when the (h, w, 3) image holds a single colour."""
    first = work.reshape(-1, 3)[0]
    return bool((work == first).all())


def _scale_prompt(prompt: SegPrompt, sx: float, sy: float) -> SegPrompt:
    """Map pixel-index coordinates to a resized image (pixel centres map to pixel centres)."""
    boxes = (prompt.boxes + 0.5) * np.array([sx, sy, sx, sy]) - 0.5
    points = (prompt.points + 0.5) * np.array([sx, sy]) - 0.5
    return SegPrompt(boxes=boxes, points=points, labels=prompt.labels)


def _pixel_box(box: np.ndarray, w: int, h: int) -> tuple[int, int, int, int]:
    """Inclusive integer pixel box clipped to the image."""
    x1 = int(np.clip(np.floor(min(box[0], box[2]) + 0.5), 0, w - 1))
    x2 = int(np.clip(np.floor(max(box[0], box[2]) + 0.5), 0, w - 1))
    y1 = int(np.clip(np.floor(min(box[1], box[3]) + 0.5), 0, h - 1))
    y2 = int(np.clip(np.floor(max(box[1], box[3]) + 0.5), 0, h - 1))
    return x1, y1, x2, y2


def _upscale(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
