"""Seg-Zero / VisionReasoner box-point rewards against Seg-R1's mask reward, in miniature (docs/results_family.md).

    nice -n 5 python scripts/family_miniature.py --out runs/family-miniature     # about 27 CPU-minutes

On synthetic multi-object referring scenes ("all the red shapes", `segr1.data.synthetic_multi`), with the offline
tiny Qwen2.5-VL (1.3 M parameters) on CPU:

1. one SFT warm-up in VisionReasoner's prompt and JSON answer (one ``bbox_2d`` + ``point_2d`` per object, the
   inscribed-circle point; empty think) on training scenes of seed 1;
2. from that one checkpoint, two GRPO runs per seed (``--seeds``) with the same steps and optimiser options (recipes/tiny/
   vision_reasoner.yaml: 4 generations, 2 prompts per step, beta 1e-2, loss_type bnpo) and the same prompts, that
   differ only in the reward:
   * ``boxpoint``: VisionReasoner's published reward -- think format + JSON format + Hungarian-matched box IoU,
     box L1 and point terms + non-repeat (no segmenter);
   * ``mask``: Seg-R1's reward -- 0.7 IoU + 0.3 S-measure of the GrabCut mask of the answer's objects (each
     segmented with its own box and point, as at inference) -- plus the same think-format and JSON-format terms;
3. ``segr1 eval referring --per-instance`` of the SFT checkpoint and both GRPO checkpoints on held-out scenes (seed
   1000: disjoint from the training scenes) with GrabCut: gIoU / cIoU of the union mask, the per-instance metrics,
   and format validity (the share of answers whose whole text is ``<think>..</think><answer>..</answer>`` with
   every entry valid).

Training seconds per step are ``train_runtime / max_steps`` of each run (the reward's cost included). Every child
process runs with one intra-op thread (``--threads``): on a machine whose cores are shared, more threads only
contend. Writes OUT/summary.json and prints the table; finished stages are skipped on a rerun.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
TRAIN_SEED, EVAL_SEED = 1, 1000
SCENE_SIZES = {"min_size": 160, "max_size": 320}
ARMS = {
    "boxpoint": {
        "reward_funcs": [
            "vision_reasoner_think_format",
            "vision_reasoner_json_format",
            "vision_reasoner_box_iou",
            "vision_reasoner_box_l1",
            "vision_reasoner_point",
            "vision_reasoner_non_repeat",
        ],
        "reward_weights": [1.0] * 6,
    },
    "mask": {
        "reward_funcs": ["segmentation", "vision_reasoner_think_format", "vision_reasoner_json_format"],
        "reward_weights": [1.0] * 3,
    },
}


def run(cmd: list[str], log: Path, threads: int) -> float:
    """Run ``cmd`` with one BLAS / OpenMP thread per process, output to ``log``; returns wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO, check=False)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}); see {log}")
    return time.perf_counter() - start


def segr1(*args: str) -> list[str]:
    return [sys.executable, "-m", "segr1", *args]


def train_data(n: int) -> str:
    return json.dumps([{"synthetic": {"kind": "multi", "n": n, "seed": TRAIN_SEED, **SCENE_SIZES}}])


def sft(out: Path, args: argparse.Namespace) -> Path:
    folder = out / "sft"
    if not (folder / "segr1_policy.json").is_file():
        cmd = segr1("train", "sft", "--config", str(REPO / "recipes/tiny/sft.yaml"), "--output_dir", str(folder),
                    "--task", "referring", "--prompt_style", "vision-reasoner", "--sft_think", "none",
                    "--train_data", train_data(args.train_n), "--data_cache_dir", str(out / "data"),
                    "--max_steps", str(args.sft_steps), "--max_length", "640", "--save_strategy", "no",
                    "--learning_rate", "2e-3", "--warmup_steps", "15")  # fmt: skip
        logger.info("SFT warm-up: %d steps", args.sft_steps)
        run(cmd, out / "sft.log", args.threads)
    return folder


def grpo(out: Path, arm: str, seed: int, base: Path, args: argparse.Namespace) -> Path:
    folder = out / f"grpo-{arm}-s{seed}"
    if not (folder / "segr1_policy.json").is_file():
        spec = ARMS[arm]
        cmd = segr1("train", "grpo", "--config", str(REPO / "recipes/tiny/vision_reasoner.yaml"),
                    "--model_name_or_path", str(base), "--output_dir", str(folder),
                    "--train_data", train_data(args.train_n), "--data_cache_dir", str(out / "data"),
                    "--max_steps", str(args.grpo_steps), "--save_strategy", "no", "--logging_steps", "5",
                    "--seed", str(seed),
                    "--max_completion_length", str(args.max_tokens), "--segmenter", "grabcut",
                    "--reward_funcs", *spec["reward_funcs"],
                    "--reward_weights", *map(str, spec["reward_weights"]))  # fmt: skip
        logger.info("GRPO %s, seed %d: %d steps", arm, seed, args.grpo_steps)
        run(cmd, out / f"{folder.name}.log", args.threads)
    return folder


