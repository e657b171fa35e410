"""End-to-end latency of ``segr1 segment`` on one image: prefill, decode, segmentation, whole pipeline.

Runs the real ``SegR1Pipeline`` with the real ``hf`` policy backend (random-weight Qwen2.5-VL-7B, or -3B, in
its released shape) and the real ``sam2-hf`` segmenter (random-weight SAM2.1-hiera-large loaded from a
folder); ``--tiny``: the tiny models. Random weights write unparsable text, so the policy is made to decode
exactly N tokens (``min_new_tokens``) and its text is then replaced by a fixed valid Seg-R1 answer (one box,
three points) so that the segmentation stage runs as it would on a trained checkpoint. Model loading is not
timed. Stages (medians, milliseconds, after one warm-up call whose time is reported as ``first call``):

* ``prefill``: ``generate`` with one new token (image preprocessing, vision tower, prompt forward);
* ``decode (N tokens)``: ``generate`` with N tokens minus prefill; ``decode per token`` = that / (N - 1);
* ``segmentation``: ``Sam2HFSegmenter.segment`` of the image with the answer's prompt (encoder, decoder,
  upsampling to the image size);
* ``pipeline``: ``SegR1Pipeline(image)``: resize, generate, parse, map to the image frame, segment, overlay.

    python benchmarks/segment_latency.py --shape 7b                             # on a GPU
    python benchmarks/segment_latency.py --device cpu --tiny                    # CPU smoke run
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _shapes as S
import numpy as np

logger = logging.getLogger(__name__)

VARIANTS = ("eager", "fast")
MODEL_NAMES = {"7b": "random Qwen2.5-VL-7B", "3b": "random Qwen2.5-VL-3B", "tiny": "tiny Qwen2.5-VL"}


class ForcedAnswerPolicy:
    """Wraps a policy: runs its ``generate`` for exactly ``tokens`` new tokens, then returns ``answer``."""

    def __init__(self, policy: Any, answer: str, tokens: int) -> None:
        self.policy, self.answer, self.tokens = policy, answer, tokens
        self.name = f"forced({policy.name})"
        self.frame = None

    def generate(
        self,
        images: Sequence[Any],
        instructions: Sequence[str],
        num_samples: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
        system: str | None = None,
    ) -> list[list[str]]:
        self.policy.generate_kwargs = {"min_new_tokens": self.tokens}
        self.policy.generate(images, instructions, num_samples, temperature, self.tokens, system)
        return [[self.answer] * num_samples for _ in images]


def canned_answer(frame: int) -> tuple[str, Any]:
    """A valid Seg-R1 answer in a ``frame`` x ``frame`` model frame and its parsed prompt."""
    from segr1.answer import SegPrompt, format_answer, parse_answer

    f = frame
    prompt = SegPrompt(
        boxes=np.array([[0.25 * f, 0.3 * f, 0.7 * f, 0.8 * f]]).round(),
        points=np.array([[0.45 * f, 0.5 * f], [0.5 * f, 0.65 * f], [0.1 * f, 0.1 * f]]).round(),
        labels=np.array([1, 1, 0]),
    )
    text = format_answer(
        prompt, think="A camouflaged animal sits in the centre, its outline close to the bark."
    )
    return text, parse_answer(text)


def measure_variant(
    variant: str, model: Any, processor: Any, segmenter: Any, args: argparse.Namespace
) -> dict[str, float]:
    from segr1.geometry import to_image_frame
    from segr1.pipeline import SegR1Pipeline
    from segr1.policies.fast import FastGeneration
    from segr1.policies.hf import HFPolicy
    from segr1.prompts import build_instruction, system_prompt

    options: dict[str, Any] = {}
    if variant == "fast":
        options["fast"] = FastGeneration(compile=True if args.compile_cpu else None)
    policy = HFPolicy.from_model(model, processor, name="hf:random", **options)
    image = S.random_images(1, args.frame, seed=args.seed)[0]
    instruction = build_instruction("foreground", frame=args.frame)
    system = system_prompt("foreground")
    n = args.new_tokens
    answer, prompt = canned_answer(args.frame)
    pipeline = SegR1Pipeline(
        ForcedAnswerPolicy(policy, answer, n),
        segmenter,
        task="foreground",
        frame=args.frame,
        max_new_tokens=n,
    )

    def generate(tokens: int) -> Any:
        policy.generate_kwargs = {"min_new_tokens": tokens} if tokens > 1 else {}
        return policy.generate([image], [instruction], 1, 0.0, tokens, system)

    first, result = S.timed(lambda: pipeline(image), args.device)
    if not result.ok:
        raise RuntimeError(f"pipeline did not segment the canned answer: {result.error}")
    prefill = S.median_time(lambda: generate(1), args.device, args.repeats)
    full = S.median_time(lambda: generate(n), args.device, args.repeats)
    arr = np.asarray(image)
    in_image = to_image_frame(prompt, (arr.shape[1], arr.shape[0]), args.frame)
    seg = S.median_time(lambda: segmenter.segment(arr, [in_image]), args.device, args.repeats)
    total = S.median_time(lambda: pipeline(image), args.device, args.repeats)
    return {
        "first call": first * 1e3,
        "prefill": prefill * 1e3,
        f"decode ({n} tokens)": (full - prefill) * 1e3,
        "decode per token": (full - prefill) / (n - 1) * 1e3,
        "segmentation": seg * 1e3,
        "pipeline": total * 1e3,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    S.add_common_arguments(parser)
    parser.add_argument(
        "--shape", default=None, choices=sorted(MODEL_NAMES), help="7b (default), 3b; tiny with --tiny"
    )
    parser.add_argument("--variants", type=S.str_list, default=["eager", "fast"], help="eager,fast")
    parser.add_argument(
        "--new-tokens", type=int, default=None, help="answer length N in tokens (default 100)"
    )
    parser.add_argument("--frame", type=int, default=None, help="image side = model frame (default 768)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per stage (default 5)")
    parser.add_argument("--segmenter-dtype", default=None, help="SAM2 autocast dtype (default: bf16 on CUDA)")
    parser.add_argument(
        "--sam2-dir", type=Path, default=None, help="use this SAM2 folder instead of a random one"
    )
    parser.add_argument("--compile-cpu", action="store_true", help="compile the fast variant on CPU too")
    args = parser.parse_args(argv)
    args.shape = args.shape or ("tiny" if args.tiny else "7b")
    args.new_tokens = args.new_tokens or (6 if args.tiny else 100)
    args.frame = args.frame or (224 if args.tiny else 768)
    args.repeats = args.repeats or (1 if args.tiny else 5)
    if args.tiny and args.dtype == "bf16":
        args.dtype = "fp32"
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        parser.error(f"unknown variants {bad}; use some of {VARIANTS}")
    if args.new_tokens < 2:
        parser.error("--new-tokens must be >= 2")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from segr1.segmenters.sam2_hf import Sam2HFSegmenter

    sam_shape = "tiny" if args.tiny else "large"
    with S.smoke_threads(args), tempfile.TemporaryDirectory(prefix="segr1-sam2-") as tmp:
        model, processor = S.build_qwen25vl(
            args.shape, args.device, S.torch_dtype(args.dtype), seed=args.seed
        )
        folder = args.sam2_dir or S.build_sam2_dir(sam_shape, Path(tmp) / sam_shape, seed=args.seed)
        segmenter = Sam2HFSegmenter(
            folder, device=args.device, dtype=args.segmenter_dtype, local_files_only=True
        )
        results: dict[str, dict[str, float]] = {}
        for variant in args.variants:
            try:
                results[variant] = measure_variant(variant, model, processor, segmenter, args)
            except Exception:  # keep the other variant's numbers
                logger.exception("variant %s failed", variant)
        if not results:
            raise RuntimeError("every variant failed; see the log above")
    variants = [v for v in args.variants if v in results]
    rows = []
    for stage in results[variants[0]]:
        row: dict[str, Any] = {"stage": stage}
        for v in variants:
            row[f"{v} ms"] = results[v][stage]
        if len(variants) > 1:
            row[f"x ({variants[0]} / {variants[-1]})"] = (
                results[variants[0]][stage] / results[variants[-1]][stage]
            )
        rows.append(row)
    title = (
        f"segr1 segment latency, one {args.frame}x{args.frame} image, {MODEL_NAMES[args.shape]} ({args.dtype}) + "
        f"{S.SAM2_NAMES[sam_shape]} (autocast {segmenter.autocast_dtype or 'off'}), {args.new_tokens}-token answer"
    )
    S.report(title, rows, list(rows[0]), args.device, args.json)
    return rows


if __name__ == "__main__":
    main()
