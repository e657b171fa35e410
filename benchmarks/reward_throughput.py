"""Segmentation-reward throughput: segr1's ``SegmentationReward`` against the original Seg-R1 scheme.

One reward call scores B images x G completions (GRPO's group), each completion a valid Seg-R1 answer (one
box, three labelled points) in the model frame, against random ground-truth masks, with a random-weight
SAM2 in the SAM2.1-hiera-large shape (``--tiny``: the tiny SAM2) loaded from a folder by the real
``Sam2HFSegmenter``. Schemes, each one change from the previous:

1. ``original``: SAM2 loaded inside every reward call, the image encoded once per completion, fp32
   (what the original reward did);
2. ``load once``: the segmenter built once, still one encode per completion, fp32;
3. ``encode per image``: segr1's ``SegmentationReward`` (one ``segment`` call per distinct image with all its
   completions' prompts), fp32;
4. ``segr1 (bf16)``: the same with bf16 autocast, segr1's default on CUDA.

Columns: seconds per reward call (median), completions/s, speed-up over the previous scheme (``x prev``) and
over the original (``x original``), all measured in one run. A second table times the pieces: loading SAM2,
one ``segment`` call with 1 and with G prompt sets (encoder + decoder + mask upsampling).

    python benchmarks/reward_throughput.py --batch 8 --group 8                 # on a GPU
    python benchmarks/reward_throughput.py --device cpu --tiny                 # CPU smoke run
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _shapes as S
import numpy as np

logger = logging.getLogger(__name__)

COLUMNS = ("scheme", "load", "encode", "dtype", "s/call", "completions/s", "x prev", "x original")
PIECE_COLUMNS = ("piece", "dtype", "ms")


def make_batch(
    batch: int, group: int, size: int, frame: int, seed: int
) -> tuple[list[str], list[Any], list[Any]]:
    """(completions, image column, mask column) for ``batch`` images x ``group`` completions, as TRL passes
    them: one entry per completion, the same image/mask object repeated for a group."""
    from segr1.answer import SegPrompt, format_answer

    rng = np.random.default_rng(seed)
    completions, images, masks = [], [], []
    yy, xx = np.mgrid[:size, :size]
    for _ in range(batch):
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        cx, cy, r = rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size, rng.uniform(0.1, 0.25) * size
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        for _ in range(group):
            x1, y1 = rng.integers(0, frame // 2, 2)
            x2, y2 = x1 + rng.integers(frame // 8, frame // 2), y1 + rng.integers(frame // 8, frame // 2)
            inside = np.stack([rng.integers(x1, x2, 3), rng.integers(y1, y2, 3)], axis=1).astype(float)
            prompt = SegPrompt(
                boxes=np.array([[x1, y1, x2, y2]], dtype=float), points=inside, labels=np.array([1, 1, 0])
            )
            completions.append(format_answer(prompt, think="The object is near the centre."))
            images.append(image)
            masks.append(mask)
    return completions, images, masks


def original_reward(
    segmenter: Callable[[], Any],
    completions: Sequence[str],
    images: Sequence[Any],
    masks: Sequence[Any],
    frame: int,
) -> list[float]:
    """The original scheme emulated: get a segmenter (``segmenter()`` may load it), then one ``segment`` call
    (one image encode) per completion; 0.7 IoU + 0.3 S-measure as in Seg-R1."""
    from segr1.answer import parse_answer
    from segr1.geometry import to_image_frame
    from segr1.metrics import iou, s_measure

    seg = segmenter()
    rewards = []
    for text, image, gt in zip(completions, images, masks, strict=True):
        prompt = parse_answer(text)
        if prompt.is_empty:
            rewards.append(0.0)
            continue
        h, w = image.shape[:2]
        (mask,) = seg.segment(image, [to_image_frame(prompt, (w, h), frame)])
        rewards.append(0.7 * float(iou(mask, gt)) + 0.3 * float(s_measure(mask, gt)))
    return rewards


def run(args: argparse.Namespace, folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from segr1.rewards import SegmentationReward
    from segr1.segmenters.sam2_hf import Sam2HFSegmenter

    def load(dtype: str) -> Any:
        return Sam2HFSegmenter(folder, device=args.device, dtype=dtype, local_files_only=True)

    completions, images, masks = make_batch(args.batch, args.group, args.image_size, args.frame, args.seed)
    n = len(completions)
    fp32, bf16 = load("float32"), load("bfloat16")
    schemes: list[tuple[str, str, str, str, Callable[[], Any]]] = [
        ("original", "per call", "per completion", "fp32",
         lambda: original_reward(lambda: load("float32"), completions, images, masks, args.frame)),
        ("load once", "once", "per completion", "fp32",
         lambda: original_reward(lambda: fp32, completions, images, masks, args.frame)),
        ("encode per image", "once", "per image", "fp32",
         lambda: SegmentationReward(fp32, frame=args.frame)(completions, image=images, mask=masks)),
        ("segr1 (bf16)", "once", "per image", "bf16",
         lambda: SegmentationReward(bf16, frame=args.frame)(completions, image=images, mask=masks)),
    ]  # fmt: skip
    rows: list[dict[str, Any]] = []
    for name, load_when, encode, dtype, call in schemes:
        call()  # warm-up (kernels, autocast caches)
        seconds = S.median_time(call, args.device, args.repeats)
        rows.append({"scheme": name, "load": load_when, "encode": encode, "dtype": dtype, "s/call": seconds,
                     "completions/s": n / seconds})  # fmt: skip
    for i, row in enumerate(rows):
        row["x prev"] = rows[i - 1]["s/call"] / row["s/call"] if i else 1.0
        row["x original"] = rows[0]["s/call"] / row["s/call"]

    pieces: list[dict[str, Any]] = [{"piece": "load SAM2 (from_pretrained + to device)", "dtype": "fp32",
                                     "ms": S.median_time(lambda: load("float32"), args.device, 1) * 1e3}]  # fmt: skip
    from segr1.answer import parse_answer
    from segr1.geometry import to_image_frame

    h, w = images[0].shape[:2]
    prompts = [to_image_frame(parse_answer(c), (w, h), args.frame) for c in completions[: args.group]]
    for label, seg in (("fp32", fp32), ("bf16", bf16)):
        for k in (1, args.group):
            ms = S.median_time(
                lambda seg=seg, k=k: seg.segment(images[0], prompts[:k]), args.device, args.repeats
            )
            pieces.append({"piece": f"segment 1 image, {k} prompt set(s)", "dtype": label, "ms": ms * 1e3})
    return rows, pieces


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    S.add_common_arguments(parser)
    parser.add_argument(
        "--batch", type=int, default=None, help="B distinct images per reward call (default 8)"
    )
    parser.add_argument("--group", type=int, default=None, help="G completions per image (default 8)")
    parser.add_argument("--image-size", type=int, default=None, help="square image side (default 768)")
    parser.add_argument("--frame", type=int, default=768, help="model frame of the answers (default 768)")
    parser.add_argument("--repeats", type=int, default=None, help="timed reward calls per scheme (default 3)")
    parser.add_argument(
        "--sam2-dir", type=Path, default=None, help="use this SAM2 folder instead of a random one"
    )
    args = parser.parse_args(argv)
    args.batch = args.batch or (2 if args.tiny else 8)
    args.group = args.group or (2 if args.tiny else 8)
    args.image_size = args.image_size or (128 if args.tiny else 768)
    args.repeats = args.repeats or (1 if args.tiny else 3)
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    shape = "tiny" if args.tiny else "large"
    with S.smoke_threads(args), tempfile.TemporaryDirectory(prefix="segr1-sam2-") as tmp:
        folder = args.sam2_dir or S.build_sam2_dir(shape, Path(tmp) / shape, seed=args.seed)
        rows, pieces = run(args, folder)
    name = str(args.sam2_dir) if args.sam2_dir else S.SAM2_NAMES[shape]
    title = (
        f"Segmentation reward, {args.batch} images x {args.group} completions, "
        f"{args.image_size}x{args.image_size} images, {name}"
    )
    S.report(title, rows, COLUMNS, args.device, args.json)
    S.report("SAM2 pieces", pieces, PIECE_COLUMNS, args.device, None)
    return rows


if __name__ == "__main__":
    main()
