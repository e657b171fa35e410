"""Options shared by the ``segr1`` sub-commands that load a policy and a segmenter (segment, eval, demo)."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--model``, ``--segmenter`` and ``--device`` (read by `SegR1Pipeline.from_specs` and friends)."""
    parser.add_argument(
        "--model",
        default=None,
        metavar="ID|PATH",
        help="policy: hub id (e.g. geshang/Seg-R1-7B) or local checkpoint folder (default: the embedded tiny model)",
    )
    parser.add_argument(
        "--segmenter",
        default="grabcut",
        metavar="SPEC",
        help="grabcut (CPU, no weights), sam2-hf:<hub id|folder>, or sam2:<config>@<checkpoint> (default: grabcut)",
    )
    parser.add_argument("--device", default=None, help="e.g. cuda, cuda:1, cpu (default: each backend picks)")