def heldout(out: Path, n: int) -> Path:
    from segr1.data.synthetic_multi import write_multi_scenes

    manifest = out / "heldout" / "manifest.jsonl"
    if not manifest.is_file():
        write_multi_scenes(n, out / "heldout", seed=EVAL_SEED, **SCENE_SIZES)
    return manifest


def evaluate(out: Path, name: str, model: Path, manifest: Path, args: argparse.Namespace) -> dict[str, Any]:
    folder = out / f"eval-{name}"
    if not (folder / "metrics.json").is_file():
        cmd = segr1("eval", "referring", "--manifest", str(manifest), "--model", str(model), "--segmenter",
                    "grabcut", "--per-instance", "--out", str(folder), "--max-new-tokens", str(args.max_tokens),
                    "--batch-size", "8", "--report-n", "0", "--no-progress", "--device", "cpu")  # fmt: skip
        logger.info("eval %s on %s", name, manifest)
        run(cmd, out / f"eval-{name}.log", args.threads)
    doc = json.loads((folder / "metrics.json").read_text())
    return {**doc["metrics"], **format_validity(folder), "n_scored": doc["n_scored"]}


def format_validity(folder: Path) -> dict[str, float]:
    """Share of answers in VisionReasoner's format: the whole text well formed and every entry valid."""
    from segr1.answer_json import parse_json_answer

    answers = [
        json.loads(line)["answer"] or "" for line in (folder / "samples.jsonl").read_text().splitlines()
    ]
    parsed = [parse_json_answer(a).validity for a in answers]
    n = max(len(parsed), 1)
    return {
        "format_valid": sum(v.structure and v.all_valid for v in parsed) / n,
        "json_valid": sum(v.json for v in parsed) / n,
    }


def seconds_per_step(folder: Path) -> float | None:
    from segr1.train.callbacks import read_log

    final = [r for r in read_log(folder / "log.jsonl") if "train_runtime" in r]
    if not final:
        return None
    return float(final[-1]["train_runtime"]) / max(int(final[-1]["step"]), 1)


COLUMNS = ("giou", "ciou", "inst_miou", "inst_precision50", "inst_recall50", "inst_count_acc", "format_valid")


def table(summary: dict[str, Any]) -> str:
    head = "| policy | train s/step | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, row in summary["policies"].items():
        step = row.get("seconds_per_step")
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else "n/a" for c in COLUMNS]
        lines.append(f"| {name} | {'n/a' if step is None else f'{step:.2f}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/family-miniature"))
    parser.add_argument("--train-n", type=int, default=512, help="training scenes (seed 1)")
    parser.add_argument("--eval-n", type=int, default=200, help="held-out scenes (seed 1000)")
    parser.add_argument("--sft-steps", type=int, default=800)
    parser.add_argument("--grpo-steps", type=int, default=80)
    parser.add_argument("--max-tokens", type=int, default=192, help="completion budget in training and eval")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per child process")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1], help="GRPO seeds (one run per arm each)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = heldout(out, args.eval_n)
    base = sft(out, args)
    models = {"sft": base}
    for arm in ARMS:
        for seed in args.seeds:
            models[f"grpo-{arm}-s{seed}"] = grpo(out, arm, seed, base, args)
    policies = {}
    for name, folder in models.items():
        policies[name] = {"seconds_per_step": None if name == "sft" else seconds_per_step(folder),
                          **evaluate(out, name, folder, manifest, args)}  # fmt: skip
    for arm in ARMS:  # the mean over seeds
        rows = [policies[f"grpo-{arm}-s{seed}"] for seed in args.seeds]
        policies[f"grpo-{arm} (mean)"] = {
            k: sum(r[k] for r in rows) / len(rows)
            for k in rows[0]
            if all(isinstance(r[k], float) for r in rows)
        }
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "train_seed": TRAIN_SEED,
        "eval_seed": EVAL_SEED,
        "sft_seconds_per_step": seconds_per_step(base),
        "policies": policies,
        "wall_s_this_run": round(time.perf_counter() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
