"""The evaluation benchmarks in their published on-disk layouts, and :func:`load_benchmark`.

Foreground benchmarks (camouflaged, salient and dichotomous object segmentation) are image/mask folder
pairs; each has the layout its authors publish plus a few layouts common in COD/SOD code (SINet's
``TestDataset/<NAME>/{Imgs,GT}``, ``<NAME>/{Imgs,GT}``). All paths are relative to a *data root* laid
out as in the original Seg-R1 README::

    datasets/
    ├── COD10K-v3/Test/{Image,GT_Object}          COD10K test (camouflaged images only, 2026)
    ├── CAMO-V.1.0-CVIU2019/{Images/Test,GT}      CAMO test (GT holds train+test masks)
    ├── NC4K/{Imgs,GT}    CHAMELEON/{Imgs,GT}
    ├── DUTS/DUTS-TE/{DUTS-TE-Image,DUTS-TE-Mask}
    ├── DUT-OMRON/{DUT-OMRON-image,pixelwiseGT-new-PNG}
    ├── HKU-IS/{imgs,gt}  ECSSD/{images,ground_truth_mask}  PASCAL-S/datasets/{imgs,masks}/pascal
    ├── DIS5K/{DIS-VD,DIS-TE1,...,DIS-TE4}/{im,gt}
    ├── Refer_Segm/{refcoco,refcoco+,refcocog}/{refs(unc).p|refs(umd).p,instances.json}
    │   └── coco_2014/train2014/                   (the COCO images, or pass image_root)
    └── ReasonSeg/{val,test}/{X.jpg,X.json}

Images and masks pair by file stem; any image extension is accepted (the published one is recorded in
the registry). Foreground samples carry paths (read them with :mod:`segr1.data.io`); masks follow the
benchmark convention, foreground where the 8-bit value is ``> 128``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segr1.data.folders import files_by_key
from segr1.data.records import Sample

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""Image file extensions (lower case) paired by stem, in order of preference when a stem repeats."""
MASK_SUFFIXES: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
"""Mask file extensions (lower case), in order of preference when a stem repeats."""


@dataclass(frozen=True)
class FolderLayout:
    """One on-disk layout of a foreground benchmark.

    Attributes:
        images: image folder, relative to the data root.
        masks: ground-truth mask folder, relative to the data root.
        image_ext: the extension the publisher uses for images (informational).
        mask_ext: the extension the publisher uses for masks (informational).
        shared_masks: the mask folder also holds masks of other splits (CAMO's ``GT``), so masks without
            an image are expected and not reported.
    """

    images: str
    masks: str
    image_ext: str = ".jpg"
    mask_ext: str = ".png"
    shared_masks: bool = False


@dataclass(frozen=True)
class ForegroundBenchmark:
    """A foreground benchmark: its canonical name, the layouts tried in order, its published size.

    Attributes:
        name: canonical lower-case name accepted by :func:`load_benchmark` (``"cod10k"``).
        title: the name papers print (``"COD10K-v3 Test"``).
        family: ``"cod"`` (camouflaged), ``"sod"`` (salient) or ``"dis"`` (dichotomous).
        split: the split the benchmark is (``"test"``, or ``"val"`` for DIS-VD).
        layouts: layouts tried in order; the first whose two folders exist is used.
        expected: published number of evaluated images.
        exclude: image stems containing any of these substrings are not part of the benchmark
            (COD10K's test folder also holds 1974 non-camouflaged ``-NonCAM-`` images).
    """

    name: str
    title: str
    family: str
    split: str
    layouts: tuple[FolderLayout, ...]
    expected: int | None = None
    exclude: tuple[str, ...] = ()


def _common(folder: str, image_ext: str = ".jpg") -> tuple[FolderLayout, ...]:
    """The re-packaged layouts COD/SOD code bases use for a test set named ``folder``."""
    out = []
    for base in (folder, f"TestDataset/{folder}"):
        for images, masks in (
            ("Imgs", "GT"),
            ("Image", "GT"),
            ("Images", "GT"),
            ("images", "masks"),
            ("im", "gt"),
        ):
            out.append(FolderLayout(f"{base}/{images}", f"{base}/{masks}", image_ext))
    return tuple(out)


def _dis(part: str) -> tuple[FolderLayout, ...]:
    return (
        FolderLayout(f"DIS5K/{part}/im", f"DIS5K/{part}/gt"),
        FolderLayout(f"{part}/im", f"{part}/gt"),
        *_common(part),
    )


