"""Synthetic families in which no image-independent prompt does well (the embedded policy's evidence).

Each is a kind of `segr1.data.synthetic` (same ``(kind, seed, index)`` purity, same folder layout):

- ``salient-hard``: one small, off-centre salient object (colour distance >= 140 from the background, radius
  20-50% of the half side) among 2-4 smaller, low-contrast distractor objects (distance 45-90) on a
  cluttered background (a texture plus soft blobs of nearby colours). The target is the largest and most
  contrasting object; the mask is the target only.
- ``camouflaged-hard``: one small, off-centre camouflaged object (radius 25-55% of the half side; the
  background's texture with a small colour shift, as in ``camouflaged``) among 1-3 smaller, clearly visible distractors of other colours.
- ``referring-seen`` / ``referring-novel``: referring scenes as ``referring`` (one named object among 2-4;
  colour, shape, position and size phrases), except that the target's (colour, shape) pair is never one of
  `HELD_OUT_PAIRS` in ``referring-seen`` and always one of them in ``referring-novel``, where the phrase
  always names colour and shape: a test of phrase combinations the training scenes never ask for.
- ``reasoning``: 3-5 objects and a question answered by comparing them: the largest / smallest shape (size
  is the shape's radius: the target's is >= 1.45x every other's, or <= 0.65x; compact shapes only, so its
  area is also the largest / smallest in about 99% of scenes), the one whose colour differs from all others,
  the one whose shape differs.

Every scene's meta lists its ``objects`` (target first: shape, colour, centre, radius, box, area) and
``target: 0``, so baselines that pick an object without reading the text (a random object, the largest one)
can be scored from the manifest alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

HARD_KINDS: tuple[str, ...] = (
    "salient-hard",
    "camouflaged-hard",
    "referring-seen",
    "referring-novel",
    "reasoning",
)
HARD_KIND_CODES = {"salient-hard": 53, "camouflaged-hard": 59, "referring-seen": 61, "referring-novel": 67,
                   "reasoning": 71}  # fmt: skip
#: (colour, shape) pairs no ``referring-seen`` target has and every ``referring-novel`` target has: each
#: colour once, each shape at least once.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("green", "ring"),
    ("blue", "triangle"),
    ("yellow", "square"),
    ("orange", "cross"),
    ("purple", "circle"),
    ("pink", "diamond"),
    ("cyan", "star"),
    ("white", "triangle"),
    ("black", "circle"),
)
REASONING_QUERIES: dict[str, tuple[str, ...]] = {
    "largest": ("Which shape is the largest?", "Find the biggest object in the picture."),
    "smallest": ("Which shape is the smallest?", "Find the smallest object in the picture."),
    "odd colour": (
        "Which object has a colour none of the others share?",
        "Find the one that differs in colour.",
    ),
    "odd shape": (
        "Which object has a shape none of the others share?",
        "Find the one that differs in shape.",
    ),
}


def task_of_kind(kind: str) -> str:
    """The segr1 task a scene family's samples carry."""
    if kind.startswith("referring"):
        return "referring"
    return "reasoning" if kind == "reasoning" else "foreground"


def generate_hard(kind: str, rng: np.random.Generator, w: int, h: int) -> Any:
    """One scene of a family of this module (see the module docstring)."""
    if kind in ("salient-hard", "camouflaged-hard"):
        return _hard_foreground(rng, w, h, camouflaged=kind == "camouflaged-hard")
    if kind in ("referring-seen", "referring-novel"):
        return _referring_split(rng, w, h, novel=kind == "referring-novel")
    if kind == "reasoning":
        return _reasoning(rng, w, h)
    raise ValueError(f"not a hard synthetic kind: {kind!r}")


# ------------------------------------------------------------------------------------------ foreground


def _describe(shape: str, colour: Any, cx: float, cy: float, r: float, mask: np.ndarray) -> dict[str, Any]:
    from segr1.data.synthetic import _box

    return {"shape": shape, "colour": colour, "centre": [round(cx, 2), round(cy, 2)], "radius": round(r, 2),
            "box": _box(mask), "area": int(mask.sum())}  # fmt: skip


def _clear(cx: float, cy: float, r: float, placed: list[tuple[float, float, float]]) -> bool:
    return all(math.hypot(cx - x, cy - y) >= r + q + 4 for x, y, q in placed)


