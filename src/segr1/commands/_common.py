"""Options shared by the ``segr1`` sub-commands that load a policy and a segmenter (segment, eval, demo)."""

from __future__ import annotations

import argparse

SEGMENTER_HELP = (
    "grabcut (CPU, no weights), sam2-hf:<hub id|folder>, or sam2:<config>@<checkpoint> (default: grabcut for "
    "the embedded tiny model, sam2-hf:facebook/sam2.1-hiera-large for any other --model)"
)


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--model``, ``--segmenter`` and ``--device`` (read by `SegR1Pipeline.from_specs` and friends)."""
    parser.add_argument(
        "--model",
        default=None,
        metavar="ID|PATH",
        help="policy: hub id (e.g. geshang/Seg-R1-7B) or local checkpoint folder (default: the embedded tiny model)",
    )
    parser.add_argument("--segmenter", default=None, metavar="SPEC", help=SEGMENTER_HELP)
    parser.add_argument("--device", default=None, help="e.g. cuda, cuda:1, cpu (default: each backend picks)")


def add_fidelity_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--prompt-style`` and ``--protocol`` (see docs/fidelity.md)."""
    from segr1.styles import STYLES

    parser.add_argument(
        "--prompt-style",
        default=None,
        choices=sorted(STYLES),
        help="the texts, frames and budgets the model is prompted with (default: what the checkpoint records; "
        "seg-r1, the release's, for hub ids and stock Qwen-VL; segr1 for the embedded tiny model)",
    )
    parser.add_argument(
        "--protocol",
        default=None,
        metavar="SPEC",
        help="release-protocol switches: segr1 (default) or seg-r1, optionally with ,switch=value overrides, "
        "e.g. seg-r1,labels_mismatch=foreground (docs/fidelity.md lists the switches)",
    )


def check_fidelity_arguments(args: argparse.Namespace, stage: str = "eval") -> str | None:
    """A usage-error message for a bad ``--protocol`` spec, else None."""
    from segr1.protocol import get_protocol

    try:
        get_protocol(getattr(args, "protocol", None), stage)
    except (ValueError, TypeError) as exc:
        return f"--protocol: {exc}"
    return None
