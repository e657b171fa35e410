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

A third table (``--no-family`` skips it) sets the RL-segmentation family's rewards beside the SAM-in-the-loop
ones, on the same boxes and points written as Seg-Zero / VisionReasoner JSON answers: microseconds per
completion of `SegmentationReward` with GrabCut and with the SAM2 above, SAM-R1's tiered mask IoU (SAM2), and
the sum of Seg-Zero's and VisionReasoner's box / point / format terms (`segr1.family_rewards`, Hungarian
matching, no segmenter) with the ground truth given as ``boxes``/``points`` columns or derived from the mask
(PNG bytes; cold: the ground-truth cache emptied before every call). ``x vs GrabCut`` / ``x vs SAM2``: how many
times cheaper than that segmentation reward, measured in the same run.

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
FAMILY_COLUMNS = ("reward", "segmenter", "us/completion", "x vs GrabCut", "x vs SAM2")


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


def family_batch(completions: Sequence[str], masks: Sequence[Any]) -> dict[str, Any]:
    """The same prompts as JSON answers (VisionReasoner: box + first positive point; Seg-Zero: box + two
    positive points) and the family rewards' ground-truth columns (image frame) for the masks."""
    import io

    from PIL import Image

    from segr1.answer import SegPrompt, parse_answer
    from segr1.answer_json import format_json_answer
    from segr1.geometry import mask_to_box
    from segr1.instances import inscribed_point

    vr, sz = [], []
    for text in completions:
        p = parse_answer(text)
        pos = p.points[p.labels == 1]
        obj = SegPrompt(boxes=p.boxes[:1], points=pos, labels=[1] * len(pos))
        vr.append(format_json_answer(obj, p.think, decimals=0))
        sz.append(format_json_answer(obj, p.think, layout="single", decimals=0))
    gt_of: dict[int, tuple[list, list, bytes]] = {}
    for m in masks:
        if id(m) not in gt_of:
            buf = io.BytesIO()
            Image.fromarray(m.astype(np.uint8) * 255).save(buf, format="PNG")
            gt_of[id(m)] = ([mask_to_box(m).tolist()], [inscribed_point(m).tolist()], buf.getvalue())
    h, w = masks[0].shape
    return {
        "vision-reasoner": vr,
        "seg-zero": sz,
        "boxes": [gt_of[id(m)][0] for m in masks],
        "points": [gt_of[id(m)][1] for m in masks],
        "image_size": [[w, h]] * len(masks),
        "mask_png": [gt_of[id(m)][2] for m in masks],
    }


def family_costs(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """The family table (see the module docstring): microseconds per completion, ratios within this run."""
    from segr1 import family_rewards
    from segr1.rewards import SegmentationReward
    from segr1.segmenters import load_segmenter
    from segr1.segmenters.sam2_hf import Sam2HFSegmenter
    from segr1.tiered_rewards import TieredMaskIoUReward

    completions, images, masks = make_batch(args.batch, args.group, args.image_size, args.frame, args.seed)
    fam = family_batch(completions, masks)
    n = len(completions)
    sam2 = Sam2HFSegmenter(folder, device=args.device, dtype="float32", local_files_only=True)
    sam2_name = "SAM2 " + ("tiny" if args.tiny else "2.1-L") + " fp32"
    grabcut = SegmentationReward(load_segmenter("grabcut"), frame=args.frame)
    with_sam2 = SegmentationReward(sam2, frame=args.frame)
    tiered = TieredMaskIoUReward(sam2, frame=args.frame)

    def family_sum(name: str, gt: dict[str, Any], cold: bool = False) -> Callable[[], Any]:
        rewards = family_rewards.published_rewards(name, frame=args.frame)

        def call() -> list[list[float]]:
            family_rewards.clear_caches(ground_truth=cold)  # every step brings new completions
            return [r(fam[name], image=images, **gt) for r in rewards]

        return call

    boxes = {"boxes": fam["boxes"], "points": fam["points"], "image_size": fam["image_size"]}
    from_mask = {"mask": fam["mask_png"]}
    cases: list[tuple[str, str, Callable[[], Any]]] = [
        ("segmentation (0.7 IoU + 0.3 S)", "GrabCut", lambda: grabcut(completions, image=images, mask=masks)),
        (
            "segmentation (0.7 IoU + 0.3 S)",
            sam2_name,
            lambda: with_sam2(completions, image=images, mask=masks),
        ),
        (
            "SAM-R1 tiered mask IoU",
            sam2_name,
            lambda: tiered(fam["vision-reasoner"], image=images, mask=masks),
        ),
        ("Seg-Zero 5 terms, boxes column", "none", family_sum("seg-zero", boxes)),
        ("VisionReasoner 6 terms, boxes column", "none", family_sum("vision-reasoner", boxes)),
        ("VisionReasoner 6 terms, GT from mask (cached)", "none", family_sum("vision-reasoner", from_mask)),
        (
            "VisionReasoner 6 terms, GT from mask (cold)",
            "none",
            family_sum("vision-reasoner", from_mask, True),
        ),
    ]
    rows = []
    for reward, segmenter, call in cases:
        call()  # warm-up (and the ground-truth cache for the cached row)
        us = S.median_time(call, args.device, args.repeats) / n * 1e6
        rows.append({"reward": reward, "segmenter": segmenter, "us/completion": us})
    for row in rows:
        row["x vs GrabCut"] = rows[0]["us/completion"] / row["us/completion"]
        row["x vs SAM2"] = rows[1]["us/completion"] / row["us/completion"]
    return rows


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
    parser.add_argument(
        "--no-family", dest="family", action="store_false", help="skip the family-rewards table"
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
        family = family_costs(args, folder) if args.family else []
    name = str(args.sam2_dir) if args.sam2_dir else S.SAM2_NAMES[shape]
    title = (
        f"Segmentation reward, {args.batch} images x {args.group} completions, "
        f"{args.image_size}x{args.image_size} images, {name}"
    )
    S.report(title, rows, COLUMNS, args.device, args.json)
    S.report("SAM2 pieces", pieces, PIECE_COLUMNS, args.device, None)
    if family:
        S.report(
            f"Reward cost per completion, {args.batch} images x {args.group} completions, "
            f"{args.image_size}x{args.image_size} images",
            family,
            FAMILY_COLUMNS,
            args.device,
            None,
        )
    main.family_rows = family  # type: ignore[attr-defined]
    return rows


if __name__ == "__main__":
    main()
