"""Evaluate a Seg-R1 policy + segmenter on a benchmark; write predictions, per-sample records, metrics, report.

  segr1 eval foreground --dataset cod10k --data-root datasets --out runs/cod10k
  segr1 eval foreground --images scenes/images --masks scenes/masks --out runs/scenes
  segr1 eval referring --dataset refcoco --split testA --data-root datasets --out runs/refcoco-testA \\
      --model geshang/Seg-R1-7B
  segr1 eval reasoning --split val --data-root datasets --out runs/reasonseg-val
  segr1 eval referring --dataset refcoco --split val --data-root datasets --out runs/refcoco-release \\
      --model geshang/Seg-R1-7B --protocol seg-r1      # the release's own evaluation protocol

Writes OUT/pred/<id>.png (0/255 at the ground-truth size), OUT/samples.jsonl (one record per sample:
answer, prompts in the image frame, IoU, error), OUT/metrics.json (foreground: S-measure, weighted F, MAE,
E/F-measures; referring/reasoning: gIoU, cIoU; with n_total, n_ok, n_failed, n_scored and failures by
reason; with --per-instance also the per-object metrics inst_miou, inst_precision50/recall50/f1_50 and
inst_count_acc, objects matched one-to-one) and OUT/report.html (best and worst cases). With any --model the segmenter defaults to
sam2-hf:facebook/sam2.1-hiera-large and the prompts, frame and budget to the checkpoint's prompt style
(seg-r1, the release's, unless it records another); --protocol seg-r1 evaluates as the release did where that
is reproducible (docs/fidelity.md). Running the same command again resumes an interrupted
run. Several processes: accelerate launch --num_processes N -m segr1.cli eval ... (on CPU-only machines add
--multi_gpu so accelerate starts torchrun; segr1 then uses the gloo backend). See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from segr1.commands._common import (
    add_fidelity_arguments,
    add_model_arguments,
    check_fidelity_arguments,
    debug_requested,
    error_message,
)

logger = logging.getLogger(__name__)

TASKS = ("foreground", "referring", "reasoning")
_TASK_HELP = {
    "foreground": "camouflaged / salient / dichotomous object benchmarks, or an --images/--masks folder pair",
    "referring": "RefCOCO, RefCOCO+, RefCOCOg (refer format, COCO train2014 images)",
    "reasoning": "ReasonSeg (ignore regions left out of the scores)",
}
_DATASETS = {
    "foreground": "cod10k, camo, nc4k, chameleon, duts-te, dut-omron, hku-is, ecssd, pascal-s, dis-vd, dis-te1..4",
    "referring": "refcoco, refcoco+, refcocog",
    "reasoning": "reasonseg (default)",
}
_EXAMPLES = {
    "foreground": (
        "Data: --dataset NAME --data-root DIR, or --images DIR --masks DIR (paired by file stem), or --manifest.\n"
        "Metrics: S-measure, weighted F, mean/max/adaptive E and F, MAE (+ HCE, mBA, boundary IoU for DIS).\n\n"
        "  segr1 eval foreground --dataset cod10k --data-root datasets --out runs/cod10k\n"
        "  segr1 eval foreground --images scenes/images --masks scenes/masks --out runs/scenes"
    ),
    "referring": (
        "Data: --dataset refcoco|refcoco+|refcocog --split val|testA|testB|test --data-root DIR [--image-root DIR].\n"
        "Metrics: gIoU (mean per-sample IoU) and cIoU (total intersection / total union).\n\n"
        "  segr1 eval referring --dataset refcoco --split testA --data-root datasets --out runs/refcoco-testA"
    ),
    "reasoning": (
        "Data: ReasonSeg --split val|test --data-root DIR. Metrics: gIoU and cIoU; pixels of 'ignore' regions\n"
        "are left out of intersection and union, as LISA's evaluation does.\n\n"
        "  segr1 eval reasoning --split val --data-root datasets --out runs/reasonseg-val"
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``segr1 eval foreground|referring|reasoning`` and their options to ``parser``."""
    sub = parser.add_subparsers(dest="eval_task", metavar="TASK")
    for task in TASKS:
        p = sub.add_parser(
            task,
            help=_TASK_HELP[task],
            description=f"{_TASK_HELP[task]}.\n{_EXAMPLES[task]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        data = p.add_argument_group("data")
        data.add_argument("--dataset", default=None, metavar="NAME", help=f"benchmark: {_DATASETS[task]}")
        data.add_argument(
            "--split", default=None, help="benchmark split (default: the benchmark's evaluation split)"
        )
        data.add_argument(
            "--data-root", type=Path, default=None, metavar="DIR", help="folder holding the datasets"
        )
        if task == "referring":
            data.add_argument(
                "--image-root",
                type=Path,
                default=None,
                metavar="DIR",
                help="COCO train2014 images (default: DATA_ROOT/Refer_Segm/coco_2014/train2014 or similar)",
            )
        if task == "foreground":
            data.add_argument(
                "--images", type=Path, default=None, metavar="DIR", help="image folder (folder pair)"
            )
            data.add_argument(
                "--masks", type=Path, default=None, metavar="DIR", help="mask folder (folder pair)"
            )
        data.add_argument(
            "--manifest", type=Path, default=None, metavar="FILE", help="JSONL manifest of samples"
        )
        data.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N samples")
        model = p.add_argument_group("model")
        add_model_arguments(model)
        model.add_argument(
            "--frame",
            type=int,
            default=None,
            metavar="N",
            help="side of the square model frame (default: the checkpoint's, else 768 foreground, 1024 others)",
        )
        model.add_argument(
            "--max-new-tokens",
            type=int,
            default=None,
            metavar="N",
            help="answer budget (default: the prompt style's; seg-r1: 1024 foreground, 512 referring/reasoning; "
            "segr1: 256)",
        )
        add_fidelity_arguments(model)
        model.add_argument(
            "--batch-size", type=int, default=4, metavar="N", help="samples per policy call (default 4)"
        )
        out = p.add_argument_group("output")
        out.add_argument(
            "--out", type=Path, required=True, metavar="DIR", help="output folder (resumed if it exists)"
        )
        out.add_argument(
            "--report-n", type=int, default=8, metavar="N", help="best/worst cases in report.html (0: none)"
        )
        out.add_argument(
            "--overwrite", action="store_true", help="discard a previous run in --out instead of resuming"
        )
        out.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        out.add_argument(
            "--per-instance",
            action="store_true",
            help="also score each object: predicted objects matched one-to-one with the ground-truth objects "
            "(meta 'instances' maps, e.g. the synthetic multi-object scenes; else the mask is one object); "
            "adds inst_miou, inst_precision50, inst_recall50, inst_f1_50, inst_count_acc to the union's metrics",
        )
        if task == "foreground":
            out.add_argument(
                "--boundary",
                action="store_true",
                help="also report HCE, mBA and boundary IoU (on by default for the DIS benchmarks)",
            )
        p.set_defaults(eval_task=task)
    parser.set_defaults(_eval_parser=parser)


def _usage_error(message: str) -> int:
    print(f"segr1 eval: error: {message}", file=sys.stderr)
    return 2


def build_pipeline(
    task: str,
    model: str | None,
    segmenter: str | None,
    *,
    frame: int | None,
    max_new_tokens: int | None,
    batch_size: int,
    device: str | None,
    prompt_style: str | None = None,
    protocol: str | None = None,
    answer_format: str | None = None,
) -> Any:
    """Load the policy and the segmenter and build a :class:`segr1.pipeline.SegR1Pipeline`.

    ``frame`` None: the frame the checkpoint records (``policy.frame``), else the prompt style's;
    ``max_new_tokens`` None: the style's; ``segmenter`` None: `segr1.defaults.default_segmenter`.
    """
    from segr1.defaults import default_segmenter
    from segr1.pipeline import SegR1Pipeline
    from segr1.policies import load_policy
    from segr1.protocol import get_protocol, segmenter_options
    from segr1.segmenters import load_segmenter

    policy = load_policy(model, device=device)
    frame = frame or getattr(policy, "frame", None)
    seg = load_segmenter(
        segmenter or default_segmenter(model), device=device, **segmenter_options(get_protocol(protocol))
    )
    return SegR1Pipeline(
        policy,
        seg,
        task=task,
        frame=frame,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        prompt_style=prompt_style,
        answer_format=answer_format,
        protocol=protocol,
    )


def _is_dis(dataset: str | None) -> bool:
    from segr1.data.benchmarks import FOREGROUND_BENCHMARKS

    bench = FOREGROUND_BENCHMARKS.get(dataset or "")
    return bench is not None and bench.family == "dis"


def _check(args: argparse.Namespace) -> str | None:
    for name in ("batch_size", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"--{name.replace('_', '-')} must be >= 1, got {value}"
    error = check_fidelity_arguments(args)
    if error:
        return error
    if args.frame is not None and args.frame < 1:
        return f"--frame must be a positive number of pixels, got {args.frame}"
    if args.limit is not None and args.limit < 0:
        return f"--limit must be >= 0, got {args.limit}"
    if args.report_n < 0:
        return f"--report-n must be >= 0, got {args.report_n}"
    if args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} exists and is not a folder"
    return None


def run(args: argparse.Namespace) -> int:
    """Run ``segr1 eval TASK``: 0 when metrics.json was written, 2 for usage errors."""
    task = getattr(args, "eval_task", None)
    if task not in TASKS:
        args._eval_parser.print_help()
        return 2
    error = _check(args)
    if error:
        return _usage_error(error)
    from segr1.defaults import default_segmenter
    from segr1.evaluate import EvalConfig, default_state, evaluate, load_eval_samples
    from segr1.protocol import describe, get_protocol

    protocol = get_protocol(args.protocol)
    segmenter = args.segmenter or default_segmenter(args.model)
    try:
        samples, settings = load_eval_samples(
            task,
            dataset=args.dataset,
            split=args.split,
            data_root=args.data_root,
            image_root=getattr(args, "image_root", None),
            images=getattr(args, "images", None),
            masks=getattr(args, "masks", None),
            manifest=args.manifest,
            protocol=protocol,
        )
    except (ValueError, FileNotFoundError) as exc:
        return _usage_error(str(exc))
    state = default_state(args.device)
    device = args.device
    if device is None and state.num_processes > 1:
        device = "cpu" if state.device.type == "cpu" else str(state.device)
    logger.info("loading policy %s and segmenter %s", args.model or "(embedded default)", segmenter)
    try:
        pipeline = build_pipeline(
            task,
            args.model,
            segmenter,
            frame=args.frame,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            device=device,
            prompt_style=args.prompt_style,
            protocol=args.protocol,
            answer_format=getattr(args, "answer_format", None),
        )
    except (ValueError, OSError) as exc:  # a bad --model / --segmenter / --device value, unloadable weights
        if debug_requested(args):
            raise
        return _usage_error(error_message(exc))  # one line; the traceback only with --debug
    style = getattr(getattr(pipeline, "style", None), "name", None)
    settings.update(
        model=args.model or "default",
        segmenter=segmenter,
        frame=int(pipeline.frame),
        max_new_tokens=getattr(pipeline, "max_new_tokens", args.max_new_tokens),
        prompt_style=args.prompt_style or style,
        answer_format=getattr(getattr(pipeline, "answer_format", None), "name", None),
        protocol=describe(protocol),
    )
    if getattr(args, "per_instance", False):
        settings["per_instance"] = True
    boundary = getattr(args, "boundary", False) or _is_dis(settings.get("dataset"))
    config = EvalConfig(
        task=task,
        out_dir=args.out,
        limit=args.limit,
        batch_size=args.batch_size,
        report_n=args.report_n,
        settings=settings,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        boundary=boundary,
        ignore_regions=protocol.reasonseg_ignore == "exclude",
        per_instance=getattr(args, "per_instance", False),
    )
    from segr1.evaluate.records import SettingsMismatch

    try:
        evaluate(samples, pipeline, config, state=state)
    except SettingsMismatch as exc:  # --out holds a run with other settings
        return _usage_error(str(exc))
    return 0
