"""Shared helpers of the GPU speed benchmarks: random-weight models in released shapes, timing, tables.

Speed does not depend on the weights, so the benchmarks build models with random weights in the exact
shapes of the released checkpoints (written out below from their published ``config.json``) instead of
downloading them:

* ``7b`` — Qwen/Qwen2.5-VL-7B-Instruct (8,292,166,656 parameters; the base of geshang/Seg-R1-7B);
* ``3b`` — Qwen/Qwen2.5-VL-3B-Instruct (3,754,622,976 parameters);
* ``large`` — facebook/sam2.1-hiera-large as transformers' ``Sam2Config`` (216,924,865 parameters in the
  image-only ``Sam2Model``; the release's 224.4 M also counts the video memory modules).

``tiny`` selects segr1's offline tiny Qwen2.5-VL / tiny SAM2 instead (CPU smoke runs, ``--tiny``).
The Qwen models take their processor (tokenizer, chat template, image processor) from the tiny checkpoint,
with Qwen2.5-VL's published pixel limits, so a 768x768 image gives the real 729 vision tokens; the text part
of the prompt is tokenised by the tiny tokenizer (about 3x more tokens than Qwen's for English text), and
the scripts print the prompt length they measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Qwen2.5-VL published config.json values (language model + vision tower).
_QWEN25VL_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "hidden_act": "silu",
    "in_channels": 3,
}
QWEN25VL_SHAPES: dict[str, dict[str, Any]] = {
    "7b": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
        "max_window_layers": 28,
    },
    "3b": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
        "max_window_layers": 70,
    },
}
QWEN25VL_PARAMETERS = {"7b": 8_292_166_656, "3b": 3_754_622_976}
QWEN25VL_PIXELS = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16384}  # 3136 .. 12845056 (published)

# facebook/sam2.1-hiera-large in transformers' Sam2HieraDetConfig / Sam2VisionConfig terms.
SAM21_HIERA_LARGE = {
    "backbone": {
        "hidden_size": 144,
        "embed_dim_per_stage": [144, 288, 576, 1152],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "blocks_per_stage": [2, 6, 36, 4],
        "global_attention_blocks": [23, 33, 43],
        "window_positional_embedding_background_size": [7, 7],
        "window_size_per_stage": [8, 4, 16, 8],
    },
    "backbone_channel_list": [1152, 576, 288, 144],
}
SAM21_LARGE_PARAMETERS = 216_924_865
SAM2_NAMES = {"large": "random SAM2.1-hiera-large", "tiny": "tiny SAM2"}

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


# --- models --------------------------------------------------------------------------------------------


def qwen25vl_config(shape: str, token_ids: dict[str, int] | None = None) -> Any:
    """A ``Qwen2_5_VLConfig`` with the published sizes of ``shape`` ("7b" or "3b").

    ``token_ids``: ids of ``<|image_pad|>``, ``<|video_pad|>``, ``<|vision_start|>``, ``<|vision_end|>``,
    ``<|im_end|>``, ``<|endoftext|>`` in the tokenizer that will be used (default: Qwen's own ids).
    """
    from transformers import Qwen2_5_VLConfig

    if shape not in QWEN25VL_SHAPES:
        raise ValueError(f"unknown Qwen2.5-VL shape {shape!r}; use one of {sorted(QWEN25VL_SHAPES)}")
    ids = {
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|im_end|>": 151645,
        "<|endoftext|>": 151643,
        **(token_ids or {}),
    }
    sizes = QWEN25VL_SHAPES[shape]
    text = {
        **sizes,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {**_QWEN25VL_VISION, "out_hidden_size": sizes["hidden_size"]}
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=sizes["tie_word_embeddings"],
    )


def build_qwen25vl(shape: str, device: str, dtype: Any, seed: int = 0) -> tuple[Any, Any]:
    """(model, processor): a random-weight Qwen2.5-VL of ``shape`` ("7b", "3b") built directly on ``device``
    with ``_from_config``, or segr1's tiny checkpoint loaded from its folder (``shape == "tiny"``)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

    from segr1.policies.hf import _attn_implementation
    from segr1.policies.tiny import tiny_model_dir

    folder = tiny_model_dir()
    if shape == "tiny":
        processor = AutoProcessor.from_pretrained(folder)
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype).to(device).eval()
        return model, processor
    processor = AutoProcessor.from_pretrained(folder, size=dict(QWEN25VL_PIXELS))
    tok = processor.tokenizer
    names = (
        "<|image_pad|>",
        "<|video_pad|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|im_end|>",
        "<|endoftext|>",
    )
    ids = {name: tok.convert_tokens_to_ids(name) for name in names}
    config = qwen25vl_config(shape, ids)
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(
            config, dtype=dtype, attn_implementation=_attn_implementation(str(device), dtype)
        )
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    logger.info("built random %s Qwen2.5-VL on %s in %.1f s", shape, device, time.perf_counter() - start)
    return model, processor


