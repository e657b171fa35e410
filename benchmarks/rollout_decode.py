"""Rollout decoding speed of the ``hf`` policy backend against the memory-bandwidth floor.

For each model shape (Qwen2.5-VL-7B / -3B, random weights), generation variant and batch size, with one
``frame x frame`` image and the Seg-R1 foreground instruction per prompt:

* ``first call``: seconds of the very first ``generate`` at that batch size (compilation, CUDA-graph capture);
* ``prefill ms``: ``generate`` with ``max_new_tokens=1`` (image preprocessing, vision tower, prompt forward);
* ``decode ms/step``: (time with N new tokens - time with 1) / (N - 1), N forced with ``min_new_tokens``;
* ``tok/s``: rows / decode step; ``floor ms``: bytes one decode step must read (language-model weights,
  then weights + the KV cache at the mean context) / measured device-to-device copy bandwidth;
* ``x floor``: decode step / weight floor; ``x eager``: speed-up over the eager variant in this run.

Variants: ``eager`` (transformers' default: dynamic cache, eager forward), ``static``
(``cache_implementation="static"``: transformers' compiled decoding on CUDA, a new cache per call),
``fast`` (segr1's ``HFPolicy(fast=True)``: reused static cache per batch bucket, compiled decoding with
``dynamic=False``), ``fast-nocompile`` (the same without compilation), ``fast-fullgraph``.

    python benchmarks/rollout_decode.py --shapes 7b --batch-sizes 1,8,32        # on a GPU
    python benchmarks/rollout_decode.py --device cpu --tiny                    # CPU smoke run
"""

from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

import _shapes as S

logger = logging.getLogger(__name__)

VARIANTS = ("eager", "static", "fast", "fast-nocompile", "fast-fullgraph")
COLUMNS = (
    "shape", "variant", "mode", "batch", "prompt tok", "first call s", "prefill ms", "decode ms/step",
    "first-call ms/step", "tok/s", "floor ms", "floor+KV ms", "x floor", "x eager",
)  # fmt: skip


def policy_options(variant: str, compile_cpu: bool) -> dict[str, Any]:
    """``HFPolicy`` keyword arguments of a variant."""
    from segr1.policies.fast import FastGeneration

    force = True if compile_cpu else None
    if variant == "eager":
        return {}
    if variant == "static":
        return {"cache_implementation": "static"}
    if variant == "fast":
        return {"fast": FastGeneration(compile=force)}
    if variant == "fast-nocompile":
        return {"fast": FastGeneration(compile=False)}
    if variant == "fast-fullgraph":
        return {"fast": FastGeneration(compile=force, compile_options={"fullgraph": True})}
    raise ValueError(f"unknown variant {variant!r}; use some of {VARIANTS}")


def prompt_tokens(policy: Any, image: Any, instruction: str) -> int:
    from segr1.prompts import build_messages

    text = policy.processor.apply_chat_template(
        build_messages(image, instruction), add_generation_prompt=True, tokenize=False
    )
    return int(policy.processor(text=[text], images=[image], return_tensors="pt")["input_ids"].shape[1])


def measure(
    policy: Any, args: argparse.Namespace, batch: int, mode: str, instruction: str
) -> dict[str, float]:
    """First-call, prefill and per-step decode times of one policy at one batch size."""
    images = S.random_images(batch, args.frame, seed=args.seed)
    instructions = [instruction] * batch
    temperature = 1.0 if mode == "sample" else 0.0
    n = args.new_tokens

    def run(max_new_tokens: int) -> Any:
        policy.generate_kwargs = {"min_new_tokens": max_new_tokens} if max_new_tokens > 1 else {}
        return policy.generate(images, instructions, args.group, temperature, max_new_tokens)

    first, _ = S.timed(lambda: run(n), args.device)
    prefill = S.median_time(lambda: run(1), args.device, args.repeats)
    full = S.median_time(lambda: run(n), args.device, args.repeats)
    return {
        "first call s": first,
        "prefill ms": prefill * 1e3,
        "decode ms/step": (full - prefill) / (n - 1) * 1e3,
        "first-call ms/step": (first - prefill) / (n - 1) * 1e3,
    }


