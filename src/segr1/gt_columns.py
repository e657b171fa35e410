"""Ground-truth objects of a row for the box / point rewards, from dataset columns (image frame).

Columns, one entry per completion, in this order of precedence:

* ``boxes``: (N, 4) ``[x1, y1, x2, y2]`` per object, image frame (inclusive pixel extremes as
  `segr1.geometry.mask_to_box` gives); a list, an array or a JSON string. With it: ``points`` (optional),
  (N, 2) or (N, K, 2) image-frame points per object (default: box centres), and ``image_size`` [W, H] of the
  image frame (default: the shape of the ``instances`` or ``mask`` column).
* ``instances``: an (H, W) instance map (0 = background; path, PNG bytes or array): one object per id.
* ``mask``: the union mask (`segr1.rewards.decode_mask`): one object (``from_mask="union"``) or one per
  8-connected component (``"components"``).

Objects derived from masks take Seg-Zero's ground-truth points (`segr1.instances.inscribed_point`, or
`segr1.instances.two_points` for two per object) and are cached by mask path or bytes (`GT_CACHE_SIZE`
entries), so a training set's masks are decoded once per process.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

GT_COLUMNS = ("boxes", "points", "image_size", "instances", "mask")
GT_FROM_MASK = ("union", "components")
GT_CACHE_SIZE = 16384  # entries are a few small arrays; a typical training set fits


@dataclass
class GroundTruth:
    """Objects of one row, image frame: boxes (N, 4) xyxy, points (N, K, 2), and the frame's size (W, H)."""

    boxes: np.ndarray
    points: np.ndarray
    size: tuple[int, int]


def _array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, str):
        value = json.loads(value)
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite numbers; got {arr.tolist()!r:.200}")
    return arr


def _boxes(value: Any) -> np.ndarray:
    arr = _array(value, "boxes")
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4); got {arr.shape}")
    return np.stack(
        [arr[:, [0, 2]].min(1), arr[:, [1, 3]].min(1), arr[:, [0, 2]].max(1), arr[:, [1, 3]].max(1)], 1
    )


def _points(value: Any, n: int) -> np.ndarray:
    arr = _array(value, "points")
    if n == 0 and arr.size == 0:
        return np.zeros((0, 1, 2))
    if arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3 or arr.shape[0] != n or arr.shape[2] != 2 or arr.shape[1] < 1:
        raise ValueError(f"points must have shape (N, 2) or (N, K, 2) with N = {n} boxes; got {arr.shape}")
    return arr


def _size(value: Any) -> tuple[int, int]:
    w, h = (int(v) for v in _array(value, "image_size").reshape(-1)[:2])
    if w <= 0 or h <= 0:
        raise ValueError(f"image_size must be positive [W, H]; got {value!r}")
    return w, h


def frame_of(image: Any) -> tuple[int, int]:
    """(W, H) of an ``image`` column entry without decoding pixels."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        src = image if isinstance(image, (str, os.PathLike)) else io.BytesIO(bytes(image))
        with Image.open(src) as im:
            return im.size
    arr = np.asarray(image)
    if arr.ndim < 2:
        raise ValueError(f"cannot read a frame size from an image of shape {arr.shape}")
    return int(arr.shape[1]), int(arr.shape[0])


_GT_CACHE: OrderedDict[tuple, GroundTruth] = OrderedDict()


def clear_cache() -> None:
    """Forget the objects derived from masks."""
    _GT_CACHE.clear()


def _cache_key(value: Any) -> Any:
    if isinstance(value, dict):
        value = value.get("path") or value.get("bytes")
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (bytes, bytearray)):
        return hashlib.blake2b(bytes(value), digest_size=16).digest()
    return None


def _from_masks(kind: str, value: Any, points_per_object: int, from_mask: str) -> GroundTruth:
    from segr1.instances import connected_components, decode_instance_map, instance_masks, objects_from_masks

    key = _cache_key(value)
    full_key = (kind, key, points_per_object, from_mask)
    if key is not None and full_key in _GT_CACHE:
        _GT_CACHE.move_to_end(full_key)
        return _GT_CACHE[full_key]
    if kind == "instances":
        masks = instance_masks(decode_instance_map(value))[1]
        shape = masks[0].shape if masks else decode_instance_map(value).shape
    else:
        from segr1.rewards import decode_mask

        union = decode_mask(value)
        shape = union.shape
        masks = connected_components(union) if from_mask == "components" else [union]
    boxes, points = objects_from_masks(masks, points_per_object=points_per_object)
    gt = GroundTruth(boxes, points, (int(shape[1]), int(shape[0])))
    if key is not None:
        _GT_CACHE[full_key] = gt
        while len(_GT_CACHE) > GT_CACHE_SIZE:
            _GT_CACHE.popitem(last=False)
    return gt


def _has(columns: dict[str, Any], name: str, i: int) -> bool:
    values = columns.get(name)
    return values is not None and values[i] is not None


def ground_truth(
    columns: dict[str, Any], i: int, *, points_per_object: int = 1, from_mask: str = "union"
) -> GroundTruth:
    """Row ``i``'s ground-truth objects from the dataset columns (see the module docstring). Raises on a
    broken entry; ValueError when none of ``boxes``, ``instances``, ``mask`` is given. A column whose entry for
    this row is None (a dataset mixing sources with and without per-instance columns) is skipped for it."""
    boxes = columns.get("boxes")
    if boxes is not None and boxes[i] is not None:
        b = _boxes(boxes[i])
        pts = columns.get("points")
        if pts is not None and pts[i] is not None:
            p = _points(pts[i], b.shape[0])
        else:
            p = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)[:, None, :]
        sizes = columns.get("image_size")
        if sizes is not None and sizes[i] is not None:
            size = _size(sizes[i])
        else:
            kind = next((k for k in ("instances", "mask") if _has(columns, k, i)), None)
            if kind is None:
                raise ValueError("a 'boxes' column needs 'image_size' (or an 'instances'/'mask' column)")
            size = _from_masks(kind, columns[kind][i], points_per_object, from_mask).size
        return GroundTruth(b, p, size)
    for kind in ("instances", "mask"):
        if _has(columns, kind, i):
            return _from_masks(kind, columns[kind][i], points_per_object, from_mask)
    raise ValueError("the family rewards need a 'boxes', 'instances' or 'mask' dataset column")
