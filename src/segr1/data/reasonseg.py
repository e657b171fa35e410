"""ReasonSeg (LISA's reasoning-segmentation benchmark): images with LabelMe-style JSON annotations.

On disk::

    <data_root>/ReasonSeg/{train,val,test}/X.jpg + X.json

Each JSON holds ``"text"`` (a list of query sentences, or one string), ``"is_sentence"`` (long query vs
short phrase) and ``"shapes"``: polygons (``"points"``: [[x, y], ...] in image pixels) labelled
``"target"``, ``"ignore"`` or ``"flag"``. The ground truth is built as LISA's ``get_mask_from_json``
does: ``flag`` shapes are dropped; the rest are drawn largest area first (outline of width 1 plus
filled interior, vertices truncated to int), so a smaller shape drawn later overwrites a larger one;
shapes whose label contains ``ignore`` paint the ignore value, all others the target value. The target
mask is the pixels left at the target value; the *ignore* mask (``meta["ignore"]``) is the pixels left
at the ignore value, which the reference evaluation leaves out of both intersection and union.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segr1.data.records import LazySamples, Sample

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("val", "test", "train")
EXPECTED_IMAGES: dict[str, int] = {"train": 239, "val": 200, "test": 779}
"""Published number of images per split."""
REASONSEG_DIRS: tuple[str, ...] = ("ReasonSeg", "reason_seg/ReasonSeg", "reasonseg", ".")
"""Folders under the data root that may hold the split folders, in the order tried."""
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")

_TARGET, _IGNORE = 1, 255


def read_annotation(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one ReasonSeg JSON (UTF-8, falling back to cp1252 as some files need)."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise ValueError(f"{str(path)!r} is not a ReasonSeg annotation (needs a 'shapes' list)")
    return data


def queries_of(annotation: dict[str, Any]) -> list[str]:
    """The query sentences of an annotation: ``"text"`` as a list (a single string becomes one query)."""
    text = annotation.get("text")
    if isinstance(text, str):
        return [text]
    if isinstance(text, list):
        return [str(t) for t in text]
    raise ValueError(f"ReasonSeg annotation has no usable 'text': {text!r}")


def _polygon(points: Any) -> np.ndarray:
    """(1, N, 2) int32 vertices as OpenCV takes them; floats truncated toward zero like LISA's cast."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0 or not np.isfinite(arr).all():
        raise ValueError(f"polygon points must be a non-empty list of [x, y], got {str(points)[:200]}")
    return arr.astype(np.int32)[None]