FOREGROUND_BENCHMARKS: dict[str, ForegroundBenchmark] = {
    b.name: b
    for b in (
        ForegroundBenchmark(
            "cod10k",
            "COD10K-v3 Test",
            "cod",
            "test",
            (
                FolderLayout("COD10K-v3/Test/Image", "COD10K-v3/Test/GT_Object"),
                FolderLayout("COD10K/Test/Image", "COD10K/Test/GT_Object"),
                *_common("COD10K"),
            ),
            expected=2026,
            exclude=("-NonCAM-",),
        ),
        ForegroundBenchmark(
            "camo",
            "CAMO test",
            "cod",
            "test",
            (
                FolderLayout("CAMO-V.1.0-CVIU2019/Images/Test", "CAMO-V.1.0-CVIU2019/GT", shared_masks=True),
                FolderLayout("CAMO/Images/Test", "CAMO/GT", shared_masks=True),
                *_common("CAMO"),
            ),
            expected=250,
        ),
        ForegroundBenchmark("nc4k", "NC4K", "cod", "test", _common("NC4K"), expected=4121),
        ForegroundBenchmark("chameleon", "CHAMELEON", "cod", "test", _common("CHAMELEON"), expected=76),
        ForegroundBenchmark(
            "duts-te",
            "DUTS-TE",
            "sod",
            "test",
            (
                FolderLayout("DUTS/DUTS-TE/DUTS-TE-Image", "DUTS/DUTS-TE/DUTS-TE-Mask"),
                FolderLayout("DUTS-TE/DUTS-TE-Image", "DUTS-TE/DUTS-TE-Mask"),
                *_common("DUTS-TE"),
            ),
            expected=5019,
        ),
        ForegroundBenchmark(
            "dut-omron",
            "DUT-OMRON",
            "sod",
            "test",
            (
                FolderLayout("DUT-OMRON/DUT-OMRON-image", "DUT-OMRON/pixelwiseGT-new-PNG"),
                *_common("DUT-OMRON"),
            ),
            expected=5168,
        ),
        ForegroundBenchmark(
            "hku-is",
            "HKU-IS",
            "sod",
            "test",
            (FolderLayout("HKU-IS/imgs", "HKU-IS/gt", ".png"), *_common("HKU-IS", ".png")),
            expected=4447,
        ),
        ForegroundBenchmark(
            "ecssd",
            "ECSSD",
            "sod",
            "test",
            (FolderLayout("ECSSD/images", "ECSSD/ground_truth_mask"), *_common("ECSSD")),
            expected=1000,
        ),
        ForegroundBenchmark(
            "pascal-s",
            "PASCAL-S",
            "sod",
            "test",
            (
                FolderLayout("PASCAL-S/datasets/imgs/pascal", "PASCAL-S/datasets/masks/pascal"),
                FolderLayout("salObj/datasets/imgs/pascal", "salObj/datasets/masks/pascal"),
                FolderLayout("PASCAL-S/image", "PASCAL-S/mask"),
                *_common("PASCAL-S"),
            ),
            expected=850,
        ),
        ForegroundBenchmark("dis-vd", "DIS-VD", "dis", "val", _dis("DIS-VD"), expected=470),
        *(
            ForegroundBenchmark(f"dis-te{i}", f"DIS-TE{i}", "dis", "test", _dis(f"DIS-TE{i}"), expected=500)
            for i in range(1, 5)
        ),
    )
}
"""Registry of the foreground benchmarks, by canonical name."""

REFER_NAMES: tuple[str, ...] = ("refcoco", "refcoco+", "refcocog")
REASONSEG_NAMES: tuple[str, ...] = ("reasonseg",)
BENCHMARK_NAMES: tuple[str, ...] = (*FOREGROUND_BENCHMARKS, *REFER_NAMES, *REASONSEG_NAMES)
"""Every name :func:`load_benchmark` accepts (besides the aliases)."""

_ALIASES: dict[str, str] = {
    "cod10k-test": "cod10k",
    "cod10k-v3": "cod10k",
    "camo-test": "camo",
    "duts": "duts-te",
    "dutste": "duts-te",
    "dut-o": "dut-omron",
    "dutomron": "dut-omron",
    "hkuis": "hku-is",
    "pascals": "pascal-s",
    "disvd": "dis-vd",
    "reason-seg": "reasonseg",
    "refcoco-plus": "refcoco+",
}


def canonical_name(name: str) -> str:
    """Canonical benchmark name for ``name`` (case, ``_`` vs ``-`` and a few aliases forgiven).

    Raises:
        ValueError: unknown name; the message lists the known names.
    """
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key.startswith("dis5k-"):
        key = "dis-" + key[len("dis5k-") :]
    if key not in BENCHMARK_NAMES:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARK_NAMES)}")
    return key


