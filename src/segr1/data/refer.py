"""RefCOCO, RefCOCO+ and RefCOCOg in the `refer` toolkit format.

On disk (as the refer toolkit, LISA and Seg-R1 expect)::

    <data_root>/Refer_Segm/refcoco/refs(unc).p      + instances.json
    <data_root>/Refer_Segm/refcoco+/refs(unc).p     + instances.json
    <data_root>/Refer_Segm/refcocog/refs(umd).p     + instances.json
    <image_root>/COCO_train2014_000000xxxxxx.jpg    (default <data_root>/Refer_Segm/coco_2014/train2014)

``refs(*.p)`` is a pickle of a list of dicts ``{ref_id, ann_id, image_id, split, category_id, file_name,
sentences: [{sent, raw, tokens, sent_id}], sent_ids}``; it is read with :mod:`segr1.data.safe_pickle`,
never with plain :mod:`pickle`. ``instances.json`` is COCO-style (``images`` with ``id, file_name,
height, width``; ``annotations`` with ``id`` and ``segmentation`` as polygons, uncompressed RLE or
compressed RLE). Evaluation follows LISA: one sample per referring *sentence*; the mask is the
referred annotation decoded with pycocotools at the COCO image size.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segr1.data.records import LazySamples, Sample
from segr1.data.safe_pickle import safe_load

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferSpec:
    """How one refer dataset is stored: folder name, ``splitBy`` of its refs file, evaluation splits."""

    folder: str
    split_by: str
    splits: tuple[str, ...]

    @property
    def refs_file(self) -> str:
        return f"refs({self.split_by}).p"


REFER_SPECS: dict[str, ReferSpec] = {
    "refcoco": ReferSpec("refcoco", "unc", ("val", "testA", "testB")),
    "refcoco+": ReferSpec("refcoco+", "unc", ("val", "testA", "testB")),
    "refcocog": ReferSpec("refcocog", "umd", ("val", "test")),
}
"""The three datasets by name; ``train`` is also readable but not an evaluation split."""

EXPECTED_SENTENCES: dict[tuple[str, str], int] = {
    ("refcoco", "val"): 10834,
    ("refcoco", "testA"): 5657,
    ("refcoco", "testB"): 5095,
    ("refcoco+", "val"): 10758,
    ("refcoco+", "testA"): 5726,
    ("refcoco+", "testB"): 4889,
    ("refcocog", "val"): 4896,
    ("refcocog", "test"): 9602,
}
"""Published number of referring sentences per evaluation split (what LISA-style evaluation counts)."""

REFER_DIRS: tuple[str, ...] = ("Refer_Segm", "refer_seg", "refer", ".")
"""Folders under the data root that may hold ``refcoco/`` etc., in the order tried."""
IMAGE_ROOTS: tuple[str, ...] = (
    "Refer_Segm/coco_2014/train2014",
    "Refer_Segm/images/mscoco/images/train2014",
    "refer_seg/images/mscoco/images/train2014",
    "coco_2014/train2014",
    "coco/train2014",
    "train2014",
)
"""Default COCO train2014 locations under the data root, in the order tried."""


def find_refer_dir(data_root: str | os.PathLike[str], name: str) -> Path | None:
    """The folder holding ``name``'s refs pickle and ``instances.json``, or None."""
    spec = _spec(name)
    root = Path(data_root)
    for sub in REFER_DIRS:
        folder = root / sub / spec.folder
        if (folder / spec.refs_file).is_file():
            return folder
    return None


def default_image_root(data_root: str | os.PathLike[str]) -> Path:
    """The first existing entry of :data:`IMAGE_ROOTS` under ``data_root`` (the README's one if none)."""
    root = Path(data_root)
    for sub in IMAGE_ROOTS:
        if (root / sub).is_dir():
            return root / sub
    return root / IMAGE_ROOTS[0]


def _spec(name: str) -> ReferSpec:
    spec = REFER_SPECS.get(name.lower())
    if spec is None:
        raise ValueError(f"unknown refer dataset {name!r}; known: {', '.join(REFER_SPECS)}")
    return spec