def rasterize_shapes(
    shapes: Sequence[dict[str, Any]], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Target and ignore masks of ReasonSeg ``shapes`` on an image of ``height`` x ``width`` pixels.

    Follows LISA's ``get_mask_from_json`` (see the module docstring).

    Returns:
        (target, ignore): two (height, width) bool arrays, disjoint.

    Raises:
        ValueError: a shape without a label or with malformed points.
    """
    import cv2

    polys: list[tuple[np.ndarray, int]] = []
    areas: list[int] = []
    for shape in shapes:
        label = shape.get("label")
        if not isinstance(label, str):
            raise ValueError(f"shape without a string 'label': {str(shape)[:200]}")
        if label.lower() == "flag":  # deprecated, meaningless annotations
            continue
        poly = _polygon(shape.get("points"))
        tmp = np.zeros((height, width), dtype=np.uint8)
        cv2.polylines(tmp, poly, True, 1, 1)
        cv2.fillPoly(tmp, poly, 1)
        areas.append(int(tmp.sum()))
        polys.append((poly, _IGNORE if "ignore" in label.lower() else _TARGET))
    labels = np.zeros((height, width), dtype=np.uint8)
    for i in np.argsort(areas, kind="stable")[::-1]:  # largest first, as LISA's argsort(...)[::-1]
        poly, value = polys[i]
        cv2.polylines(labels, poly, True, value, 1)
        cv2.fillPoly(labels, poly, value)
    return labels == _TARGET, labels == _IGNORE


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of an image as displayed, i.e. after its EXIF orientation (header read only)."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def find_split_dir(data_root: str | os.PathLike[str], split: str) -> Path | None:
    """The folder holding ``split``'s images and JSONs, or None."""
    root = Path(data_root)
    for sub in REASONSEG_DIRS:
        folder = root / sub / split
        if folder.is_dir():
            return folder
    return None


@dataclass(frozen=True)
class _Item:
    image: Path
    annotation: Path
    query_index: int
    text: str
    is_sentence: bool
    n_queries: int


QUERY_MODES: tuple[str, ...] = ("first", "all", "random")


def _draw(seed: int, key: str, n: int) -> int:
    """A reproducible draw in ``range(n)`` for ``key`` (independent of the order images are listed in)."""
    import zlib

    return int(np.random.default_rng([seed, zlib.crc32(key.encode())]).integers(n))


class ReasonSegDataset(LazySamples):
    """One ReasonSeg split: a :class:`Sample` per image (first query, as LISA evaluates) or per query.

    Samples (built on indexing; masks rasterised then) have ``image`` = the ``.jpg`` path, ``mask`` =
    (H, W) bool target mask at the image's displayed size, ``text`` = the query, task ``"reasoning"``,
    id = the image stem (``"<stem>_q<i>"`` with ``queries="all"``), and ``meta`` with ``dataset, split,
    is_sentence, query_index, annotation`` (JSON path) and ``ignore``: (H, W) bool ignore mask, or None
    when the annotation has no ignore region. A malformed annotation raises ``ValueError`` when its
    sample is indexed, so a run can record that one sample and go on.

    Args:
        data_root: the folder holding ``ReasonSeg/``.
        split: ``val`` (default), ``test`` or ``train``.
        queries: ``"first"`` (the reference protocol), ``"all"`` (one sample per query sentence) or
            ``"random"`` (one query per image drawn with ``seed``, as the Seg-R1 release drew one, unseeded).
        seed: seed of the ``"random"`` draws (per image, from its file stem).

    Raises:
        ValueError: unknown split or ``queries``.
        FileNotFoundError: the split folder does not exist.
    """

    def __init__(
        self, data_root: str | os.PathLike[str], split: str = "val", queries: str = "first", seed: int = 0
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"ReasonSeg splits are {', '.join(SPLITS)}; got split={split!r}")
        if queries not in QUERY_MODES:
            raise ValueError(f"queries must be one of {QUERY_MODES}, got {queries!r}")
        folder = find_split_dir(data_root, split)
        if folder is None:
            tried = ", ".join(str(Path(data_root) / d / split) for d in REASONSEG_DIRS)
            raise FileNotFoundError(f"ReasonSeg {split} not found; tried {tried}")
        self.folder, self.split, self.queries = folder, split, queries
        self._items: list[_Item] = []
        orphans = 0
        images = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        for image in images:
            ann_path = image.with_suffix(".json")
            if not ann_path.is_file():
                orphans += 1
                continue
            try:
                ann = read_annotation(ann_path)
                texts = queries_of(ann)
            except (ValueError, OSError) as exc:  # kept: the error surfaces when the sample is indexed
                logger.warning("ReasonSeg %s: %s", ann_path.name, exc)
                texts = [""]
                ann = {}
            is_sentence = bool(ann.get("is_sentence", False))
            if queries == "all":
                chosen: Sequence[int] = range(len(texts))
            elif queries == "random" and len(texts) > 1:
                chosen = [_draw(seed, image.stem, len(texts))]
            else:
                chosen = range(min(1, len(texts)))
            for i in chosen:
                self._items.append(_Item(image, ann_path, i, texts[i], is_sentence, len(texts)))
        if orphans:
            logger.warning(
                "ReasonSeg %s: %d image(s) without a .json annotation were skipped", split, orphans
            )
        logger.info("ReasonSeg %s: %d samples from %d images", split, len(self._items), len(images) - orphans)

    def _load(self, item: _Item) -> Sample:
        ann = read_annotation(item.annotation)
        queries_of(ann)  # raises on a missing/invalid text, as indexing a bad sample should
        width, height = image_size(item.image)
        target, ignore = rasterize_shapes(ann["shapes"], height, width)
        sample_id = item.image.stem if self.queries != "all" else f"{item.image.stem}_q{item.query_index}"
        meta = {
            "dataset": "reasonseg",
            "split": self.split,
            "is_sentence": item.is_sentence,
            "query_index": item.query_index,
            "n_queries": item.n_queries,
            "annotation": str(item.annotation),
            "ignore": ignore if ignore.any() else None,
        }
        return Sample(sample_id, item.image, target, item.text, "reasoning", meta)
