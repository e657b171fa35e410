"""Multi-object referring scenes: "all the red shapes", "both circles", "the blue star" -- with per-instance masks.

Each scene is a pure function of ``(seed, index)`` (`multi_scene_at`): 2-7 flat-coloured shapes (circle, square,
triangle, star, diamond) in named colours, at least 3 px apart, on a muted flat or gradient background, and a
phrase that refers to one or several of them:

* ``colour``: "all the red shapes" / "both red shapes" -- every object of one colour (2-4 of them);
* ``shape``: "all the circles" / "both circles" / "the two circles" -- every object of one shape (2-4);
* ``colour_shape``: "all the red circles" / "both red circles" -- every object of one colour and shape (2-3);
* ``single``: "the red circle" -- the one object of a unique colour and shape.

Distractors never satisfy the phrase, so the referred set is exact. Masks are exact (a pixel belongs to an object
if and only if that object painted it); instance ids number the referred objects 1..T in a fixed order (left to
right by box, then top to bottom), distractors T+1..N.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segr1.data.records import Sample
from segr1.data.synthetic import COLOURS
from segr1.geometry import mask_to_box
from segr1.instances import inscribed_point

logger = logging.getLogger(__name__)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
PLURALS = {s: s + "s" for s in SHAPES}
PALETTE: tuple[str, ...] = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "cyan")
QUERY_KINDS: tuple[str, ...] = ("colour", "shape", "colour_shape", "single")
_QUERY_P = (0.3, 0.3, 0.2, 0.2)
_CODE = 53  # stream tag of this family (the single-object families use 11..41)


@dataclass
class MultiScene:
    """One scene.

    image: (H, W, 3) uint8 RGB. instances: (H, W) uint8, 0 = background, 1..T the referred objects, T+1..N the
    distractors. n_targets: T. text: the referring phrase. meta: JSON-serialisable description (kind, size
    [W, H], query kind, per object shape / colour / centre / radius / box).
    """

    image: np.ndarray
    instances: np.ndarray
    n_targets: int
    text: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def target_masks(self) -> list[np.ndarray]:
        """(H, W) bool mask of each referred object, in id order."""
        return [self.instances == k for k in range(1, self.n_targets + 1)]

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool union of the referred objects."""
        return (self.instances >= 1) & (self.instances <= self.n_targets)

    @property
    def target_instances(self) -> np.ndarray:
        """(H, W) uint8 instance map of the referred objects only (distractors set to 0)."""
        return np.where(self.instances <= self.n_targets, self.instances, 0).astype(np.uint8)

    @property
    def boxes(self) -> np.ndarray:
        """(T, 4) float64 inclusive ``[x1, y1, x2, y2]`` of the referred objects, image frame."""
        return np.stack([mask_to_box(m) for m in self.target_masks])

    @property
    def points(self) -> np.ndarray:
        """(T, 2) float64 ``(x, y)`` of each referred object's largest inscribed circle centre."""
        return np.stack([inscribed_point(m) for m in self.target_masks])


@dataclass
class _Obj:
    shape: str
    colour: str
    cx: float = 0.0
    cy: float = 0.0
    r: float = 0.0


def scene_id(seed: int, index: int) -> str:
    """File-name-safe id, e.g. ``"multi-0-000042"``."""
    return f"multi-{seed}-{index:06d}"


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The independent random stream of scene ``index`` under ``seed``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng([int(seed), _CODE, int(index)])


