"""Make synthetic datasets and check dataset folders.

  segr1 data synth --kind salient --n 500 --seed 0 --out data/synth/salient-train
  segr1 data synth --kind referring --n 200 --seed 1 --out data/synth/ref-test --min-size 256 --max-size 512
  segr1 data check --root datasets

`synth` writes OUT/images/<id>.png, OUT/masks/<id>.png (0/255), OUT/manifest.jsonl and, for referring
scenes, OUT/refs.jsonl. Scenes are a pure function of (kind, seed, index): use disjoint seeds for train and test.
`check` reports what datasets a folder holds and what is wrong with them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

KINDS = (
    "salient",
    "camouflaged",
    "referring",
    "silhouette",
    "referring-colour",
    "salient-hard",
    "camouflaged-hard",
    "referring-seen",
    "referring-novel",
    "reasoning",
)  # mirrors segr1.data.synthetic.KINDS (not imported: heavy)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    synth = sub.add_parser("synth", help="write a synthetic dataset (images, masks, manifest)")
    synth.add_argument("--kind", required=True, choices=KINDS, help="scene family")
    synth.add_argument("--n", type=int, required=True, help="number of scenes")
    synth.add_argument(
        "--seed", type=int, default=0, help="dataset seed (default 0); use disjoint seeds per split"
    )
    synth.add_argument("--start", type=int, default=0, help="first scene index (default 0)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument(
        "--min-size", type=int, default=160, help="smallest image side in pixels (default 160)"
    )
    synth.add_argument("--max-size", type=int, default=640, help="largest image side in pixels (default 640)")
    synth.add_argument("--size", type=int, default=None, help="fixed square side (overrides --min/max-size)")
    synth.add_argument(
        "--text",
        default=None,
        help="foreground families only: the manifest's text for every scene, a cue placed before the task's "
        "instruction (e.g. 'The object is camouflaged.'); referring and reasoning scenes have their own",
    )
    synth.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    check = sub.add_parser("check", help="report the datasets under a folder and their problems")
    check.add_argument("root_pos", nargs="?", metavar="ROOT", help="folder to check (or --root)")
    check.add_argument("--root", dest="root_opt", default=None, help="folder to check")
    check.add_argument("--image-root", default=None, help="COCO train2014 folder for the RefCOCO family")
    check.add_argument("--quick", action="store_true", help="only list files; do not read annotations")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(_data_parser=parser)


def _run_synth(args: argparse.Namespace) -> int:
    from segr1.data.synthetic import task_of_kind, write_scenes

    error = None
    if args.n < 0 or args.start < 0 or args.seed < 0:
        error = f"--n, --start and --seed must be >= 0 (got {args.n}, {args.start}, {args.seed})"
    elif args.size is not None and args.size < 16:
        error = f"--size must be >= 16 (got {args.size})"
    elif args.size is None and not 16 <= args.min_size <= args.max_size:
        error = f"need 16 <= --min-size <= --max-size (got {args.min_size}, {args.max_size})"
    elif args.text is not None and task_of_kind(args.kind) != "foreground":
        error = f"--text is for the foreground families; {args.kind} scenes carry their own phrase"
    if error:
        print(f"segr1 data synth: {error}", file=sys.stderr)
        return 2
    write_scenes(
        args.kind,
        args.n,
        args.out,
        seed=args.seed,
        start=args.start,
        size=args.size,
        min_size=args.min_size,
        max_size=args.max_size,
        text=args.text,
        progress=not args.no_progress,
    )  # logs "wrote N KIND scenes to OUT" itself
    return 0


def _run_check(args: argparse.Namespace) -> int:
    try:
        from segr1.data.check import check_root, format_report
    except ImportError as exc:
        print(f"segr1 data check: not available in this build (segr1.data.check: {exc})", file=sys.stderr)
        return 2
    args.root = args.root_opt or args.root_pos
    if args.root is None:
        print(
            "segr1 data check: give the data root, e.g. `segr1 data check --root datasets`", file=sys.stderr
        )
        return 2
    if not Path(args.root).is_dir():
        print(f"segr1 data check: not a folder: {args.root!r}", file=sys.stderr)
        return 2
    options = {}
    if args.image_root is not None:
        options["image_root"] = args.image_root
    if args.quick:
        options["deep"] = False
    report = check_root(args.root, **options)
    if args.json and hasattr(report, "to_dict"):
        import json

        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 0


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "data_command", None)
    if command == "synth":
        return _run_synth(args)
    if command == "check":
        return _run_check(args)
    args._data_parser.print_help()
    return 2