def _hard_foreground(rng: np.random.Generator, w: int, h: int, *, camouflaged: bool) -> Any:
    from segr1.data import synthetic as s

    bg0 = s._random_colour(rng)
    bg = s._texture_spec(rng, bg0, np.clip(bg0 + rng.normal(0, 35, 3), 0, 255))
    bg_mean = (bg["c0"] + bg["c1"]) / 2
    img = s._render_texture(bg, h, w, rng)
    for _ in range(int(rng.integers(3, 7))):  # clutter: soft blobs of nearby colours, part of the background
        c = np.clip(bg_mean + rng.normal(0, 1, 3) / math.sqrt(3) * rng.uniform(10, 35), 0, 255)
        r = min(w, h) * rng.uniform(0.08, 0.25)
        blob = s._rasterise(s._shape_outline("blob", rng), rng.uniform(0, w), rng.uniform(0, h), r, h, w)
        img[blob] = 0.5 * img[blob] + 0.5 * c.astype(np.float32)
    if camouflaged:
        direction = rng.normal(size=3)
        shift = direction / np.linalg.norm(direction) * rng.uniform(15, 40)
        fg = dict(bg, c0=np.clip(bg["c0"] + shift, 0, 255), c1=np.clip(bg["c1"] + shift, 0, 255))
        fg.update(phase=bg["phase"] + rng.uniform(0.6, 2 * math.pi - 0.6),
                  period=bg["period"] * rng.uniform(0.75, 1.33), angle=bg["angle"] + rng.uniform(-0.5, 0.5))  # fmt: skip
    else:
        fg0 = _colour_at_distance(rng, bg_mean, 140, 442)
        fg = s._texture_spec(rng, fg0, np.clip(fg0 + rng.normal(0, 20, 3), 0, 255))
    half = min(w, h) / 2
    lo_r, hi_r = (0.25, 0.55) if camouflaged else (0.2, 0.5)
    shape = str(rng.choice(s.FG_SHAPES, p=s._FG_SHAPE_P / s._FG_SHAPE_P.sum()))
    mask = None
    for _ in range(40):
        r = half * math.exp(rng.uniform(math.log(lo_r), math.log(hi_r)))
        cx, cy = rng.uniform(r + 1, w - 1 - r), rng.uniform(r + 1, h - 1 - r)
        if abs(cx / w - 0.5) < 0.15 and abs(cy / h - 0.5) < 0.15:  # off-centre
            continue
        mask = s._rasterise(s._shape_outline(shape, rng), cx, cy, r, h, w)
        if mask.sum() >= max(48, 0.003 * w * h):
            break
    if mask is None or not mask.any():  # tiny images: a corner ellipse
        shape, r, cx, cy = "ellipse", half * 0.3, w * 0.25, h * 0.25
        mask = s._rasterise((s._ellipse(1.0, 0.8), None), cx, cy, r, h, w)
    img = np.where(mask[:, :, None], s._render_texture(fg, h, w, rng), img)
    objects = [_describe(shape, None, cx, cy, r, mask)]
    placed = [(cx, cy, r)]
    n_distractors = int(rng.integers(1, 4) if camouflaged else rng.integers(2, 5))
    for _ in range(n_distractors):
        rd = r * (rng.uniform(0.3, 0.6) if camouflaged else rng.uniform(0.35, 0.7))
        for _ in range(30):
            dx, dy = rng.uniform(rd + 1, w - 1 - rd), rng.uniform(rd + 1, h - 1 - rd)
            if _clear(dx, dy, rd, placed):
                break
        else:
            continue
        lo, hi = (100, 442) if camouflaged else (45, 90)
        dc0 = _colour_at_distance(rng, bg_mean, lo, hi)
        spec = s._texture_spec(rng, dc0, np.clip(dc0 + rng.normal(0, 15, 3), 0, 255))
        dshape = str(rng.choice(s.FG_SHAPES, p=s._FG_SHAPE_P / s._FG_SHAPE_P.sum()))
        dm = s._rasterise(s._shape_outline(dshape, rng), dx, dy, rd, h, w) & ~mask
        if not dm.any():
            continue
        img = np.where(dm[:, :, None], s._render_texture(spec, h, w, rng), img)
        objects.append(_describe(dshape, None, dx, dy, rd, dm))
        placed.append((dx, dy, rd))
    meta = {"shape": shape, "box": objects[0]["box"], "area_fraction": round(float(mask.mean()), 5),
            "bg_texture": bg["family"], "fg_texture": fg["family"], "objects": objects, "target": 0}  # fmt: skip
    return s.Scene(s._finish(img, rng), mask, None, meta)