def load_refs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a ``refs(*).p`` file safely and check it is a list of refs with the fields segr1 uses.

    Raises:
        segr1.data.safe_pickle.UnsafePickleError: the pickle is not plain data.
        ValueError: plain data but not a list of refs (the message names the first bad entry).
    """
    refs = safe_load(path)
    if not isinstance(refs, list):
        raise ValueError(f"{str(path)!r}: expected a list of refs, got {type(refs).__name__}")
    for i, ref in enumerate(refs):
        if (
            not isinstance(ref, dict)
            or not {"ref_id", "ann_id", "image_id", "split", "sentences"} <= ref.keys()
        ):
            raise ValueError(
                f"{str(path)!r}: entry {i} is not a ref dict with ref_id, ann_id, image_id, split, sentences: "
                f"{str(ref)[:200]}"
            )
    return refs


@dataclass
class ReferFiles:
    """The parsed files of one refer dataset (read once, shared by its splits)."""

    name: str
    folder: Path
    refs: list[dict[str, Any]]
    images: dict[int, dict]
    annotations: dict[int, dict]


def read_refer(name: str, data_root: str | os.PathLike[str]) -> ReferFiles:
    """Find and read ``name``'s refs pickle (safely) and ``instances.json`` under ``data_root``.

    Raises:
        ValueError: unknown name, or files that are not refer/COCO data.
        FileNotFoundError: no refs pickle or no ``instances.json``.
    """
    spec = _spec(name)
    folder = find_refer_dir(data_root, name)
    if folder is None:
        tried = ", ".join(str(Path(data_root) / d / spec.folder / spec.refs_file) for d in REFER_DIRS)
        raise FileNotFoundError(f"{name}: no {spec.refs_file} found; tried {tried}")
    if not (folder / "instances.json").is_file():
        raise FileNotFoundError(
            f"{name}: {str(folder / 'instances.json')!r} not found next to {spec.refs_file}"
        )
    refs = load_refs(folder / spec.refs_file)
    images, anns = load_instances(folder / "instances.json")
    return ReferFiles(name.lower(), folder, refs, images, anns)


def load_instances(path: str | os.PathLike[str]) -> tuple[dict[int, dict], dict[int, dict]]:
    """Read a COCO ``instances.json``: (images by id, annotations by id)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{str(path)!r} is not a COCO instances file (needs 'images' and 'annotations')")
    images = {im["id"]: im for im in data["images"]}
    anns = {ann["id"]: ann for ann in data["annotations"]}
    return images, anns


def _to_rle(segmentation: Any, height: int, width: int) -> list[dict]:
    """Compressed RLEs (pycocotools dicts) of one COCO ``segmentation`` field."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, dict):
        segmentation = [segmentation]
    if not isinstance(segmentation, list):
        raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")
    polygons = [p for p in segmentation if isinstance(p, list | tuple)]
    rles = [r for r in segmentation if isinstance(r, dict)]
    if len(polygons) + len(rles) != len(segmentation):
        raise ValueError(f"segmentation mixes unsupported items: {str(segmentation)[:200]}")
    out: list[dict] = []
    # A ring of 4 numbers would make frPyObjects read *all* rings as boxes; rings under 3 points have no area.
    rings = [[float(v) for v in p] for p in polygons if len(p) >= 6]
    if rings:
        out.extend(mask_utils.frPyObjects(rings, height, width))
    for rle in rles:
        if "counts" not in rle or "size" not in rle:
            raise ValueError(f"RLE segmentation needs 'counts' and 'size', got keys {sorted(rle)}")
        size = [int(v) for v in rle["size"]]
        if size != [height, width]:
            raise ValueError(f"RLE size {size} does not match the image size [{height}, {width}]")
        counts = rle["counts"]
        if isinstance(counts, list):  # uncompressed RLE
            out.append(mask_utils.frPyObjects({"counts": counts, "size": size}, height, width))
        else:
            out.append(
                {"counts": counts.encode("ascii") if isinstance(counts, str) else counts, "size": size}
            )
    return out


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO ``segmentation`` (polygons, uncompressed or compressed RLE, or a list of RLEs).

    Returns:
        (height, width) bool mask; the union of all parts; all False for an empty segmentation.

    Raises:
        ValueError: an unsupported or inconsistent segmentation (e.g. an RLE of another size).
    """
    from pycocotools import mask as mask_utils

    rles = _to_rle(segmentation, int(height), int(width))
    if not rles:
        return np.zeros((int(height), int(width)), dtype=bool)
    rle = rles[0] if len(rles) == 1 else mask_utils.merge(rles)
    return mask_utils.decode(rle).astype(bool)


@dataclass(frozen=True)
class _Item:
    ref_id: int
    ann_ids: tuple[int, ...]
    image_id: int
    sent_id: int
    text: str
    category_id: int | None