def _outline(shape: str) -> np.ndarray:
    """(N, 2) polygon of a unit-radius shape centred at 0."""
    if shape == "circle":
        t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "square":
        s = 1 / math.sqrt(2)
        return np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
    if shape == "diamond":
        return np.array([[0, -1], [1, 0], [0, 1], [-1, 0]], dtype=np.float64)
    if shape == "triangle":
        t = -math.pi / 2 + np.arange(3) * 2 * math.pi / 3
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "star":
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def _raster(obj: _Obj, h: int, w: int) -> np.ndarray:
    canvas = np.zeros((h, w), np.uint8)
    pts = np.rint((_outline(obj.shape) * obj.r + [obj.cx, obj.cy]) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _query(rng: np.random.Generator) -> tuple[str, list[_Obj], list[_Obj], str]:
    """(query kind, targets, distractors, phrase) -- attributes only; positions come later."""
    kind = str(rng.choice(QUERY_KINDS, p=_QUERY_P))
    colour, shape = str(rng.choice(PALETTE)), str(rng.choice(SHAPES))
    other_colours = [c for c in PALETTE if c != colour]
    other_shapes = [s for s in SHAPES if s != shape]
    n_distract = int(rng.integers(1, 4))
    if kind == "colour":
        targets = [_Obj(str(rng.choice(SHAPES)), colour) for _ in range(int(rng.integers(2, 5)))]
        distract = [_Obj(str(rng.choice(SHAPES)), str(rng.choice(other_colours))) for _ in range(n_distract)]
        noun = f"{colour} shapes"
    elif kind == "shape":
        targets = [_Obj(shape, str(rng.choice(PALETTE))) for _ in range(int(rng.integers(2, 5)))]
        distract = [_Obj(str(rng.choice(other_shapes)), str(rng.choice(PALETTE))) for _ in range(n_distract)]
        noun = PLURALS[shape]
    elif kind == "colour_shape":
        targets = [_Obj(shape, colour) for _ in range(int(rng.integers(2, 4)))]
        distract = []
        for _ in range(n_distract):  # same colour or same shape, never both
            if rng.random() < 0.5:
                distract.append(_Obj(str(rng.choice(other_shapes)), colour))
            else:
                distract.append(_Obj(shape, str(rng.choice(other_colours))))
        noun = f"{colour} {PLURALS[shape]}"
    else:
        targets = [_Obj(shape, colour)]
        distract = []
        while len(distract) < n_distract:
            o = _Obj(str(rng.choice(SHAPES)), str(rng.choice(PALETTE)))
            if (o.shape, o.colour) != (shape, colour):
                distract.append(o)
        return kind, targets, distract, f"the {colour} {shape}"
    if len(targets) == 2:
        phrase = str(rng.choice([f"both {noun}", f"the two {noun}", f"all the {noun}"]))
    else:
        phrase = f"all the {noun}"
    return kind, targets, distract, phrase


def _place(rng: np.random.Generator, objs: list[_Obj], w: int, h: int, base: float) -> list[_Obj]:
    """Positions for as many objects as fit (targets first: they must all fit), at least 3 px apart."""
    placed: list[_Obj] = []
    for obj in objs:
        obj.r = base * float(rng.uniform(0.8, 1.2))
        for _ in range(60):
            cx, cy = rng.uniform(obj.r + 1, w - 1 - obj.r), rng.uniform(obj.r + 1, h - 1 - obj.r)
            if all(math.hypot(cx - o.cx, cy - o.cy) >= obj.r + o.r + 3 for o in placed):
                obj.cx, obj.cy = float(cx), float(cy)
                placed.append(obj)
                break
    return placed


def _draw_size(rng: np.random.Generator, size, min_size: int, max_size: int) -> tuple[int, int]:
    if size is not None:
        w, h = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if w < 48 or h < 48:
            raise ValueError(f"multi-object scenes need at least 48x48 pixels, got {w}x{h}")
        return w, h
    if not 48 <= min_size <= max_size:
        raise ValueError(f"need 48 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
    return int(rng.integers(min_size, max_size + 1)), int(rng.integers(min_size, max_size + 1))


def multi_scene_at(
    seed: int,
    index: int,
    *,
    size: int | tuple[int, int] | None = None,
    min_size: int = 160,
    max_size: int = 512,
) -> MultiScene:
    """Scene ``index`` under ``seed``: deterministic and independent of other indices. ``size`` fixes (W, H)
    (or a square side); otherwise each side is drawn in [min_size, max_size]."""
    rng = scene_rng(seed, index)
    w, h = _draw_size(rng, size, min_size, max_size)
    for _ in range(20):
        kind, targets, distract, phrase = _query(rng)
        n = len(targets) + len(distract)
        base = min(w, h) * float(rng.uniform(0.06, 0.16 if n <= 4 else 0.11))
        placed = _place(rng, targets + distract, w, h, max(base, 5.0))
        if all(t in placed for t in targets):
            distract = [o for o in distract if o in placed]
            break
    else:  # a very small canvas: two objects in opposite halves
        r = min(w, h) * 0.15
        kind, phrase = "single", "the red circle"
        targets = [_Obj("circle", "red", w * 0.27, h * 0.5, r)]
        distract = [_Obj("square", "blue", w * 0.73, h * 0.5, r)]
    targets.sort(key=lambda o: (o.cx - o.r, o.cy - o.r))
    grey = rng.uniform(85, 165)
    bg0 = np.clip(grey + rng.uniform(-12, 12, 3), 0, 255)
    bg1 = np.clip(bg0 + rng.uniform(-30, 30, 3), 0, 255)
    t = np.linspace(0.0, 1.0, w)[None, :, None] if rng.random() < 0.5 else np.zeros((1, 1, 1))
    img = np.broadcast_to(bg0 + t * (bg1 - bg0), (h, w, 3)).astype(np.float32).copy()
    instances = np.zeros((h, w), np.uint8)
    described = []
    for k, obj in enumerate(targets + distract, start=1):
        m = _raster(obj, h, w)
        rgb = np.clip(np.array(COLOURS[obj.colour], np.float32) + rng.uniform(-10, 10, 3), 0, 255)
        img[m] = rgb
        instances[m] = k
        box = mask_to_box(m)
        described.append({"shape": obj.shape, "colour": obj.colour, "centre": [round(obj.cx, 2), round(obj.cy, 2)],
                          "radius": round(obj.r, 2), "box": [int(v) for v in box], "target": k <= len(targets)})  # fmt: skip
    img += rng.uniform(0.5, 3.0) * rng.standard_normal(img.shape, dtype=np.float32)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    meta = {"kind": "multi", "query": kind, "size": [w, h], "objects": described, "n_targets": len(targets),
            "seed": int(seed), "index": int(index), "id": scene_id(seed, index)}  # fmt: skip
    return MultiScene(image, instances, len(targets), phrase, meta)


def write_multi_scenes(
    n: int,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    start: int = 0,
    size: int | tuple[int, int] | None = None,
    min_size: int = 160,
    max_size: int = 512,
) -> list[Sample]:
    """Write scenes ``start .. start + n - 1`` as a dataset folder and return its samples (task ``referring``).

    Layout: ``out/images/<id>.png``, ``out/masks/<id>.png`` (union of the referred objects, 0/255),
    ``out/instances/<id>.png`` (8-bit map of the referred objects only, ids 1..T) and ``out/manifest.jsonl``
    whose ``meta`` holds ``instances`` (path relative to ``out``; `segr1.data.folders.read_manifest` resolves it,
    and the returned samples hold it resolved), ``boxes`` (T, 4) and ``points`` (T, 2) of the referred objects
    (image frame; the columns `segr1.family_rewards` reads) and the scene description.
    """
    from PIL import Image

    from segr1.data.folders import write_manifest
    from segr1.data.io import write_image, write_mask_png

    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = Path(out)
    (out / "instances").mkdir(parents=True, exist_ok=True)
    samples = []
    for index in range(start, start + n):
        scene = multi_scene_at(seed, index, size=size, min_size=min_size, max_size=max_size)
        sid = scene.meta["id"]
        image = write_image(scene.image, out / "images" / f"{sid}.png")
        mask = write_mask_png(scene.mask, out / "masks" / f"{sid}.png")
        inst_path = out / "instances" / f"{sid}.png"
        tmp = inst_path.with_name(f".{inst_path.name}.tmp.png")
        Image.fromarray(scene.target_instances, mode="L").save(tmp)
        os.replace(tmp, inst_path)
        meta = {
            "dataset": "synthetic-multi",
            "instances": f"instances/{sid}.png",
            "boxes": scene.boxes.tolist(),
            "points": scene.points.tolist(),
            **scene.meta,
        }
        json.dumps(meta)  # fail here, not in the manifest writer, if something is not serialisable
        samples.append(Sample(sid, image, mask, scene.text, "referring", meta))
    write_manifest(samples, out / "manifest.jsonl")  # meta["instances"] relative to the manifest
    for sample in samples:  # the returned samples name their instance map as read_manifest does
        sample.meta = {**sample.meta, "instances": str(Path(os.path.abspath(out)) / sample.meta["instances"])}
    logger.info("wrote %d multi-object scenes to %s", n, out)
    return samples