def _colour_at_distance(rng: np.random.Generator, ref: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """A colour whose RGB distance from ``ref`` lies in [lo, hi] (the farthest of 64 tries if none does)."""
    best, best_d = None, -1.0
    for _ in range(64):
        c = rng.uniform(0, 255, 3)
        d = float(np.linalg.norm(c - ref))
        if lo <= d <= hi:
            return c
        if d > best_d and d <= hi:
            best, best_d = c, d
    return best if best is not None else np.where(ref > 127, 10.0, 245.0)


# ---------------------------------------------------------------------------------- referring / reasoning


def _muted_background(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, list[str]]:
    from segr1.data import synthetic as s

    grey = rng.uniform(75, 175)
    c0 = np.clip(grey + rng.uniform(-15, 15, 3), 0, 255)
    bg = s._texture_spec(rng, c0, np.clip(c0 + rng.uniform(-25, 25, 3), 0, 255),
                         rng.choice(["flat", "noise", "gradient"]))  # fmt: skip
    bg_mean = (bg["c0"] + bg["c1"]) / 2
    colours = [name for name, rgb in s.COLOURS.items() if np.linalg.norm(np.array(rgb) - bg_mean) >= 90]
    return s._render_texture(bg, h, w, rng), colours


def _paint(rng: np.random.Generator, img: np.ndarray, objs: list[Any], h: int, w: int) -> list[np.ndarray]:
    """Paint each object (its colour, flat or graded) into ``img``; return their masks (later ones on top,
    earlier masks cut by them)."""
    from segr1.data import synthetic as s

    masks = []
    for obj in objs:
        m = s._rasterise(s._shape_outline(obj.shape, rng), obj.cx, obj.cy, obj.r, h, w)
        rgb = np.clip(np.array(s.COLOURS[obj.colour]) + rng.uniform(-12, 12, 3), 0, 255)
        spec = s._texture_spec(rng, rgb, rgb * rng.uniform(0.8, 1.0), rng.choice(["flat", "gradient"]))
        spec["grain"] = float(rng.uniform(1, 3))
        if m.any():
            x0, y0, x1, y1 = s._box(m)
            crop = m[y0:y1, x0:x1]
            img[y0:y1, x0:x1][crop] = s._render_texture(spec, y1 - y0, x1 - x0, rng)[crop]
        masks = [prev & ~m for prev in masks] + [m]
    return masks


def _referring_split(rng: np.random.Generator, w: int, h: int, *, novel: bool) -> Any:
    from segr1.data import synthetic as s

    img, colours = _muted_background(rng, w, h)
    held = {p for p in HELD_OUT_PAIRS if p[0] in colours}
    if novel and not held:  # the background admits none of the held-out colours: a mid grey one that does
        img, colours = np.full((h, w, 3), 128.0, np.float32), list(s.COLOURS)
        held = set(HELD_OUT_PAIRS)
    layout = None
    for _ in range(40):
        if novel:
            colour, shape = sorted(held)[int(rng.integers(len(held)))]
        else:
            while True:
                colour, shape = str(rng.choice(colours)), str(rng.choice(s.REF_SHAPES))
                if (colour, shape) not in HELD_OUT_PAIRS:
                    break
        layout = s._referring_layout(rng, w, h, colours, target=(shape, colour), full_phrase=novel)
        if layout is not None:
            break
    if layout is None:
        raise RuntimeError(f"could not lay out a referring scene in {w}x{h}")
    objs, phrase = layout
    masks = _paint(rng, img, objs, h, w)
    described = [_describe(o.shape, o.colour, o.cx, o.cy, o.r, m) for o, m in zip(objs, masks, strict=True)]
    meta = {"objects": described, "target": 0, "pair": [objs[0].colour, objs[0].shape], "held_out": novel}
    return s.Scene(s._finish(img, rng), masks[0], phrase, meta)


def _reasoning(rng: np.random.Generator, w: int, h: int) -> Any:
    from segr1.data import synthetic as s

    for _ in range(40):
        img, colours = _muted_background(rng, w, h)
        if len(colours) >= 2:
            break
    query = str(rng.choice(list(REASONING_QUERIES)))
    n = int(rng.integers(3, 6))
    base = min(w, h) * rng.uniform(0.08, 0.12)
    # size questions use compact shapes only, so the largest radius is the largest area
    pool = (
        [p for p in s.REF_SHAPES if p not in ("ring", "cross", "star")]
        if query in ("largest", "smallest")
        else list(s.REF_SHAPES)
    )
    for _ in range(40):
        objs: list[Any] = []
        shapes = list(rng.choice(pool, n))
        cols = list(rng.choice(colours, n))
        radii = list(base * rng.uniform(0.8, 1.15, n))
        if query == "largest":
            radii[0] = max(radii[1:]) * rng.uniform(1.45, 1.8)
        elif query == "smallest":
            radii[0] = min(radii[1:]) * rng.uniform(0.5, 0.65)
        elif query == "odd colour":
            common, odd = rng.choice(colours, 2, replace=False)
            cols = [str(odd)] + [str(common)] * (n - 1)
        else:
            common, odd = rng.choice(pool, 2, replace=False)
            shapes = [str(odd)] + [str(common)] * (n - 1)
        ok = True
        for shape, colour, r in zip(shapes, cols, radii, strict=True):
            spot = s._place(rng, objs, r, w, h, (0, 0, 1, 1))
            if spot is None:
                ok = False
                break
            objs.append(s._Obj(str(shape), str(colour), spot[0], spot[1], float(r)))
        if ok:
            break
    else:
        raise RuntimeError(f"could not lay out a reasoning scene in {w}x{h}")
    masks = _paint(rng, img, objs, h, w)
    described = [_describe(o.shape, o.colour, o.cx, o.cy, o.r, m) for o, m in zip(objs, masks, strict=True)]
    text = str(rng.choice(REASONING_QUERIES[query]))
    meta = {"objects": described, "target": 0, "query": query}
    return s.Scene(s._finish(img, rng), masks[0], text, meta)