def sam2_config(shape: str = "large") -> Any:
    """transformers ``Sam2Config`` of facebook/sam2.1-hiera-large (``shape == "large"``)."""
    from transformers import Sam2Config
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

    if shape != "large":
        raise ValueError(f"unknown SAM2 shape {shape!r}; use 'large' (or build_sam2_dir(..., 'tiny'))")
    backbone = Sam2HieraDetConfig(**SAM21_HIERA_LARGE["backbone"])
    vision = Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=SAM21_HIERA_LARGE["backbone_channel_list"]
    )
    return Sam2Config(vision_config=vision)


def build_sam2_dir(shape: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random-weight SAM2 folder that ``Sam2HFSegmenter`` loads: ``large`` (SAM2.1-L shape, about
    0.9 GB in fp32) or ``tiny`` (`segr1.segmenters.sam2_hf.build_tiny_sam2`). Returns the folder."""
    import torch
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    from segr1.segmenters.sam2_hf import build_tiny_sam2

    out = Path(out_dir)
    if shape == "tiny":
        return build_tiny_sam2(out, seed=seed)
    torch.manual_seed(seed)
    model = Sam2Model(sam2_config(shape)).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    Sam2Processor(image_processor=Sam2ImageProcessor()).save_pretrained(out)
    return out


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def decode_weight_bytes(model: Any) -> int:
    """Bytes of the weights one decode step of the language model reads: decoder layers, final norm and the
    output projection (the input embedding is a gather of one row per sequence; the vision tower is idle)."""
    seen: dict[int, Any] = {}
    language = model.model.language_model
    for name, p in language.named_parameters():
        if not name.startswith("embed_tokens"):
            seen[id(p)] = p
    head = model.get_output_embeddings().weight
    seen[id(head)] = head
    return sum(p.numel() * p.element_size() for p in seen.values())


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of keys + values one token holds in the KV cache (all layers)."""
    cfg = model.config.get_text_config()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * model.dtype.itemsize


# --- timing ----------------------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    """(seconds, result) of ``fn()``, with the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def median_time(fn: Callable[[], Any], device: str, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` (each synchronised)."""
    return statistics.median(timed(fn, device)[0] for _ in range(max(1, repeats)))


def copy_bandwidth(device: str, nbytes: int = 1 << 30, repeats: int = 20) -> float:
    """Measured device-memory bandwidth in bytes/s: a ``nbytes`` device-to-device copy reads and writes
    ``nbytes`` each, so bandwidth = 2 * nbytes / time (the median of ``repeats`` copies)."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    seconds = median_time(lambda: dst.copy_(src), device, repeats)
    return 2 * nbytes / seconds


# --- inputs, CLI, output ------------------------------------------------------------------------------------


def random_images(n: int, size: int, seed: int = 0) -> list[Any]:
    """``n`` random RGB ``size`` x ``size`` PIL images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def int_list(text: str) -> list[int]:
    """argparse type: "1,8,32" -> [1, 8, 32]."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def str_list(text: str) -> list[str]:
    """argparse type: "a,b" -> ["a", "b"]."""
    return [v.strip() for v in text.split(",") if v.strip()]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES), help="model dtype (default bf16)")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny models, tiny shapes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON to this file")


@contextlib.contextmanager
def smoke_threads(args: argparse.Namespace) -> Iterator[None]:
    """In a CPU ``--tiny`` run, use one intra-op thread (restored after): on a shared CPU several OpenMP
    threads contend with other jobs and make timings erratic by orders of magnitude."""
    import torch

    if not (args.tiny and str(args.device).startswith("cpu")):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, DTYPES.get(name, name))


def environment(device: str) -> str:
    """One line: date, device name, torch / transformers versions, and the command."""
    import torch
    import transformers

    if str(device).startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f"CPU ({platform.processor() or platform.machine()})"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", *sys.argv]) if sys.argv and sys.argv[0].endswith(".py") else "(in-process)"
    return (
        f"{date} | {name} | torch {torch.__version__} | transformers {transformers.__version__} | {command}"
    )


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (dicts) with ``columns``; floats get 3 significant decimals."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def report(
    title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str], device: str, json_path: Path | None
) -> str:
    """Print (and return) the titled table with the environment line; write JSON when asked."""
    text = f"## {title}\n\n{environment(device)}\n\n{format_table(rows, columns)}\n"
    print(text, flush=True)
    if json_path is not None:
        json_path.write_text(
            json.dumps(
                {"title": title, "environment": environment(device), "rows": list(rows)},
                indent=2,
                default=str,
            )
            + "\n"
        )
    return text
