"""Seeded procedural scenes with exact masks: salient, camouflaged and referring families.

Every scene is a pure function of ``(kind, seed, index)`` (:func:`scene_at`), so a training set and a test
set drawn with different seeds are disjoint and reproducible byte for byte. A scene is composited from a
background texture and object textures through hard-edged shape masks, so the mask is exact: a pixel is
foreground if and only if it was painted by the (target) object.

- ``salient``: one object whose mean colour is far (RGB distance >= 140) from the background's.
- ``camouflaged``: one object painted with the background's texture family, with a small colour shift
  (distance 15-40) and a different phase/period/orientation: hard, but the boundary is visible.
- ``silhouette``: the salient family's shapes, sizes and positions as a light, flat object on a dark, flat
  background. Finding the object needs no comparison of colours (it is the bright region), only where it
  is: a curriculum family that lets a model trained from scratch learn to localise before it meets the
  other families (the embedded policy's SFT mixes it in; see docs/results.md).
- ``referring``: 2-4 non-overlapping objects of named shapes and colours on a muted background; the text
  names exactly one of them ("the blue star on the left", "the large red circle", "the triangle"); the
  mask is that object only.
- ``referring-colour``: the referring counterpart of ``silhouette``: two flat objects of the same shape in two
  well-separated colours on a dark, flat background, and the phrase names the target by its colour only
  ("the red object"). Telling them apart needs one word bound to one colour and nothing else: a curriculum
  family for grounding a phrase (docs/results_multitask.md).

Shapes: ellipses, polygons, stars, radial blobs, rectangles, crosses and (occasionally) rings with a hole.
Textures: flat, smooth noise, stripes, gradients, checkers, plus grain and a soft illumination gradient.
Image sizes (W, H) are drawn in ``[min_size, max_size]`` with aspect ratios up to 2:1 unless fixed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segr1.data.records import Sample
from segr1.data.synthetic_hard import HARD_KIND_CODES, HARD_KINDS, task_of_kind

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = (
    "salient",
    "camouflaged",
    "referring",
    "silhouette",
    "referring-colour",
    *HARD_KINDS,
)
_KIND_CODE = {
    "salient": 11,
    "camouflaged": 23,
    "referring": 37,
    "silhouette": 41,
    "referring-colour": 43,
    **HARD_KIND_CODES,
}
FG_SHAPES: tuple[str, ...] = ("ellipse", "polygon", "star", "blob", "rectangle", "cross", "ring")
_FG_SHAPE_P = np.array([0.2, 0.18, 0.14, 0.24, 0.12, 0.06, 0.06])
TEXTURES: tuple[str, ...] = ("flat", "noise", "stripes", "gradient", "checker")
REF_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 205, 40),
    "orange": (240, 135, 30),
    "purple": (135, 60, 185),
    "pink": (240, 125, 185),
    "cyan": (40, 195, 205),
    "white": (242, 242, 242),
    "black": (25, 25, 25),
}
SIDE_WORDS = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
SIZE_WORDS = {"large": ("large", "big", "larger", "bigger"), "small": ("small", "little", "smaller")}


@dataclass
class Scene:
    """One synthetic scene.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) bool, exact ground truth (the target object only for referring scenes).
        text: the referring phrase, or None for salient/camouflaged scenes.
        meta: JSON-serialisable description (kind, size [W, H], shapes, textures, boxes xyxy in pixels).
    """

    image: np.ndarray
    mask: np.ndarray
    text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; choose one of {KINDS}")


def scene_rng(kind: str, seed: int, index: int) -> np.random.Generator:
    """The independent random stream of scene ``index`` of family ``kind`` under ``seed``."""
    _check_kind(kind)
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng([int(seed), _KIND_CODE[kind], int(index)])


def scene_id(kind: str, seed: int, index: int) -> str:
    """File-name-safe id of a scene, e.g. ``"salient-0-000042"``."""
    _check_kind(kind)
    return f"{kind}-{seed}-{index:06d}"


def scene_at(
    kind: str,
    seed: int,
    index: int,
    *,
    size: int | tuple[int, int] | None = None,
    min_size: int = 160,
    max_size: int = 640,
) -> Scene:
    """Scene ``index`` of family ``kind`` under ``seed``: deterministic, independent of other indices."""
    scene = generate_scene(kind, scene_rng(kind, seed, index), size, min_size=min_size, max_size=max_size)
    scene.meta.update(seed=int(seed), index=int(index), id=scene_id(kind, seed, index))
    return scene


def iter_scenes(kind: str, seed: int, n: int, *, start: int = 0, **kwargs: Any) -> Iterator[Scene]:
    """Scenes ``start .. start + n - 1`` of :func:`scene_at` (keyword arguments are passed through)."""
    for index in range(start, start + n):
        yield scene_at(kind, seed, index, **kwargs)


def write_scenes(
    kind: str,
    n: int,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    start: int = 0,
    size: int | tuple[int, int] | None = None,
    min_size: int = 160,
    max_size: int = 640,
    text: str | None = None,
    progress: bool = True,
) -> list[Sample]:
    """Write scenes ``start .. start + n - 1`` as a dataset folder and return its samples.

    Layout: ``out/images/<id>.png`` (RGB), ``out/masks/<id>.png`` (0/255), ``out/manifest.jsonl`` (see
    :func:`segr1.data.folders.write_manifest`; task ``foreground``, or ``referring`` with the phrase as
    ``text``) and, for referring scenes, ``out/refs.jsonl`` (``id``, ``image``, ``mask``, ``text``). Files
    are written atomically; the two JSONL files are replaced, not appended to.

    ``text``: for the foreground families, every scene's manifest text: a cue the instruction places before the
    task line (``segr1.styles.segr1.build_instruction``), such as what kind of object is wanted; the scenes
    themselves do not change. Referring and reasoning scenes carry their own phrase, so it is refused there.
    """
    from tqdm.auto import tqdm

    from segr1.data.folders import write_manifest
    from segr1.data.io import write_image, write_mask_png

    _check_kind(kind)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = Path(out)
    samples: list[Sample] = []
    task = task_of_kind(kind)
    if text is not None:
        if task != "foreground":
            raise ValueError(f"text is for the foreground families; {kind!r} scenes carry their own phrase")
        text = " ".join(str(text).split())
        if not text or len(text) > 500:
            raise ValueError(f"text must be 1-500 characters of words; got {text!r}")
    for index in tqdm(range(start, start + n), desc=f"synth {kind}", unit="scene", disable=not progress):
        scene = scene_at(kind, seed, index, size=size, min_size=min_size, max_size=max_size)
        sid = scene.meta["id"]
        image = write_image(scene.image, out / "images" / f"{sid}.png")
        mask = write_mask_png(scene.mask, out / "masks" / f"{sid}.png")
        meta = {"dataset": f"synthetic-{kind}", **scene.meta}
        samples.append(Sample(sid, image, mask, scene.text if text is None else text, task, meta))
    write_manifest(samples, out / "manifest.jsonl")
    if task == "referring":
        refs = out / "refs.jsonl"
        rows = [
            {"id": s.id, "image": f"images/{s.id}.png", "mask": f"masks/{s.id}.png", "text": s.text}
            for s in samples
        ]
        tmp = refs.with_name(f".{refs.name}.tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, refs)
    logger.info("wrote %d %s scenes to %s", n, kind, out)
    return samples


def generate_scene(
    kind: str,
    rng: np.random.Generator | int,
    size: int | tuple[int, int] | None = None,
    *,
    min_size: int = 160,
    max_size: int = 640,
) -> Scene:
    """Draw one scene of family ``kind`` from ``rng`` (a Generator, or an int seed).

    Args:
        kind: ``"salient"``, ``"camouflaged"``, ``"referring"`` or ``"silhouette"``.
        rng: random source; an int is turned into ``np.random.default_rng(rng)``.
        size: image size ``(W, H)`` in pixels or an int for a square; None draws it in [min_size, max_size].
        min_size, max_size: bounds on each side when ``size`` is None (8 <= min_size <= max_size).
    """
    _check_kind(kind)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    w, h = _draw_size(rng, size, min_size, max_size)
    if kind == "referring":
        scene = _referring_scene(rng, w, h)
    elif kind == "referring-colour":
        scene = _colour_scene(rng, w, h)
    elif kind in HARD_KINDS:
        from segr1.data.synthetic_hard import generate_hard

        scene = generate_hard(kind, rng, w, h)
    else:
        scene = _foreground_scene(
            rng, w, h, camouflaged=kind == "camouflaged", silhouette=kind == "silhouette"
        )
    scene.meta = {"kind": kind, "size": [w, h], **scene.meta}
    return scene


def _draw_size(
    rng: np.random.Generator, size: int | tuple[int, int] | None, min_size: int, max_size: int
) -> tuple[int, int]:
    if size is not None:
        w, h = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if w < 16 or h < 16:
            raise ValueError(f"scene size must be at least 16x16 pixels, got {w}x{h}")
        return w, h
    if not 16 <= min_size <= max_size:
        raise ValueError(f"need 16 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
    longer = int(rng.integers(min_size, max_size + 1))
    shorter = int(np.clip(round(longer / rng.uniform(1.0, 2.0)), min_size, longer))
    return (longer, shorter) if rng.random() < 0.5 else (shorter, longer)


# ----------------------------------------------------------------------------------------------- textures


def _texture_spec(
    rng: np.random.Generator, c0: np.ndarray, c1: np.ndarray, family: str | None = None
) -> dict:
    """Parameters of one texture: family, two RGB colours, orientation, period, phase, grain."""
    return {
        "family": family or str(rng.choice(TEXTURES, p=[0.12, 0.34, 0.2, 0.16, 0.18])),
        "c0": np.asarray(c0, dtype=np.float64),
        "c1": np.asarray(c1, dtype=np.float64),
        "angle": float(rng.uniform(0, math.pi)),
        "period": float(rng.uniform(6, 40)),
        "phase": float(rng.uniform(0, 2 * math.pi)),
        "cells": int(rng.integers(3, 12)),
        "grain": float(rng.uniform(1, 6)),
    }


def _render_texture(spec: dict, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 texture in [0, 255] (unclipped grain) from a :func:`_texture_spec`."""
    family, a = spec["family"], spec["angle"]
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    u = xx * math.cos(a) + yy * math.sin(a)
    if family == "flat":
        t = np.zeros((h, w), np.float32)
    elif family == "noise":
        cells = spec["cells"]
        coarse = rng.random((cells, max(2, round(cells * w / h)))).astype(np.float32)
        fine = rng.random((cells * 3, max(2, round(cells * 3 * w / h)))).astype(np.float32)
        t = 0.7 * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        t += 0.3 * cv2.resize(fine, (w, h), interpolation=cv2.INTER_CUBIC)
        t = np.clip((t - 0.5) * 1.6 + 0.5, 0, 1)
    elif family == "stripes":
        t = 0.5 + 0.5 * np.sin(u * (2 * math.pi / spec["period"]) + spec["phase"])
    elif family == "gradient":
        span = abs(w * math.cos(a)) + abs(h * math.sin(a)) + 1e-6
        t = np.abs(np.mod(u / span + spec["phase"] / (2 * math.pi), 2.0) - 1.0)  # smooth triangle wave
    elif family == "checker":
        v = -xx * math.sin(a) + yy * math.cos(a)
        p = spec["period"]
        t = np.mod(np.floor(u / p + spec["phase"]) + np.floor(v / p), 2.0)
    else:
        raise ValueError(f"unknown texture family {family!r}; choose one of {TEXTURES}")
    c0, c1 = spec["c0"].astype(np.float32), spec["c1"].astype(np.float32)
    img = c0 + np.broadcast_to(t, (h, w))[:, :, None].astype(np.float32) * (c1 - c0)
    return img + spec["grain"] * rng.standard_normal((h, w, 1), dtype=np.float32)