def run_shape(shape: str, args: argparse.Namespace, bandwidth: float) -> list[dict[str, Any]]:
    import torch

    from segr1.policies.hf import HFPolicy
    from segr1.prompts import build_instruction

    model, processor = S.build_qwen25vl(shape, args.device, S.torch_dtype(args.dtype), seed=args.seed)
    weight_bytes = S.decode_weight_bytes(model)
    kv_token = S.kv_bytes_per_token(model)
    instruction = build_instruction("foreground", frame=args.frame)
    rows: list[dict[str, Any]] = []
    for variant in args.variants:
        for mode in args.modes:
            policy = HFPolicy.from_model(
                model,
                processor,
                name=f"hf:random-{shape}",
                top_p=1.0,
                top_k=0,
                repetition_penalty=args.repetition_penalty,
                **policy_options(variant, args.compile_cpu),
            )
            tokens = prompt_tokens(policy, S.random_images(1, args.frame)[0], instruction)
            for batch in args.batch_sizes:
                row_count = batch * (args.group if mode == "sample" else 1)
                row: dict[str, Any] = {
                    "shape": shape, "variant": variant, "mode": mode, "batch": row_count, "prompt tok": tokens,
                }  # fmt: skip
                try:
                    times = measure(policy, args, batch, mode, instruction)
                except Exception as exc:  # record and go on: one failing variant must not lose the others
                    logger.exception("%s %s %s batch %d failed", shape, variant, mode, batch)
                    rows.append({**row, "error": f"{type(exc).__name__}: {exc}"[:200]})
                    continue
                context = tokens + args.new_tokens / 2
                floor = weight_bytes / bandwidth * 1e3
                floor_kv = (weight_bytes + row_count * context * kv_token) / bandwidth * 1e3
                step = times["decode ms/step"]
                row.update(times)
                row.update(
                    {
                        "tok/s": row_count / step * 1e3 if step > 0 else None,
                        "floor ms": floor,
                        "floor+KV ms": floor_kv,
                        "x floor": step / floor,
                    }
                )
                rows.append(row)
                logger.info("%s", row)
            del policy
            gc.collect()
    for row in rows:
        eager = next(
            (
                r
                for r in rows
                if r["variant"] == "eager" and r["mode"] == row["mode"] and r["batch"] == row["batch"]
            ),
            None,
        )
        step, base = row.get("decode ms/step"), (eager or {}).get("decode ms/step")
        if step and base and step > 0:
            row["x eager"] = base / step
    del model
    gc.collect()
    torch._dynamo.reset()
    if str(args.device).startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    S.add_common_arguments(parser)
    parser.add_argument("--shapes", type=S.str_list, default=None, help="7b,3b (default); tiny with --tiny")
    parser.add_argument(
        "--batch-sizes", type=S.int_list, default=None, help="prompts per call (default 1,8,32)"
    )
    parser.add_argument(
        "--group", type=int, default=1, help="samples per prompt (G) when sampling (default 1)"
    )
    parser.add_argument("--variants", type=S.str_list, default=None, help=f"some of {','.join(VARIANTS)}")
    parser.add_argument("--modes", type=S.str_list, default=["sample"], help="sample,greedy (default sample)")
    parser.add_argument("--new-tokens", type=int, default=None, help="N decoded tokens per call (default 64)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 3)")
    parser.add_argument("--frame", type=int, default=None, help="square image side (default 768)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="1.0 as in GRPO (eval: 1.05)")
    parser.add_argument("--compile-cpu", action="store_true", help="compile the fast variants on CPU too")
    parser.add_argument("--bandwidth-bytes", type=int, default=None, help="copy size for the bandwidth probe")
    args = parser.parse_args(argv)
    tiny = args.tiny
    args.shapes = args.shapes or (["tiny"] if tiny else ["7b", "3b"])
    args.batch_sizes = args.batch_sizes or ([1, 3] if tiny else [1, 8, 32])
    args.variants = args.variants or (["eager", "static", "fast"])
    args.new_tokens = args.new_tokens or (6 if tiny else 64)
    args.repeats = args.repeats or (1 if tiny else 3)
    args.frame = args.frame or (224 if tiny else 768)
    args.bandwidth_bytes = args.bandwidth_bytes or ((1 << 24) if tiny else (1 << 30))
    if tiny and args.dtype == "bf16":
        args.dtype = "fp32"
    bad = [v for v in args.variants if v not in VARIANTS] + [
        m for m in args.modes if m not in ("sample", "greedy")
    ]
    if bad:
        parser.error(f"unknown variants/modes {bad}")
    if args.new_tokens < 2:
        parser.error("--new-tokens must be >= 2 (decode time is the difference between N and 1 tokens)")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    rows: list[dict[str, Any]] = []
    with S.smoke_threads(args):
        bandwidth = S.copy_bandwidth(args.device, args.bandwidth_bytes)
        for shape in args.shapes:
            rows += run_shape(shape, args, bandwidth)
    title = (
        f"Rollout decoding, {args.frame}x{args.frame} image per prompt, {args.new_tokens} new tokens, "
        f"{args.dtype}, copy bandwidth {bandwidth / 1e9:.0f} GB/s"
    )
    columns = [*COLUMNS, "error"] if any("error" in r for r in rows) else list(COLUMNS)
    S.report(title, rows, columns, args.device, args.json)
    return rows


if __name__ == "__main__":
    main()
