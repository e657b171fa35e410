"""Helpers shared by the segmenter backends: image coercion, prompt expansion, grouping, device and autocast.

All coordinates are in the IMAGE frame (pixels, x right, y down, boxes xyxy), as `Segmenter.segment` takes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from segr1.answer import SegPrompt
from segr1.geometry import clip_prompt, split_by_box

logger = logging.getLogger(__name__)


def as_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """Coerce an image to a C-contiguous (H, W, 3) uint8 RGB array.

    Accepts a PIL image (any mode; converted to RGB) or a uint8 array of shape (H, W) (grey), (H, W, 1),
    (H, W, 3) (RGB) or (H, W, 4) (RGBA; alpha dropped). Raises TypeError/ValueError naming what was given.
    """
    if isinstance(image, Image.Image):
        arr = np.array(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise TypeError(
            f"image must be a PIL.Image or np.ndarray (H, W, 3) uint8; got {type(image).__name__}"
        )
    if arr.dtype != np.uint8:
        raise ValueError(f"image array must be uint8 RGB in [0, 255]; got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"image must have shape (H, W), (H, W, 3) or (H, W, 4) with H, W > 0; got {arr.shape}"
        )
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    arr = np.ascontiguousarray(arr)
    return arr if arr.flags.writeable else arr.copy()  # torch.from_numpy warns on read-only arrays


def check_prompts(prompts: Sequence[SegPrompt]) -> list[SegPrompt]:
    """Return ``prompts`` as a list, raising TypeError for a bare SegPrompt or a non-SegPrompt item."""
    if isinstance(prompts, SegPrompt):
        raise TypeError(
            "prompts must be a sequence of SegPrompt (one per prompt set); got a single SegPrompt"
        )
    out = list(prompts)
    for i, p in enumerate(out):
        if not isinstance(p, SegPrompt):
            raise TypeError(f"prompts[{i}] must be a SegPrompt; got {type(p).__name__}")
    return out


@dataclass
class SubPrompts:
    """The sub-prompts of many prompt sets, flattened (IMAGE frame).

    items: the sub-prompts, each holding at most one box (``geometry.split_by_box``), clipped to the image.
    owner: ``owner[i]`` is the index of the prompt set that ``items[i]`` came from.
    """

    items: list[SegPrompt] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)


def expand_prompts(prompts: Sequence[SegPrompt], image_size: tuple[int, int]) -> SubPrompts:
    """Clip each prompt set to ``image_size`` (W, H) and split it into one sub-prompt per box (Seg-R1's rule:
    a box keeps the points inside it; points alone when there is no box). Empty prompt sets add nothing."""
    out = SubPrompts()
    for i, prompt in enumerate(check_prompts(prompts)):
        if prompt.is_empty:
            continue
        for sub in split_by_box(clip_prompt(prompt, image_size)):
            out.items.append(sub)
            out.owner.append(i)
    return out


def empty_masks(n: int, height: int, width: int) -> list[np.ndarray]:
    """``n`` all-False (H, W) bool masks."""
    return [np.zeros((height, width), dtype=bool) for _ in range(n)]


def start_segment(
    image: np.ndarray | Image.Image, prompts: Sequence[SegPrompt]
) -> tuple[np.ndarray, SubPrompts, list[np.ndarray]]:
    """What every backend's ``segment`` starts with.

    Returns:
        The image as (H, W, 3) uint8 RGB, its prompt sets expanded into sub-prompts (IMAGE frame, see
        `expand_prompts`), and one all-False (H, W) bool mask per prompt set, for the backend to fill.
    """
    rgb = as_rgb_array(image)
    h, w = rgb.shape[:2]
    subs = expand_prompts(prompts, (w, h))
    return rgb, subs, empty_masks(len(prompts), h, w)


def group_indices(keys: Sequence[object]) -> dict[object, list[int]]:
    """Indices of ``keys`` grouped by equal key, groups and members in first-seen order."""
    groups: dict[object, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups


def parse_dtype_name(dtype: object) -> str | None:
    """Normalise a dtype argument (None, "bf16", "bfloat16", "fp16", "float16", "fp32", "float32", or a torch
    dtype) to None, "bfloat16", "float16" or "float32". Raises ValueError for anything else."""
    if dtype is None:
        return None
    name = str(dtype).lower().removeprefix("torch.")
    aliases = {
        "bf16": "bfloat16",
        "bfloat16": "bfloat16",
        "fp16": "float16",
        "half": "float16",
        "float16": "float16",
        "fp32": "float32",
        "float": "float32",
        "float32": "float32",
        "auto": None,
    }
    if name not in aliases:
        raise ValueError(f"dtype must be one of bfloat16, float16, float32 or None (auto); got {dtype!r}")
    return aliases[name]


def torch_device_and_autocast(device: str | None, dtype: object) -> tuple[Any, Any]:
    """(``torch.device``, autocast ``torch.dtype`` or None) for a torch backend.

    ``device`` None picks CUDA when available; ``dtype`` None (see `parse_dtype_name`) means bfloat16 autocast
    on CUDA and none (float32) elsewhere; float32 always means no autocast.
    """
    import torch

    from segr1.devices import check_device

    dev = torch.device(check_device(device))
    name = parse_dtype_name(dtype) or ("bfloat16" if dev.type == "cuda" else "float32")
    return dev, (None if name == "float32" else getattr(torch, name))


def autocast(device: Any, dtype: Any) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` on ``device`` (a ``torch.device``) with ``dtype``; a no-op context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=dtype)