def _random_colour(rng: np.random.Generator, lo: float = 20, hi: float = 235) -> np.ndarray:
    return rng.uniform(lo, hi, 3)


def _finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply a soft illumination gradient and sensor noise; return (H, W, 3) uint8."""
    h, w = img.shape[:2]
    a = rng.uniform(0, 2 * math.pi)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    ramp = ((xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a)) / max(h, w)
    img = img * (1.0 + rng.uniform(0.0, 0.25) * ramp)[:, :, None]
    img += rng.uniform(0.5, 3.0) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------- shapes


def _ellipse(rx: float, ry: float, n: int = 72) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)


def _star(points: int, inner: float) -> np.ndarray:
    t = np.arange(2 * points) * math.pi / points - math.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _rotate(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _shape_outline(shape: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Outer polygon (N, 2) and optional hole polygon, offsets in units of the radius (max distance 1)."""
    hole = None
    angle = float(rng.uniform(0, 2 * math.pi))
    if shape in ("ellipse", "circle"):
        outer = _ellipse(1.0, 1.0 if shape == "circle" else rng.uniform(0.4, 1.0))
    elif shape in ("ring",):
        ratio = 1.0 if rng.random() < 0.5 else rng.uniform(0.6, 1.0)
        outer = _ellipse(1.0, ratio)
        hole = _ellipse(1.0, ratio) * rng.uniform(0.35, 0.6)
    elif shape == "polygon":
        n = int(rng.integers(3, 9))
        t = np.sort(rng.uniform(0, 2 * math.pi, n)) if n > 4 else np.arange(n) * 2 * math.pi / n
        t = t + rng.uniform(-0.25, 0.25, n)
        outer = rng.uniform(0.65, 1.0, n)[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    elif shape == "star":
        outer = _star(int(rng.integers(4, 8)), rng.uniform(0.35, 0.6))
    elif shape == "blob":
        t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        r = np.ones_like(t)
        for k in range(2, 6):
            r += rng.uniform(0, 0.5 / k) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
        outer = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    elif shape in ("rectangle", "square", "diamond"):
        ratio = rng.uniform(0.35, 1.0) if shape == "rectangle" else 1.0
        outer = np.array([[-1, -ratio], [1, -ratio], [1, ratio], [-1, ratio]], dtype=np.float64)
        angle = {"square": 0.0, "diamond": math.pi / 4}.get(shape, angle)
    elif shape == "triangle":
        outer, angle = _star(3, 0.5)[::2], float(rng.uniform(-0.2, 0.2))
    elif shape == "cross":
        a, b = 1.0, rng.uniform(0.28, 0.42)
        outer = np.array(
            [
                [-b, -a],
                [b, -a],
                [b, -b],
                [a, -b],
                [a, b],
                [b, b],
                [b, a],
                [-b, a],
                [-b, b],
                [-a, b],
                [-a, -b],
                [-b, -b],
            ]
        )
        if rng.random() < 0.5:
            angle = 0.0
    else:
        raise ValueError(f"unknown shape {shape!r}")
    outer = _rotate(outer, angle)
    scale = 1.0 / np.max(np.hypot(outer[:, 0], outer[:, 1]))
    return outer * scale, (None if hole is None else _rotate(hole, angle) * scale)


def _rasterise(
    outline: tuple[np.ndarray, np.ndarray | None], cx: float, cy: float, r: float, h: int, w: int
) -> np.ndarray:
    """(H, W) bool mask of an outline scaled by ``r`` and centred at (cx, cy) in pixels."""
    canvas = np.zeros((h, w), np.uint8)
    outer, hole = outline
    to_fixed = lambda pts: np.rint((pts * r + [cx, cy]) * 16).astype(np.int32)  # noqa: E731 (4-bit subpixel)
    cv2.fillPoly(canvas, [to_fixed(outer)], 1, lineType=cv2.LINE_8, shift=4)
    if hole is not None:
        cv2.fillPoly(canvas, [to_fixed(hole)], 0, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


# ---------------------------------------------------------------------------------------------- families


def _foreground_scene(
    rng: np.random.Generator, w: int, h: int, *, camouflaged: bool, silhouette: bool = False
) -> Scene:
    """One object on a background; exact mask; meta records shape, textures and colour distance.

    ``silhouette``: draw the object as in a salient scene, then paint it as one light grey level on one dark
    grey level (no textures)."""
    bg0 = _random_colour(rng)
    bg = _texture_spec(rng, bg0, np.clip(bg0 + rng.normal(0, 35, 3), 0, 255))
    if camouflaged:
        direction = rng.normal(size=3)
        shift = direction / np.linalg.norm(direction) * rng.uniform(15, 40)
        fg = dict(bg, c0=np.clip(bg["c0"] + shift, 0, 255), c1=np.clip(bg["c1"] + shift, 0, 255))
        fg.update(
            phase=bg["phase"] + rng.uniform(0.6, 2 * math.pi - 0.6),
            period=bg["period"] * rng.uniform(0.75, 1.33),
            angle=bg["angle"] + rng.uniform(-0.5, 0.5),
        )
    else:
        bg_mean = (bg["c0"] + bg["c1"]) / 2
        for _ in range(64):
            fg0 = _random_colour(rng, 0, 255)
            if np.linalg.norm(fg0 - bg_mean) >= 140:
                break
        else:
            fg0 = np.where(bg_mean > 127, 10.0, 245.0)
        fg = _texture_spec(rng, fg0, np.clip(fg0 + rng.normal(0, 20, 3), 0, 255))
    shape = str(rng.choice(FG_SHAPES, p=_FG_SHAPE_P / _FG_SHAPE_P.sum()))
    half = min(w, h) / 2
    for attempt in range(8):
        r = half * math.exp(rng.uniform(math.log(0.2), math.log(0.9))) * (1 + 0.1 * attempt)
        r = min(r, half - 2)
        cx, cy = rng.uniform(r + 1, w - 1 - r), rng.uniform(r + 1, h - 1 - r)
        mask = _rasterise(_shape_outline(shape, rng), cx, cy, r, h, w)
        if mask.sum() >= max(64, 0.008 * w * h):
            break
    else:  # very small images: fall back to a large ellipse
        shape, r = "ellipse", half - 2
        mask = _rasterise((_ellipse(1.0, 0.7), None), w / 2, h / 2, r, h, w)
    if silhouette:
        light, dark = rng.uniform(190, 250), rng.uniform(5, 65)
        fg = dict(fg, family="flat", c0=np.full(3, light), c1=np.full(3, light))
        bg = dict(bg, family="flat", c0=np.full(3, dark), c1=np.full(3, dark))
    img = np.where(mask[:, :, None], _render_texture(fg, h, w, rng), _render_texture(bg, h, w, rng))
    meta = {
        "shape": shape,
        "box": _box(mask),
        "area_fraction": round(float(mask.mean()), 5),
        "bg_texture": bg["family"],
        "fg_texture": fg["family"],
        "colour_distance": round(float(np.linalg.norm((fg["c0"] + fg["c1"] - bg["c0"] - bg["c1"]) / 2)), 2),
    }
    return Scene(_finish(img, rng), mask, None, meta)


@dataclass
class _Obj:
    shape: str
    colour: str
    cx: float
    cy: float
    r: float


def _place(rng, objs: list[_Obj], r: float, w: int, h: int, region: tuple[float, float, float, float]):
    """A centre for a circle of radius r inside region (x0, y0, x1, y1 fractions) clear of objs, or None."""
    x0, y0, x1, y1 = region
    for _ in range(40):
        lo_x, hi_x = max(r + 1, x0 * w), min(w - 1 - r, x1 * w)
        lo_y, hi_y = max(r + 1, y0 * h), min(h - 1 - r, y1 * h)
        if lo_x > hi_x or lo_y > hi_y:
            return None
        cx, cy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        if all(math.hypot(cx - o.cx, cy - o.cy) >= r + o.r + 3 for o in objs):
            return cx, cy
    return None


def _referring_layout(
    rng: np.random.Generator,
    w: int,
    h: int,
    colours: list[str],
    *,
    target: tuple[str, str] | None = None,
    full_phrase: bool = False,
) -> tuple[list[_Obj], str] | None:
    """Objects (target first) and the phrase naming the target, or None when placement failed.

    ``target``: the target's (shape, colour), drawn from ``colours`` and `REF_SHAPES` when None;
    ``full_phrase``: a "unique" phrase always names colour and shape."""
    n = int(rng.integers(2, 5))
    base = max(3.0, min(w, h) * rng.uniform(0.08, 0.16 if n > 2 else 0.2))
    mode = str(rng.choice(["unique", "side", "size"], p=[0.5, 0.3, 0.2]))
    if target is None:
        target = (str(rng.choice(REF_SHAPES)), str(rng.choice(colours)))
    target = _Obj(target[0], target[1], 0, 0, base * rng.uniform(0.8, 1.2))
    objs: list[_Obj] = []
    if mode == "side":
        side = str(rng.choice(list(SIDE_WORDS)))
        twin = _Obj(target.shape, target.colour, 0, 0, base * rng.uniform(0.8, 1.2))
        near, far = (0.0, 0.42), (0.58, 1.0)
        spans = (near, far) if side in ("left", "top") else (far, near)
        for obj, span in zip((target, twin), spans, strict=True):
            region = (
                (span[0], 0.0, span[1], 1.0) if side in ("left", "right") else (0.0, span[0], 1.0, span[1])
            )
            spot = _place(rng, objs, obj.r, w, h, region)
            if spot is None:
                return None
            obj.cx, obj.cy = spot
            objs.append(obj)
        phrase = f"the {target.colour} {target.shape} {SIDE_WORDS[side]}"
    elif mode == "size":
        big = rng.random() < 0.5
        target.r = base * (1.25 if big else 0.75)
        twin = _Obj(target.shape, target.colour, 0, 0, target.r / 1.8 if big else target.r * 1.8)
        for obj in (target, twin):
            spot = _place(rng, objs, obj.r, w, h, (0, 0, 1, 1))
            if spot is None:
                return None
            obj.cx, obj.cy = spot
            objs.append(obj)
        word = str(rng.choice(SIZE_WORDS["large" if big else "small"]))
        phrase = f"the {word} {target.colour} {target.shape}"
    else:
        spot = _place(rng, objs, target.r, w, h, (0, 0, 1, 1))
        if spot is None:
            return None
        target.cx, target.cy = spot
        objs.append(target)
        phrase = ""
    while len(objs) < n:  # distractors never share both colour and shape with the target
        shape, colour = str(rng.choice(REF_SHAPES)), str(rng.choice(colours))
        if (shape, colour) == (target.shape, target.colour):
            continue
        obj = _Obj(shape, colour, 0, 0, base * rng.uniform(0.7, 1.3))
        spot = _place(rng, objs, obj.r, w, h, (0, 0, 1, 1))
        if spot is None:
            break
        obj.cx, obj.cy = spot
        objs.append(obj)
    if mode == "unique":
        if len(objs) < 2:
            return None
        phrase = f"the {target.colour} {target.shape}" if full_phrase else _unique_phrase(rng, objs, w, h)
    return objs, phrase


def _unique_phrase(rng: np.random.Generator, objs: list[_Obj], w: int, h: int) -> str:
    """A phrase naming objs[0], whose (colour, shape) is unique; shorter forms when they are unique too."""
    t, others = objs[0], objs[1:]
    options = [f"the {t.colour} {t.shape}"] * 2
    if all(o.shape != t.shape for o in others):
        options.append(f"the {t.shape}")
    if all(o.colour != t.colour for o in others):
        options.append(f"the {t.colour} {rng.choice(['object', 'shape', 'one'])}")
    margin_x, margin_y = 0.1 * w, 0.1 * h
    if all(t.cx + margin_x < o.cx for o in others):
        options.append("the leftmost object")
    if all(t.cx - margin_x > o.cx for o in others):
        options.append("the rightmost object")
    if all(t.cy + margin_y < o.cy for o in others):
        options.append("the topmost object")
    if all(t.cy - margin_y > o.cy for o in others):
        options.append("the lowest object")
    return str(rng.choice(options))


def _describe(obj: _Obj, mask: np.ndarray, box: Any) -> dict[str, Any]:
    """One object of a referring scene as its ``meta["objects"]`` entry."""
    return {
        "shape": obj.shape,
        "colour": obj.colour,
        "centre": [round(obj.cx, 2), round(obj.cy, 2)],
        "radius": round(obj.r, 2),
        "box": box,
        "area": int(mask.sum()),
    }


#: Colours of the ``referring-colour`` family: pairwise far apart, all far from its dark background.
CURRICULUM_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "white")


def _colour_scene(rng: np.random.Generator, w: int, h: int) -> Scene:
    """Two flat objects of one shape and two colours on a dark flat background; the text names objs[0]'s colour."""
    shape = str(rng.choice(REF_SHAPES))
    first, second = (str(c) for c in rng.choice(CURRICULUM_COLOURS, 2, replace=False))
    objs: list[_Obj] = []
    for colour in (first, second):
        r = max(3.0, min(w, h) * rng.uniform(0.12, 0.2))
        spot = _place(rng, objs, r, w, h, (0, 0, 1, 1))
        if spot is None:  # no room: shrink until it fits (two small objects always fit in 16 x 16)
            r = max(3.0, min(w, h) * 0.1)
            spot = _place(rng, objs, r, w, h, (0, 0, 1, 1)) or (
                (w * 0.25, h * 0.5) if not objs else (w * 0.75, h * 0.5)
            )
        objs.append(_Obj(shape, colour, spot[0], spot[1], r))
    dark = rng.uniform(5, 50)
    img = np.full((h, w, 3), dark, dtype=np.float32)
    masks, described = [], []
    for obj in objs:
        m = _rasterise(_shape_outline(obj.shape, rng), obj.cx, obj.cy, obj.r, h, w)
        m &= ~np.any(masks, axis=0) if masks else m  # the target keeps its pixels where shapes touch
        img[m] = np.array(COLOURS[obj.colour], dtype=np.float32)
        masks.append(m)
        described.append(_describe(obj, m, _box(m) if m.any() else None))
    phrase = f"the {first} {rng.choice(['object', 'shape', 'one'])}"
    meta = {"objects": described, "target": 0, "bg_texture": "flat"}
    return Scene(_finish(img, rng), masks[0], phrase, meta)


def _referring_scene(rng: np.random.Generator, w: int, h: int) -> Scene:
    """2-4 named objects on a muted background; the text names objs[0]; the mask is objs[0] only."""
    grey = rng.uniform(75, 175)
    c0 = np.clip(grey + rng.uniform(-15, 15, 3), 0, 255)
    bg = _texture_spec(
        rng, c0, np.clip(c0 + rng.uniform(-25, 25, 3), 0, 255), rng.choice(["flat", "noise", "gradient"])
    )
    bg_mean = (bg["c0"] + bg["c1"]) / 2
    colours = [name for name, rgb in COLOURS.items() if np.linalg.norm(np.array(rgb) - bg_mean) >= 90]
    layout = None
    for _ in range(20):
        layout = _referring_layout(rng, w, h, colours)
        if layout is not None:
            break
    if layout is None:  # tiny images: fall back to two objects in opposite halves
        r = min(w, h) * 0.18
        a, b = rng.choice(colours, 2, replace=False)
        objs = [_Obj("circle", str(a), w * 0.25, h * 0.5, r), _Obj("square", str(b), w * 0.75, h * 0.5, r)]
        layout = objs, f"the {a} circle"
    objs, phrase = layout
    img = _render_texture(bg, h, w, rng)
    masks, described = [], []
    for obj in objs:
        m = _rasterise(_shape_outline(obj.shape, rng), obj.cx, obj.cy, obj.r, h, w)
        rgb = np.clip(np.array(COLOURS[obj.colour]) + rng.uniform(-12, 12, 3), 0, 255)
        spec = _texture_spec(rng, rgb, rgb * rng.uniform(0.8, 1.0), rng.choice(["flat", "gradient"]))
        spec["grain"] = float(rng.uniform(1, 3))
        x0, y0, x1, y1 = box = _box(m)
        crop = m[y0:y1, x0:x1]
        img[y0:y1, x0:x1][crop] = _render_texture(spec, y1 - y0, x1 - x0, rng)[crop]
        masks.append(m)
        described.append(_describe(obj, m, box))
    meta = {"objects": described, "target": 0, "bg_texture": bg["family"]}
    return Scene(_finish(img, rng), masks[0], phrase, meta)
