"""What the ``segr1`` sub-commands share: the model options (segment, eval, demo), the one place where
errors become messages for people, and cheap input checks that run before any model loads."""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path

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


# --- user-facing errors ---------------------------------------------------------------------------------

DEBUG_ENV = "SEGR1_DEBUG"
USAGE_EXIT = 2  # a bad option value, input path, model id or a missing extra
FAILURE_EXIT = 1  # the command ran and something failed (an image, a sample, an unexpected error)
MAX_LISTED = 5  # bad inputs named one per line before "... and N more"


class UsageError(Exception):
    """A mistake in what the user asked for; ``segr1`` prints the message in one line and exits with 2."""


def debug_requested(args: argparse.Namespace | None = None) -> bool:
    """True with ``segr1 --debug`` or ``SEGR1_DEBUG=1``: errors then show their full traceback."""
    if args is not None and getattr(args, "debug", False):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def is_usage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the user's to fix (a bad value, path, model id or a missing extra), not a failure."""
    from segr1.hub import ModelSourceError

    if isinstance(exc, UsageError | ModelSourceError | ImportError | ValueError | TypeError):
        return True
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError):
        return True
    if isinstance(exc, pickle.UnpicklingError):  # a dataset file refused as unsafe or malformed
        return True
    try:
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return False
    return isinstance(exc, HFValidationError | LocalEntryNotFoundError | RepositoryNotFoundError)


def error_message(exc: BaseException) -> str:
    """One or two lines for ``exc``: its own message (first line) or, for a bare exception, its type."""
    from segr1.hub import first_line

    if isinstance(exc, MemoryError):
        return "out of memory (MemoryError); try a smaller --batch-size or smaller inputs"
    if isinstance(exc, ImportError) and "pip install" not in str(exc):
        missing = getattr(exc, "name", None) or first_line(exc)
        return f"a package is missing: {missing}. Reinstall segr1 with its extras: pip install -e '.[demo]'"
    text = first_line(exc, limit=600)
    return text if is_usage_error(exc) or type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


def report_error(command: str | None, exc: BaseException) -> int:
    """Print ``exc`` for the user (no traceback) and return the exit code: 2 usage error, 1 failure."""
    prog = f"segr1 {command}" if command else "segr1"
    usage = is_usage_error(exc)
    print(f"{prog}: error: {error_message(exc)}", file=sys.stderr)
    if not usage:
        print(f"{prog}: rerun with --debug (or {DEBUG_ENV}=1) for the traceback", file=sys.stderr)
    return USAGE_EXIT if usage else FAILURE_EXIT


def check_image_files(paths: list[Path], max_pixels: int | None = None) -> dict[Path, str]:
    """Problems of the image files in ``paths``, found cheaply (the header only, no pixel decoding).

    Returns path -> one-line reason ("no such file", "a folder, not an image", "not an image Pillow can
    read", "too many pixels ..."); paths that look fine are absent. ``max_pixels``: W x H bound (default
    ``segr1.data.io.MAX_IMAGE_PIXELS``).
    """
    import warnings

    from PIL import Image

    from segr1.data import io

    limit = io.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    problems: dict[Path, str] = {}
    for path in paths:
        if not path.exists():
            problems[path] = "no such file"
            continue
        if path.is_dir():
            problems[path] = "a folder, not an image file"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:  # parses the header only
                    width, height = im.size
        except Image.DecompressionBombError:
            problems[path] = "too many pixels (over Pillow's decompression-bomb limit)"
            continue
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            kind = "cannot be read" if isinstance(exc, PermissionError) else "is not an image Pillow can read"
            problems[path] = f"{kind} ({type(exc).__name__})"
            continue
        if limit and width * height > limit:
            problems[path] = f"too many pixels: {width}x{height} = {width * height:,} (limit {limit:,})"
    return problems


def describe_problems(problems: dict[Path, str]) -> str:
    """``problems`` (path -> reason) as lines ``PATH: reason``, at most :data:`MAX_LISTED` of them."""
    lines = [f"{p}: {why}" for p, why in list(problems.items())[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"... and {len(problems) - MAX_LISTED} more")
    return "\n".join(lines)


def add_fidelity_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--prompt-style``, ``--answer-format`` and ``--protocol`` (see docs/fidelity.md, docs/family.md)."""
    from segr1.formats import FORMATS
    from segr1.styles import STYLES

    parser.add_argument(
        "--prompt-style",
        default=None,
        choices=sorted(STYLES),
        help="the texts, frames and budgets the model is prompted with (default: what the checkpoint records; "
        "seg-zero / vision-reasoner for Ricky06662/Seg-Zero-7B / VisionReasoner-7B; seg-r1, the release's, for "
        "other hub ids and stock Qwen-VL; segr1 for the embedded tiny model)",
    )
    parser.add_argument(
        "--answer-format",
        default=None,
        choices=sorted(FORMATS),
        help="how the answers are parsed (default: what the checkpoint records, else the prompt style's: seg-r1 "
        "tags, or the seg-zero-json / vision-reasoner-json answers of those styles)",
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
