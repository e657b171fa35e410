"""segr1: segment images with a multimodal LLM that prompts SAM2 (Seg-R1), train it with GRPO, evaluate it.

Each sub-command lives in ``segr1.commands.<name>`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``. Command modules import nothing heavy at module level, so ``segr1 --help`` is fast;
models and datasets load inside ``run``. Errors the user can fix print one or two lines (exit code 2);
``--debug`` or ``SEGR1_DEBUG=1`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from segr1.commands._common import DEBUG_ENV, debug_requested, report_error

DESCRIPTION = (
    "Seg-R1 segmentation: a multimodal LLM writes box/point prompts, SAM2 or GrabCut turns them into masks; "
    "train the LLM with GRPO, evaluate it, serve a demo."
)

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "segment": (
        "segr1.commands.segment",
        "segment images with a policy + segmenter; write masks and overlays",
    ),
    "metrics": ("segr1.commands.metrics", "score folders of prediction maps against ground-truth masks"),
    "eval": ("segr1.commands.eval", "evaluate a policy on foreground, referring or reasoning benchmarks"),
    "train": ("segr1.commands.train", "train a policy: SFT warm-up or GRPO with mask rewards"),
    "data": ("segr1.commands.data", "make synthetic datasets; check benchmark folders"),
    "demo": ("segr1.commands.demo", "start the Gradio web demo and HTTP API"),
}


def build_parser() -> argparse.ArgumentParser:
    from segr1 import __version__

    parser = argparse.ArgumentParser(
        prog="segr1",
        description=DESCRIPTION,
        epilog="Run `segr1 COMMAND --help` for a command's options. Guide: README.md and docs/.",
    )
    parser.add_argument("--version", action="version", version=f"segr1 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the full traceback of an error instead of a one-line message (or set {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a command whose module is not present in this build
            if exc.name != module_name:
                raise
            continue
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``segr1`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    0 success; 1 the command ran and something failed (an image, a sample, an unexpected error); 2 a usage
    error (bad option, path or model id, missing extra). Errors print one or two lines, without a
    traceback unless ``--debug`` or ``SEGR1_DEBUG=1``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = debug_requested(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose or debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"segr1 {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        return report_error(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