class ReferDataset(LazySamples):
    """One split of RefCOCO / RefCOCO+ / RefCOCOg: one :class:`Sample` per referring sentence.

    Samples (built on indexing; masks decoded then) have ``image`` = path under ``image_root``,
    ``mask`` = (H, W) bool array at the COCO image size, ``text`` = the sentence (``sent``), task
    ``"referring"``, id ``"<ref_id>_<sent_id>"``, and ``meta`` with ``dataset, split, split_by, ref_id,
    ann_id, image_id, sent_id, category_id, height, width``. Order: refs as in the pickle, sentences in
    order.

    Args:
        name: ``"refcoco"``, ``"refcoco+"`` or ``"refcocog"``.
        data_root: the folder holding ``Refer_Segm/`` (or ``refer_seg/``, or ``refcoco/`` etc. directly).
        split: ``val`` (default), ``testA``, ``testB`` (RefCOCO/+), ``test`` (RefCOCOg) or ``train``.
        image_root: folder of the COCO train2014 images; default :func:`default_image_root`.
        files: already-read files of this dataset (from :func:`read_refer`), to build several splits
            from one read.

    Raises:
        ValueError: unknown name or split; a ref whose image or annotation is missing from
            ``instances.json``.
        FileNotFoundError: no refs pickle / ``instances.json`` under ``data_root``.
    """

    def __init__(
        self,
        name: str,
        data_root: str | os.PathLike[str],
        split: str | None = None,
        image_root: str | os.PathLike[str] | None = None,
        files: ReferFiles | None = None,
    ) -> None:
        spec = _spec(name)
        self.name = name.lower()
        self.split = split or "val"
        if self.split not in (*spec.splits, "train"):
            raise ValueError(f"{name} has splits {', '.join(spec.splits)} (and train); got split={split!r}")
        if files is None:
            files = read_refer(self.name, data_root)
        elif files.name != self.name:
            raise ValueError(f"files of {files.name!r} given for dataset {name!r}")
        self.folder = files.folder
        self.split_by = spec.split_by
        self.image_root = Path(image_root) if image_root is not None else default_image_root(data_root)
        refs = [r for r in files.refs if r["split"] == self.split]
        images, anns = files.images, files.annotations
        self._items: list[_Item] = []
        self._images: dict[int, dict] = {}
        self._anns: dict[int, Any] = {}
        for ref in refs:
            ann_ids = tuple(ref["ann_id"]) if isinstance(ref["ann_id"], list) else (ref["ann_id"],)
            if ref["image_id"] not in images:
                raise ValueError(f"{name} ref {ref['ref_id']}: image {ref['image_id']} not in instances.json")
            for a in ann_ids:
                if a not in anns:
                    raise ValueError(f"{name} ref {ref['ref_id']}: annotation {a} not in instances.json")
                self._anns[a] = anns[a]["segmentation"]
            self._images[ref["image_id"]] = images[ref["image_id"]]
            sent_ids = ref.get("sent_ids") or []
            for i, sent in enumerate(ref["sentences"]):
                sent_id = sent.get("sent_id", sent_ids[i] if i < len(sent_ids) else i)
                text = sent.get("sent") or sent.get("raw") or ""
                self._items.append(
                    _Item(ref["ref_id"], ann_ids, ref["image_id"], sent_id, text, ref.get("category_id"))
                )
        logger.info("%s %s: %d refs, %d sentences", name, self.split, len(refs), len(self._items))

    def _load(self, item: _Item) -> Sample:
        info = self._images[item.image_id]
        h, w = int(info["height"]), int(info["width"])
        mask = np.zeros((h, w), dtype=bool)
        for a in item.ann_ids:
            mask |= decode_segmentation(self._anns[a], h, w)
        meta = {
            "dataset": self.name,
            "split": self.split,
            "split_by": self.split_by,
            "ref_id": item.ref_id,
            "ann_id": item.ann_ids[0] if len(item.ann_ids) == 1 else list(item.ann_ids),
            "image_id": item.image_id,
            "sent_id": item.sent_id,
            "category_id": item.category_id,
            "height": h,
            "width": w,
        }
        return Sample(
            id=f"{item.ref_id}_{item.sent_id}",
            image=self.image_root / info["file_name"],
            mask=mask,
            text=item.text,
            task="referring",
            meta=meta,
        )

    def one_sentence_per_image(self, seed: int = 0) -> ReferDataset:
        """A copy of this split with ONE sentence per image, drawn uniformly among all the sentences of all
        the refs of that image with a generator seeded by ``seed`` (the Seg-R1 release's referring
        evaluation drew one such sentence per image, unseeded). Images keep their first-seen order."""
        import copy

        rng = np.random.default_rng(seed)
        by_image: dict[int, list[_Item]] = {}
        for item in self._items:
            by_image.setdefault(item.image_id, []).append(item)
        subset = copy.copy(self)
        subset._items = [items[int(rng.integers(len(items)))] for items in by_image.values()]
        logger.info(
            "%s %s: one sentence per image (seed %d): %d samples", self.name, self.split, seed, len(subset)
        )
        return subset

    def image_paths(self) -> list[Path]:
        """The distinct image files this split needs (for completeness checks), sorted."""
        return sorted(
            {self.image_root / self._images[i]["file_name"] for i in {it.image_id for it in self._items}}
        )
