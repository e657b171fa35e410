"""Segment images: a Seg-R1 policy writes box/point prompts, a segmenter turns them into masks.

For each IMAGE, writes into --out (default ./segr1-out):
  <stem>_mask.png     the mask, 0/255, exactly the image's size (the union of the objects' masks)
  <stem>_overlay.png  the image with the mask, the boxes and the points drawn; with several objects
                      each object in its own colour
  <stem>_inst<k>.png  when the answer holds several objects (several Seg-R1 boxes, several entries of a
                      VisionReasoner answer): object k's mask (k = 1, 2, ... in answer order), 0/255
  results.jsonl       one JSON line per image: image path, output stem, prompt style and answer format,
                      answer text, prompts in the image frame (and the model frame), the objects
                      ("instances": boxes, points, labels, mask_area and mask file of each), error (null
                      on success), timings
Images of one run whose file names share a stem get a numeric suffix (photo-2_mask.png). A later run
into the same --out replaces the files and the results.jsonl line of each image it segments again
(same output stem) and keeps the others, so results.jsonl always holds one line per image in --out.

Default model (no --model): the embedded tiny Seg-R1 policy shipped in the package, trained on synthetic
scenes; it runs offline on CPU and is only meaningful for simple synthetic-like images. Until it is
shipped, the default is an untrained tiny random model whose answers are mostly unparsable. For real
photos pass --model geshang/Seg-R1-7B (needs the Hugging Face hub and a GPU); with any --model the
segmenter defaults to sam2-hf:facebook/sam2.1-hiera-large.

Any --model is prompted in its prompt style (--prompt-style) and its answers parsed in its answer format
(--answer-format): what its segr1_policy.json records; for Ricky06662/Seg-Zero-7B and
Ricky06662/VisionReasoner-7B their own templates, 840 frame and JSON answers (docs/family.md); else seg-r1,
the released Seg-R1 checkpoints' exact texts, frames and budgets (1024 new tokens foreground, 512
referring/reasoning). --protocol seg-r1 also switches on the release's answer handling and image chain
(docs/fidelity.md).

Unreadable images, unparsable or truncated answers and empty masks are reported per image (logged and in
the JSON line) and the run goes on. Exit code: 0 if every image gave a non-empty mask from a parsed answer,
1 otherwise, 2 for usage errors.

Examples:
  segr1 segment photo.png
  segr1 segment a.jpg b.jpg --task referring --text "the dog on the left" \\
      --model geshang/Seg-R1-7B --device cuda
  segr1 segment street.jpg --task referring --text "all the cars" --model Ricky06662/VisionReasoner-7B
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segr1.commands._common import (
    add_fidelity_arguments,
    add_model_arguments,
    check_fidelity_arguments,
    check_image_files,
    debug_requested,
    describe_problems,
    error_message,
)

if TYPE_CHECKING:
    import numpy as np

    from segr1.pipeline import SegR1Pipeline, SegResult

logger = logging.getLogger(__name__)

TASK_CHOICES = ("foreground", "referring", "reasoning")
RESULTS_FILE = "results.jsonl"

_DEFAULT_MODEL_PARAGRAPH_START = "Default model (no --model):"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``segr1 segment`` options to ``parser``."""
    parser.description = _description(parser.description)
    parser.add_argument("images", nargs="+", metavar="IMAGE", type=Path, help="image files to segment")
    parser.add_argument(
        "--task",
        choices=TASK_CHOICES,
        default="foreground",
        help="foreground: the salient/camouflaged object; referring: the object --text names; "
        "reasoning: the object that answers the question in --text (default: foreground)",
    )
    parser.add_argument(
        "--text", default=None, help="referring expression or question (needed by referring/reasoning)"
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("segr1-out"),
        metavar="DIR",
        help="output folder (default: ./segr1-out); a rerun replaces the outputs of the images it "
        "segments again and keeps one results.jsonl line per image",
    )
    parser.add_argument(
        "--frame",
        type=int,
        default=None,
        metavar="N",
        help="side of the square frame the model sees (default: the frame the checkpoint records, e.g. 224 "
        "for the embedded tiny model, else 768 foreground, 1024 referring/reasoning)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=4, metavar="N", help="images per policy call (default: 4)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        metavar="N",
        help="answer length budget (default: the prompt style's: 256 for the embedded tiny model; seg-r1: 1024 "
        "foreground, 512 referring/reasoning)",
    )
    add_fidelity_arguments(parser)


