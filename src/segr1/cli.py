"""The ``segr1`` command.

Each sub-command lives in ``segr1.commands.<name>`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``. Command modules import nothing heavy at module level, so ``segr1 --help`` is fast;
models and datasets load inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

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

    parser = argparse.ArgumentParser(prog="segr1", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"segr1 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
