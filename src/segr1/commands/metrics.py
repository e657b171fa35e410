"""Score folders of prediction maps against ground-truth masks, as COD / SOD / DIS papers report them.

Each --pred folder is paired with the --gt folder by file stem (cat.png matches cat.jpg; any image
extension), and one table row per prediction folder gives S-measure, weighted F, mean F, mean E, max E,
MAE, max F, adaptive E and adaptive F (PySODMetrics' definitions: min-max normalised prediction, ground
truth > 128, or = 1 for 0/1 masks); --boundary adds the DIS columns HCE, mBA, max and mean boundary IoU.

Missing, unreadable and wrongly sized predictions, and predictions with no ground truth, are counted and
listed on stderr, never silently dropped; --resize scores wrongly sized predictions after a nearest-
neighbour resize (as the Seg-R1 evaluator does) instead of skipping them.

Exit status: 0 when every ground truth was scored against every prediction folder (extra predictions are
only reported), 1 when some were missing, unreadable, ambiguous or wrongly sized (the table is still
printed), 2 on usage errors.

example: segr1 metrics --pred runs/segr1/CAMO --pred runs/baseline/CAMO --gt data/CAMO/GT --format md
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"}
)

# table column -> key of ForegroundMeter.compute(), in the order COD / SOD tables print them
COLUMNS = {
    "S": "sm",
    "wF": "wfm",
    "meanF": "mean_fm",
    "meanE": "mean_em",
    "maxE": "max_em",
    "MAE": "mae",
    "maxF": "max_fm",
    "adpE": "adp_em",
    "adpF": "adp_fm",
}
BOUNDARY_COLUMNS = {"HCE": "hce", "mBA": "mba", "maxBIoU": "max_biou", "meanBIoU": "mean_biou"}
PROBLEMS = ("missing", "unreadable", "mismatched", "ambiguous", "extra", "resized")
_FAILURES = ("missing", "unreadable", "mismatched", "ambiguous")  # these make the exit status 1
_SHOWN = 5  # names listed per problem kind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pred", action="append", required=True, metavar="DIR", help="folder of prediction maps (repeatable)"
    )
    parser.add_argument("--gt", required=True, metavar="DIR", help="folder of ground-truth masks")
    parser.add_argument(
        "--format", choices=("md", "csv", "json"), default="md", help="table format (default md)"
    )
    parser.add_argument("--out", metavar="FILE", help="also write the table to FILE")
    parser.add_argument("--boundary", action="store_true", help="add HCE, mBA and boundary IoU (DIS; slower)")
    parser.add_argument(
        "--resize", action="store_true", help="resize wrongly sized predictions to the ground truth (nearest)"
    )


@dataclass
class FolderResult:
    """The outcome for one prediction folder."""

    pred: str
    scores: dict[str, float]
    count: int
    problems: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in PROBLEMS})

    @property
    def failed(self) -> bool:
        return any(self.problems[kind] for kind in _FAILURES)


def run(args: argparse.Namespace) -> int:
    gt_dir = Path(args.gt)
    pred_dirs = [Path(p) for p in args.pred]
    for folder in [gt_dir, *pred_dirs]:
        if not folder.is_dir():
            print(f"segr1 metrics: error: {folder} is not a folder", file=sys.stderr)
            return 2
    if len(set(map(str, pred_dirs))) != len(pred_dirs):
        print("segr1 metrics: error: the same --pred folder is given twice", file=sys.stderr)
        return 2
    gt_files, gt_dupes = index_images(gt_dir)
    if not gt_files and not gt_dupes:
        print(
            f"segr1 metrics: error: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {gt_dir}",
            file=sys.stderr,
        )
        return 2

    results = evaluate_folders(pred_dirs, gt_files, gt_dupes, boundary=args.boundary, resize=args.resize)
    text = format_table(results, args.format, boundary=args.boundary, gt=str(gt_dir))
    sys.stdout.write(text)
    sys.stdout.flush()
    report_problems(results)
    if args.out:
        write_atomic(Path(args.out), text)
    return 1 if any(r.failed for r in results) else 0


def index_images(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Map file stem -> image path for the images directly in ``folder``; stems with several images apart."""
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(path.stem, []).append(path)
    unique = {stem: paths[0] for stem, paths in by_stem.items() if len(paths) == 1}
    dupes = {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}
    return unique, dupes