@dataclass
class FolderPairing:
    """Images and masks of two folders matched by file stem (all lists sorted by stem).

    Attributes:
        pairs: (stem, image path, mask path).
        images_without_mask: images whose stem has no mask.
        masks_without_image: masks whose stem has no image.
        excluded: images left out by the benchmark's ``exclude`` rule.
    """

    pairs: list[tuple[str, Path, Path]]
    images_without_mask: list[Path]
    masks_without_image: list[Path]
    excluded: int = 0


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Map stem -> file for the non-hidden files of ``folder`` with one of ``suffixes`` (preferred first)."""
    rank = {s: i for i, s in enumerate(suffixes)}
    groups = files_by_key(folder, suffixes)
    return {stem: min(paths, key=lambda p: rank[p.suffix.lower()]) for stem, paths in groups.items()}


def pair_folders(
    image_dir: str | os.PathLike[str], mask_dir: str | os.PathLike[str], exclude: Sequence[str] = ()
) -> FolderPairing:
    """Pair the images of ``image_dir`` with the masks of ``mask_dir`` by stem (``a.jpg`` <-> ``a.png``).

    Hidden files (macOS ``._*``) and non-image files are ignored; image stems containing any substring
    of ``exclude`` are counted in ``excluded`` and left out.
    """
    images = _by_stem(Path(image_dir), IMAGE_SUFFIXES)
    masks = _by_stem(Path(mask_dir), MASK_SUFFIXES)
    kept = {s: p for s, p in images.items() if not any(x in s for x in exclude)}
    pairs = [(s, kept[s], masks[s]) for s in sorted(kept) if s in masks]
    return FolderPairing(
        pairs=pairs,
        images_without_mask=[kept[s] for s in sorted(kept) if s not in masks],
        masks_without_image=[masks[s] for s in sorted(masks) if s not in images],
        excluded=len(images) - len(kept),
    )


def find_layout(benchmark: ForegroundBenchmark, data_root: str | os.PathLike[str]) -> FolderLayout | None:
    """The first layout of ``benchmark`` whose image and mask folders both exist under ``data_root``."""
    root = Path(data_root)
    for layout in benchmark.layouts:
        if (root / layout.images).is_dir() and (root / layout.masks).is_dir():
            return layout
    return None


def load_foreground(name: str, data_root: str | os.PathLike[str], split: str | None = None) -> list[Sample]:
    """Samples of a foreground benchmark: image and mask *paths*, task ``"foreground"``, no text.

    ``meta`` holds ``dataset``, ``split`` and ``title``. An image without a mask is kept with
    ``mask=None`` (and a warning), so an evaluation run records it instead of silently dropping it.

    Raises:
        ValueError: unknown name, or a split the benchmark does not have.
        FileNotFoundError: none of the benchmark's layouts exists under ``data_root`` (the message lists
            the folders tried).
    """
    key = canonical_name(name)
    bench = FOREGROUND_BENCHMARKS.get(key)
    if bench is None:
        raise ValueError(
            f"{name!r} is not a foreground benchmark; those are: {', '.join(FOREGROUND_BENCHMARKS)}"
        )
    if split is not None and split != bench.split:
        raise ValueError(f"{bench.title} has only the split {bench.split!r}, got split={split!r}")
    layout = find_layout(bench, data_root)
    if layout is None:
        tried = "\n  ".join(f"{lay.images} + {lay.masks}" for lay in bench.layouts)
        raise FileNotFoundError(f"{bench.title} not found under {str(data_root)!r}; tried:\n  {tried}")
    root = Path(data_root)
    pairing = pair_folders(root / layout.images, root / layout.masks, bench.exclude)
    if pairing.images_without_mask:
        logger.warning(
            "%s: %d image(s) have no mask in %s (e.g. %s); they are kept with mask=None",
            bench.title,
            len(pairing.images_without_mask),
            root / layout.masks,
            pairing.images_without_mask[0].name,
        )
    meta = {"dataset": bench.name, "split": bench.split, "title": bench.title}
    samples = [
        Sample(stem, image, mask, None, "foreground", dict(meta)) for stem, image, mask in pairing.pairs
    ]
    samples += [Sample(p.stem, p, None, None, "foreground", dict(meta)) for p in pairing.images_without_mask]
    samples.sort(key=lambda s: s.id)
    if bench.expected is not None and len(samples) != bench.expected:
        logger.warning(
            "%s: found %d images, the published test set has %d", bench.title, len(samples), bench.expected
        )
    return samples


def load_benchmark(
    name: str,
    data_root: str | os.PathLike[str],
    split: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
) -> Sequence[Sample]:
    """Load any benchmark by name: the samples, in a stable order, as a sequence (``len`` and indexing).

    Names: the foreground benchmarks ``cod10k, camo, nc4k, chameleon, duts-te, dut-omron, hku-is, ecssd,
    pascal-s, dis-vd, dis-te1 .. dis-te4`` (``split`` ignored unless given, then it must match);
    ``refcoco, refcoco+`` (splits ``val``, ``testA``, ``testB``; default ``val``) and ``refcocog``
    (``val``, ``test``), one sample per referring sentence, COCO images under ``image_root`` (default:
    the first of ``Refer_Segm/coco_2014/train2014`` and similar that exists under ``data_root``);
    ``reasonseg`` (``val`` default, ``test``, ``train``).

    Referring and reasoning masks are decoded when a sample is indexed, not up front.

    Raises:
        ValueError: unknown name (the message lists the names) or split.
        FileNotFoundError: the benchmark's files are not under ``data_root``.
    """
    key = canonical_name(name)
    if key in FOREGROUND_BENCHMARKS:
        return load_foreground(key, data_root, split)
    if key in REFER_NAMES:
        from segr1.data.refer import ReferDataset

        return ReferDataset(key, data_root, split=split, image_root=image_root)
    from segr1.data.reasonseg import ReasonSegDataset

    return ReasonSegDataset(data_root, split=split or "val")
