"""SFT targets with one object per ground-truth instance, written in any answer format (`segr1.formats`).

`segr1.data.trl.sft_target` renders Seg-R1's tags for a sample's union mask (one box). A sample with instance
ground truth (``meta["instances"]``: an instance map, e.g. the synthetic multi-object scenes), or a format other
than Seg-R1's tags, gets its target from :func:`object_target` instead:

* the objects: every instance of the map (resized to the model frame, nearest), or the union mask as one object;
  a format that holds one object per answer (``seg-zero-json``) gets the union as its one object;
* per object, in the model frame: its tight box (`segr1.geometry.mask_to_box`) and, first, the Seg-Zero /
  VisionReasoner ground-truth point (`segr1.instances.inscribed_point`; `two_points` for a two-point layout),
  then ``n_pos - 1`` sampled foreground points and ``n_neg`` background points inside the box
  (`segr1.geometry.sample_points`); the JSON formats write the first one (or two) of the foreground points;
* the think text: `segr1.data.trl.describe_mask` of each object ("2 objects: a small object at the top left;
  ..."), empty (``think="none"``) or a literal text.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from segr1.answer import SegPrompt

logger = logging.getLogger(__name__)

MAX_OBJECTS = 16  # objects written into one target (the tags parser keeps 16 boxes)


def frame_masks(masks: list[np.ndarray], frame: int) -> list[np.ndarray]:
    """Each (H, W) bool mask resized (nearest) to ``frame x frame``; an object thinner than a frame pixel keeps
    the pixels its own pixels map to; empty results are dropped."""
    from segr1.geometry import resize_to_frame

    out = []
    for mask in masks:
        small = resize_to_frame(np.asarray(mask, dtype=bool), frame)
        if not small.any() and mask.any():
            ys, xs = np.nonzero(mask)
            small[(ys * frame // mask.shape[0]), (xs * frame // mask.shape[1])] = True
        if small.any():
            out.append(small)
    return out


def _object(small: np.ndarray, rng: np.random.Generator, n_pos: int, n_neg: int, two: bool) -> SegPrompt:
    from segr1.geometry import mask_to_box, sample_points
    from segr1.instances import inscribed_point, two_points

    box = mask_to_box(small)
    first = two_points(small) if two else inscribed_point(small)[None, :]
    extra_pos = max(n_pos - first.shape[0], 0)
    points, labels = sample_points(small, extra_pos, n_neg, rng, margin=0.0) if extra_pos + n_neg else (
        np.zeros((0, 2)), np.zeros((0,), np.int64))  # fmt: skip
    pos, neg = points[labels == 1], points[labels == 0]
    all_points = np.round(np.concatenate([first, pos, neg]))
    all_labels = np.concatenate(
        [np.ones(first.shape[0] + pos.shape[0], np.int64), np.zeros(neg.shape[0], np.int64)]
    )
    return SegPrompt(box[None, :], all_points, all_labels)


def _think(masks: list[np.ndarray], think: str) -> str:
    from segr1.data.trl import describe_mask

    if think == "none":
        return ""
    if think != "describe":
        return think
    if len(masks) == 1:
        return describe_mask(masks[0])
    return f"{len(masks)} objects: " + "; ".join(describe_mask(m) for m in masks)


def object_target(
    masks: list[np.ndarray],
    answer_format: Any,
    *,
    frame: int,
    rng: np.random.Generator | int | None = None,
    n_pos: int = 2,
    n_neg: int = 1,
    think: str = "describe",
) -> str:
    """The SFT answer for ground-truth objects ``masks`` (each (H, W) bool, image frame) in ``answer_format``
    (a `segr1.formats.AnswerFormat`), model frame ``frame`` (module docstring). No object: a think block
    saying so, and no answer (what the tags renderer writes for an empty prompt)."""
    rng = np.random.default_rng(rng)
    small = frame_masks(masks, frame)
    if small and not answer_format.multi_object:
        small = [np.logical_or.reduce(small)]
    small = small[:MAX_OBJECTS]
    text = (
        _think(small, think)
        if small
        else ("no object is visible" if think == "describe" else _think([], think))
    )
    if not small:
        return (
            answer_format.render_objects([], text) if answer_format.multi_object else f"<think>{text}</think>"
        )
    two = getattr(answer_format, "layout", None) == "single"
    objects = [_object(m, rng, n_pos, n_neg, two) for m in small]
    return answer_format.render_objects(objects, text, decimals=0)
