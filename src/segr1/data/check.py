"""Which benchmarks are present under a data root, and whether they are complete.

:func:`check_root` looks for every dataset of :mod:`segr1.data.benchmarks` in the layouts listed there
(the original README's ``datasets/`` tree and common variants) and counts what it finds; it reads the
refer pickles (safely) and ReasonSeg's JSONs to count sentences and queries unless ``deep=False``.
:func:`format_report` renders the result as a plain-text table (``segr1 data check --root DIR``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segr1.data.benchmarks import FOREGROUND_BENCHMARKS, find_layout, pair_folders

logger = logging.getLogger(__name__)


@dataclass
class DatasetStatus:
    """What :func:`check_root` found for one dataset.

    Attributes:
        name: canonical benchmark name (``load_benchmark`` accepts it).
        title: printed name.
        task: ``"foreground"``, ``"referring"`` or ``"reasoning"``.
        present: its files were found (in some known layout).
        complete: present, with nothing missing and the published number of samples.
        location: the folder(s) used, relative to the root where possible.
        counts: what was counted (``images``, ``masks``, ``pairs``; sentences per split; ...).
        expected: the published sample counts, by the same keys as ``counts`` where known.
        problems: why it is not complete (missing files, unpaired files, unreadable annotations).
    """

    name: str
    title: str
    task: str
    present: bool = False
    complete: bool = False
    location: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class DataReport:
    """The result of :func:`check_root`: one :class:`DatasetStatus` per known dataset, in registry order."""

    root: str
    datasets: list[DatasetStatus]

    @property
    def present(self) -> list[str]:
        return [d.name for d in self.datasets if d.present]

    @property
    def complete(self) -> list[str]:
        return [d.name for d in self.datasets if d.complete]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"root": self.root, "datasets": [asdict(d) for d in self.datasets]}


def _examples(paths: list[Path], n: int = 3) -> str:
    names = ", ".join(p.name for p in paths[:n])
    return names + (", ..." if len(paths) > n else "")


def _check_foreground(root: Path, name: str) -> DatasetStatus:
    bench = FOREGROUND_BENCHMARKS[name]
    status = DatasetStatus(name, bench.title, "foreground")
    if bench.expected is not None:
        status.expected = {"pairs": bench.expected}
    layout = find_layout(bench, root)
    if layout is None:
        return status
    status.present = True
    status.location = f"{layout.images} + {layout.masks}"
    pairing = pair_folders(root / layout.images, root / layout.masks, bench.exclude)
    n_images = len(pairing.pairs) + len(pairing.images_without_mask)
    status.counts = {"images": n_images, "masks": len(pairing.pairs) + len(pairing.masks_without_image)}
    status.counts["pairs"] = len(pairing.pairs)
    if pairing.excluded:
        status.counts["excluded"] = pairing.excluded
    if pairing.images_without_mask:
        status.problems.append(
            f"{len(pairing.images_without_mask)} image(s) without a mask ({_examples(pairing.images_without_mask)})"
        )
    if pairing.masks_without_image and not layout.shared_masks:
        status.problems.append(
            f"{len(pairing.masks_without_image)} mask(s) without an image ({_examples(pairing.masks_without_image)})"
        )
    if bench.expected is not None and len(pairing.pairs) != bench.expected:
        status.problems.append(
            f"{len(pairing.pairs)} image/mask pairs, the published set has {bench.expected}"
        )
    status.complete = not status.problems
    return status


def _check_refer(root: Path, name: str, image_root: Path | None, deep: bool) -> DatasetStatus:
    from segr1.data.refer import (
        EXPECTED_SENTENCES,
        REFER_SPECS,
        ReferDataset,
        default_image_root,
        find_refer_dir,
        read_refer,
    )

    spec = REFER_SPECS[name]
    title = {"refcoco": "RefCOCO", "refcoco+": "RefCOCO+", "refcocog": "RefCOCOg"}[name]
    status = DatasetStatus(name, f"{title} ({spec.split_by})", "referring")
    status.expected = {s: EXPECTED_SENTENCES[(name, s)] for s in spec.splits}
    folder = find_refer_dir(root, name)
    if folder is None:
        return status
    status.present = True
    images_dir = image_root if image_root is not None else default_image_root(root)
    status.location = f"{_rel(folder, root)} (images: {_rel(images_dir, root)})"
    if not (folder / "instances.json").is_file():
        status.problems.append(f"missing {_rel(folder / 'instances.json', root)}")
    if not images_dir.is_dir():
        status.problems.append(f"image folder {str(images_dir)!r} not found (pass --image-root)")
    if deep and (folder / "instances.json").is_file():
        missing: set[Path] = set()
        try:
            files = read_refer(name, root)
        except Exception as exc:  # an unreadable or unsafe file is a finding of the check, not a crash
            status.problems.append(f"cannot read: {type(exc).__name__}: {exc}")
            files = None
        for split in spec.splits if files is not None else ():
            try:
                ds = ReferDataset(name, root, split=split, image_root=images_dir, files=files)
            except ValueError as exc:
                status.problems.append(f"{split}: {exc}")
                continue
            status.counts[split] = len(ds)
            if len(ds) != status.expected[split]:
                status.problems.append(f"{split}: {len(ds)} sentences, published {status.expected[split]}")
            if images_dir.is_dir():
                missing.update(p for p in ds.image_paths() if not p.is_file())
        if missing:
            status.counts["images_missing"] = len(missing)
            status.problems.append(f"{len(missing)} COCO image(s) missing ({_examples(sorted(missing))})")
    status.complete = not status.problems
    return status


def _check_reasonseg(root: Path, deep: bool) -> DatasetStatus:
    from segr1.data.reasonseg import (
        EXPECTED_IMAGES,
        IMAGE_SUFFIXES,
        find_split_dir,
        queries_of,
        read_annotation,
    )

    status = DatasetStatus("reasonseg", "ReasonSeg", "reasoning")
    splits = ("val", "test")
    status.expected = {s: EXPECTED_IMAGES[s] for s in splits}
    locations = []
    for split in splits:
        folder = find_split_dir(root, split)
        if folder is None:
            status.problems.append(f"split {split!r} not found")
            continue
        status.present = True
        locations.append(_rel(folder, root))
        images = {
            p.stem: p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        }
        jsons = {p.stem: p for p in folder.glob("*.json") if not p.name.startswith(".")}
        paired = sorted(images.keys() & jsons.keys())
        status.counts[split] = len(paired)
        no_json = sorted(images.keys() - jsons.keys())
        no_image = sorted(jsons.keys() - images.keys())
        if no_json:
            status.problems.append(
                f"{split}: {len(no_json)} image(s) without a .json ({', '.join(no_json[:3])})"
            )
        if no_image:
            status.problems.append(
                f"{split}: {len(no_image)} .json without an image ({', '.join(no_image[:3])})"
            )
        if len(paired) != status.expected[split]:
            status.problems.append(
                f"{split}: {len(paired)} annotated images, published {status.expected[split]}"
            )
        if deep:
            bad = []
            for stem in paired:
                try:
                    queries_of(read_annotation(jsons[stem]))
                except (ValueError, OSError) as exc:
                    bad.append(f"{stem}.json ({exc})")
            if bad:
                status.counts[f"{split}_bad_json"] = len(bad)
                status.problems.append(f"{split}: {len(bad)} unreadable annotation(s): {'; '.join(bad[:2])}")
    status.location = ", ".join(locations) or None
    status.complete = status.present and not status.problems
    return status


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def check_root(
    root: str | os.PathLike[str], *, image_root: str | os.PathLike[str] | None = None, deep: bool = True
) -> DataReport:
    """Look for every known benchmark under ``root`` and report presence and completeness.

    Args:
        root: the data root (the README's ``datasets/`` folder).
        image_root: COCO train2014 folder for the refer datasets (default: searched under ``root``).
        deep: also read the refer pickles/instances and ReasonSeg JSONs to count sentences and find
            missing COCO images (slower: seconds per refer dataset); ``False`` only lists files.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"data root {str(base)!r} is not a folder")
    images = Path(image_root) if image_root is not None else None
    out = [_check_foreground(base, name) for name in FOREGROUND_BENCHMARKS]
    out += [_check_refer(base, name, images, deep) for name in ("refcoco", "refcoco+", "refcocog")]
    out.append(_check_reasonseg(base, deep))
    return DataReport(str(base), out)


def _counts_text(status: DatasetStatus) -> str:
    if not status.present:
        return "-"
    parts = []
    for key, value in status.counts.items():
        expected = status.expected.get(key)
        parts.append(f"{key} {value}" + (f"/{expected}" if expected is not None else ""))
    return ", ".join(parts)


def format_report(report: DataReport) -> str:
    """A plain-text table: one line per dataset (state, counts vs published, location) and its problems."""
    rows = []
    for d in report.datasets:
        state = "complete" if d.complete else ("INCOMPLETE" if d.present else "missing")
        rows.append((d.title, state, _counts_text(d), d.location or ""))
    widths = [max(len(r[i]) for r in [("dataset", "state", "counts", "location"), *rows]) for i in range(3)]
    lines = [f"data root: {report.root}", ""]
    header = ("dataset", "state", "counts", "location")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 0], strict=True)).rstrip())
    for d, row in zip(report.datasets, rows, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, [*widths, 0], strict=True)).rstrip())
        if d.present:
            lines.extend(f"    ! {p}" for p in d.problems)
    n_present, n_complete = len(report.present), len(report.complete)
    lines += ["", f"{n_present} of {len(report.datasets)} datasets present, {n_complete} complete"]
    return "\n".join(lines)