def _description(current: str | None) -> str:
    """The module docstring, with the default-model paragraph from ``segr1.policies`` when it provides one."""
    text = current or (__doc__ or "")
    try:
        from segr1.policies import DEFAULT_POLICY_DESCRIPTION  # type: ignore[attr-defined]
    except ImportError:
        return text
    except Exception:  # a broken policies package must not break `segr1 --help`
        logger.debug("could not read segr1.policies.DEFAULT_POLICY_DESCRIPTION", exc_info=True)
        return text
    paragraphs = text.split("\n\n")
    for i, para in enumerate(paragraphs):
        if para.startswith(_DEFAULT_MODEL_PARAGRAPH_START):
            body = " ".join(str(DEFAULT_POLICY_DESCRIPTION).split())
            paragraphs[i] = textwrap.fill(
                f"{_DEFAULT_MODEL_PARAGRAPH_START} {body} Real photos: --model geshang/Seg-R1-7B (needs the "
                "Hugging Face hub and a GPU); with any --model the segmenter defaults to "
                "sam2-hf:facebook/sam2.1-hiera-large.",
                width=104,
            )
    return "\n\n".join(paragraphs)


def _usage_error(message: str) -> int:
    print(f"segr1 segment: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run ``segr1 segment``; returns the exit code (0 all succeeded, 1 some image failed, 2 usage error)."""
    if args.task in ("referring", "reasoning") and not (args.text and args.text.strip()):
        return _usage_error(f'--task {args.task} needs --text "..." (the expression or question to segment)')
    if args.frame is not None and args.frame < 1:
        return _usage_error(f"--frame must be a positive number of pixels, got {args.frame}")
    if args.batch_size < 1:
        return _usage_error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        return _usage_error(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    error = check_fidelity_arguments(args)
    if error:
        return _usage_error(error)
    out_dir: Path = args.out
    if out_dir.exists() and not out_dir.is_dir():
        return _usage_error(f"--out {out_dir} exists and is not a folder")
    problems = check_image_files(list(args.images))  # headers only: a typo costs no model load
    if len(problems) == len(args.images):
        return _usage_error(f"no readable image among the IMAGE arguments:\n{describe_problems(problems)}")
    for path, why in problems.items():
        logger.error("%s: %s; it is skipped and recorded as failed", path, why)

    from segr1.defaults import default_segmenter
    from segr1.pipeline import SegR1Pipeline

    segmenter = args.segmenter or default_segmenter(args.model)
    logger.info("loading policy %s and segmenter %s", args.model or "(embedded default)", segmenter)
    try:
        pipeline = SegR1Pipeline.from_specs(
            model=args.model,
            segmenter=segmenter,
            task=args.task,
            device=args.device,
            frame=args.frame,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            prompt_style=args.prompt_style,
            answer_format=getattr(args, "answer_format", None),
            protocol=args.protocol,
        )
    except (ValueError, ImportError, OSError) as exc:  # a bad --model / --segmenter value, a missing extra,
        if debug_requested(args):
            raise
        return _usage_error(error_message(exc))  # one line; the traceback only with --debug
    logger.info(
        "prompt style %s, answer format %s, protocol %s, frame %s, max_new_tokens %s",
        getattr(getattr(pipeline, "style", None), "name", "?"),
        getattr(getattr(pipeline, "answer_format", None), "name", "?"),
        getattr(getattr(pipeline, "protocol", None), "name", "?"),
        getattr(pipeline, "frame", "?"),
        getattr(pipeline, "max_new_tokens", "?"),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    return segment_files(pipeline, args.images, out_dir, text=args.text)


def segment_files(
    pipeline: SegR1Pipeline, paths: Sequence[Path], out_dir: Path, text: str | None = None
) -> int:
    """Segment ``paths`` with ``pipeline``, writing masks, overlays and ``results.jsonl`` into ``out_dir``.

    ``results.jsonl`` ends with one line per output stem: the lines of earlier runs whose stems this run does
    not write are kept (their files are untouched), then this run's lines in input order. Lines are appended
    as images finish (a killed run keeps its progress; the next run drops the duplicates) and the file is
    rewritten atomically at the end. Returns 0 when every image gave a non-empty mask from a parsed answer,
    else 1.
    """
    from tqdm import tqdm

    stems = unique_stems(paths)
    formats = {  # what prompted the model and parsed its answers
        "prompt_style": getattr(getattr(pipeline, "style", None), "name", None),
        "answer_format": getattr(getattr(pipeline, "answer_format", None), "name", None),
    }
    results_path = out_dir / RESULTS_FILE
    this_run = {stem.lower() for stem in stems}
    kept = [line for stem, line in read_results(results_path).items() if stem not in this_run]
    _rewrite(results_path, kept)
    written: list[str] = []
    n_failed = 0
    with (
        results_path.open("a", encoding="utf-8") as log_file,
        tqdm(total=len(paths), desc="segment", unit="image", disable=None) as progress,
    ):
        for batch in _batches(list(zip(paths, stems, strict=True)), pipeline.batch_size):
            images: dict[int, np.ndarray] = {}
            read_errors: dict[int, str] = {}
            for i, (path, _) in enumerate(batch):
                try:
                    images[i] = read_rgb(path)
                except (OSError, ValueError) as exc:  # unreadable file: report it and go on
                    read_errors[i] = f"unreadable image: {type(exc).__name__}: {exc}"
            results = dict(zip(images, pipeline(list(images.values()), text), strict=True)) if images else {}
            for i, (path, stem) in enumerate(batch):
                base = {"image": str(path), "stem": stem, "task": pipeline.task, "text": text, **formats}
                if i in read_errors:
                    logger.error("%s: %s", path, read_errors[i])
                    _remove_outputs(out_dir, stem)  # no stale mask from an earlier run under this line
                    line = json.dumps({**base, **_failed_record(read_errors[i])}, ensure_ascii=False)
                    ok = False
                else:
                    result = results[i]
                    files, instance_files = _write_outputs(result, out_dir, stem)
                    line = _result_line(result, base, files, instance_files)
                    ok = result.ok
                    if ok:
                        area = 100.0 * float(result.mask.mean())
                        logger.info("%s: mask covers %.1f%% -> %s", path, area, files["mask"])
                    else:
                        logger.warning("%s: %s (answer: %s)", path, result.error, _shorten(result.answer))
                log_file.write(line + "\n")
                log_file.flush()
                written.append(line)
                n_failed += not ok
                progress.update(1)
    _rewrite(results_path, kept + written)
    if n_failed:
        logger.warning("%d of %d images failed; see %s", n_failed, len(paths), results_path)
    else:
        logger.info("segmented %d images into %s", len(paths), out_dir)
    return 1 if n_failed else 0


def read_results(path: Path) -> dict[str, str]:
    """The lines of an existing ``results.jsonl`` by output stem (a later line wins); unreadable lines are
    dropped. The stem is the line's ``stem``, else the one its ``mask`` file name carries, else the image's."""
    lines: dict[str, str] = {}
    if not path.is_file():
        return lines
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        stem = record.get("stem")
        if not isinstance(stem, str) and isinstance(record.get("mask"), str):
            stem = Path(record["mask"]).name.removesuffix("_mask.png")
        if not isinstance(stem, str) and isinstance(record.get("image"), str):
            stem = Path(record["image"]).stem
        if isinstance(stem, str) and stem:
            lines.pop(stem.lower(), None)
            lines[stem.lower()] = raw
    return lines


def _rewrite(path: Path, lines: list[str]) -> None:
    """Replace ``path`` with ``lines`` (atomically, the user's umask)."""
    from segr1.data.io import atomic_write_text

    atomic_write_text(path, "".join(line + "\n" for line in lines))


def instance_file_name(stem: str, k: int) -> str:
    """``<stem>_inst<k>.png``: the mask of object ``k`` (1-based)."""
    return f"{stem}_inst{k}.png"


def _instance_files(out_dir: Path, stem: str) -> list[Path]:
    """The ``<stem>_inst<k>.png`` files in ``out_dir`` (exactly that stem: ``a_inst1_mask.png`` is not one)."""
    pattern = re.compile(re.escape(stem) + r"_inst[0-9]+\.png", re.IGNORECASE)
    return [p for p in out_dir.glob(f"{glob.escape(stem)}_inst*.png") if pattern.fullmatch(p.name)]


def _remove_outputs(out_dir: Path, stem: str) -> None:
    for suffix in ("_mask.png", "_overlay.png"):
        (out_dir / f"{stem}{suffix}").unlink(missing_ok=True)
    for path in _instance_files(out_dir, stem):
        path.unlink(missing_ok=True)


def _failed_record(error: str) -> dict[str, Any]:
    """The JSON fields of an image that never reached the pipeline (same keys as a result line)."""
    return {
        "mask": None,
        "overlay": None,
        "answer": None,
        "prompt": None,
        "prompt_model_frame": None,
        "n_instances": 0,
        "instances": [],
        "error": error,
        "timings": {},
    }


def _result_line(
    result: SegResult, base: dict[str, Any], files: dict[str, Path], instance_files: list[Path]
) -> str:
    """The results.jsonl line of a segmented image: `SegResult.to_dict`, the files, each instance's mask file."""
    record = {**base, **result.to_dict(), **{k: str(v) for k, v in files.items()}}
    for entry, path in zip(record["instances"], instance_files, strict=True):
        entry["mask"] = str(path)
    return json.dumps(record, ensure_ascii=False)


def _shorten(text: str, limit: int = 160) -> str:
    """``text`` as a one-line repr of at most about ``limit`` characters (for log messages)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems for the outputs, made unique (case-insensitively) with a ``-2``, ``-3``... suffix."""
    used: set[str] = set()
    stems: list[str] = []
    for path in paths:
        base = Path(path).stem or "image"
        stem, k = base, 1
        while stem.lower() in used:
            k += 1
            stem = f"{base}-{k}"
        used.add(stem.lower())
        stems.append(stem)
    return stems


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (EXIF orientation applied); raises OSError if unreadable."""
    from segr1.data.io import read_image

    return read_image(path)


def _write_outputs(result: SegResult, out_dir: Path, stem: str) -> tuple[dict[str, Path], list[Path]]:
    """Write ``<stem>_mask.png`` (0/255, the image's size), ``<stem>_overlay.png`` and, for an answer with
    several objects, ``<stem>_inst<k>.png`` per object, atomically; stale instance files of an earlier run
    are removed. Returns the two files and one mask file per instance (the mask itself for a single one)."""
    from segr1.data.io import write_image, write_mask_png

    for path in _instance_files(out_dir, stem):
        path.unlink(missing_ok=True)
    files = {
        "mask": write_mask_png(result.mask, out_dir / f"{stem}_mask.png"),
        "overlay": write_image(result.overlay, out_dir / f"{stem}_overlay.png"),
    }
    if len(result.instances) == 1:
        return files, [files["mask"]]
    instance_files = [
        write_mask_png(m, out_dir / instance_file_name(stem, k))
        for k, m in enumerate(result.instances, start=1)
    ]
    return files, instance_files


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