def read_gray(path: Path):
    """(H, W) uint8 grey-level image (colour images are converted with PIL's ``L`` mode)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def evaluate_folders(
    pred_dirs: list[Path],
    gt_files: dict[str, Path],
    gt_dupes: dict[str, list[Path]],
    *,
    boundary: bool = False,
    resize: bool = False,
) -> list[FolderResult]:
    """Score every prediction folder against the ground truths (each ground truth is read once)."""
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from segr1.metrics import ForegroundMeter

    meters = [ForegroundMeter(boundary=boundary) for _ in pred_dirs]
    results = [FolderResult(pred=str(d), scores={}, count=0) for d in pred_dirs]
    indexes = []
    for folder, result in zip(pred_dirs, results, strict=True):
        files, dupes = index_images(folder)
        indexes.append((files, dupes))
        result.problems["ambiguous"].extend(sorted(dupes))
        result.problems["extra"].extend(sorted(set(files) - set(gt_files) - set(gt_dupes)))
        for stem in gt_dupes:  # a ground truth with two files cannot be paired
            result.problems["ambiguous"].append(f"{stem} (ground truth)")
    for stem in tqdm(sorted(gt_files), desc="metrics", unit="image", disable=None):
        try:
            gt = read_gray(gt_files[stem])
        except Exception as exc:  # a corrupt file is recorded, not fatal
            logger.debug("cannot read %s: %s", gt_files[stem], exc)
            for result in results:
                result.problems["unreadable"].append(f"{gt_files[stem].name} (ground truth)")
            continue
        if gt.max() == 1:  # a 0/1 mask: "> 128" would empty it, so take it as the binary mask it is
            gt = gt.astype(bool)
        for (files, dupes), meter, result in zip(indexes, meters, results, strict=True):
            if stem not in files:
                if stem not in dupes:  # an ambiguous stem is already reported
                    result.problems["missing"].append(stem)
                continue
            try:
                pred = read_gray(files[stem])
            except Exception as exc:
                logger.debug("cannot read %s: %s", files[stem], exc)
                result.problems["unreadable"].append(files[stem].name)
                continue
            if pred.shape != gt.shape:
                note = f"{files[stem].name} {pred.shape[1]}x{pred.shape[0]} vs {gt.shape[1]}x{gt.shape[0]}"
                if not resize:
                    result.problems["mismatched"].append(note)
                    continue
                result.problems["resized"].append(note)
                pred = np.asarray(Image.fromarray(pred).resize(gt.shape[::-1], Image.Resampling.NEAREST))
            meter.update(pred, gt)
    for meter, result in zip(meters, results, strict=True):
        result.scores = meter.compute()
        result.count = meter.count
    return results


def _columns(boundary: bool) -> dict[str, str]:
    return {**COLUMNS, **BOUNDARY_COLUMNS} if boundary else dict(COLUMNS)


def format_table(results: list[FolderResult], fmt: str, *, boundary: bool = False, gt: str = "") -> str:
    """The results as a markdown table (3 decimals), CSV (full precision) or JSON."""
    columns = _columns(boundary)
    if fmt == "json":
        import json

        rows: list[dict[str, Any]] = []
        for r in results:
            scores = {name: _json_number(r.scores[key]) for name, key in columns.items()}
            rows.append({"pred": r.pred, "n": r.count, "scores": scores, "problems": r.problems})
        return json.dumps({"gt": gt, "results": rows}, indent=2) + "\n"
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["pred", "n", *columns, *PROBLEMS])
        for r in results:
            values = [repr(r.scores[key]) for key in columns.values()]
            writer.writerow([r.pred, r.count, *values, *(len(r.problems[k]) for k in PROBLEMS)])
        return buffer.getvalue()
    if fmt != "md":
        raise ValueError(f"unknown format {fmt!r}; use md, csv or json")
    header = ["pred", "n", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(columns)) + "|"]
    for r in results:
        cells = [r.pred.replace("|", "\\|"), str(r.count)]
        cells += [_md_number(name, r.scores[key]) for name, key in columns.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md_number(name: str, value: float) -> str:
    if value != value:  # NaN: nothing was scored
        return "-"
    return str(round(value)) if name == "HCE" else f"{value:.3f}"


def _json_number(value: float) -> float | None:
    return None if value != value else value


def report_problems(results: list[FolderResult]) -> None:
    """List missing / unreadable / mismatched / ambiguous / extra / resized files per folder on stderr."""
    for r in results:
        for kind in PROBLEMS:
            names = r.problems[kind]
            if names:
                shown = ", ".join(names[:_SHOWN]) + (
                    f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
                )
                print(f"{r.pred}: {len(names)} {kind}: {shown}", file=sys.stderr)
        print(f"{r.pred}: scored {r.count} pairs", file=sys.stderr)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    from segr1.data.io import atomic_write_text

    atomic_write_text(path, text)
