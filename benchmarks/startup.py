"""Start-up cost of segr1: from process start to the first mask, split into its stages, in ONE process.

Stages (seconds, measured in this order in a fresh interpreter):

* ``python start``: from just before the parent starts the child process to the child's first line;
* ``import torch``;
* ``import segr1``: ``segr1.pipeline``, ``segr1.policies``, ``segr1.segmenters`` (what ``segr1 segment`` imports
  before it loads models);
* ``segmenter load``: ``load_segmenter(SPEC)`` (GrabCut: starts its worker process in the background);
* ``policy load``: ``load_policy(MODEL)``, with whatever it imports (the ``hf`` backend imports transformers and,
  through its image utilities, torchvision; the ``native`` backend neither);
* ``first mask``: the first ``SegR1Pipeline(image)`` call on ``examples/salient-0.png`` (answer + mask);
* ``beyond torch``: everything after ``import torch`` up to the first mask (the target: <= 2 s on a warm
  cache for the embedded default); ``cpu beyond torch``: the CPU seconds this process spent on it (less
  sensitive than wall time to other work on a shared machine; the GrabCut worker's CPU is not included).

Each ``--model`` (default: the embedded default, i.e. the native backend, and ``hf:default``, the same policy
on transformers) runs ``--repeat`` new child processes, alternating between the models (warm file cache after
the first); the table shows every run, the median per model, whether transformers was imported, and the ratio
of the medians of "beyond torch" against the first model. ``--profile FILE`` writes a cProfile of the first
child's model loading.

    python benchmarks/startup.py                       # default vs hf:default + grabcut, 3 runs each
    python benchmarks/startup.py --repeat 3 --model default --model path/to/checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = (
    "python start",
    "import torch",
    "import segr1",
    "segmenter load",
    "policy load",
    "first mask",
)
_START_ENV = "SEGR1_BENCH_START"


def child(model: str | None, segmenter: str, image: str, profile: str | None) -> dict[str, float]:
    """The measured run; returns seconds per stage."""
    started = float(os.environ.get(_START_ENV, "nan"))  # the parent's time.time() just before it started us
    marks = {"python start": time.time() - started}
    t = time.perf_counter()
    import torch  # noqa: F401

    marks["import torch"] = time.perf_counter() - t
    cpu = time.process_time()
    t = time.perf_counter()
    from segr1.pipeline import SegR1Pipeline
    from segr1.policies import load_policy
    from segr1.segmenters import load_segmenter

    marks["import segr1"] = time.perf_counter() - t
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t = time.perf_counter()
    seg = load_segmenter(segmenter)
    marks["segmenter load"] = time.perf_counter() - t
    t = time.perf_counter()
    policy = load_policy(model)
    marks["policy load"] = time.perf_counter() - t
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    t = time.perf_counter()
    from PIL import Image

    pipeline = SegR1Pipeline(policy, seg)
    result = pipeline(Image.open(image))
    marks["first mask"] = time.perf_counter() - t
    marks["cpu beyond torch"] = time.process_time() - cpu  # this process's CPU seconds (all its threads)
    marks["answer"] = result.answer  # type: ignore[assignment]
    marks["policy"] = policy.name  # type: ignore[assignment]
    marks["transformers imported"] = "transformers" in sys.modules  # type: ignore[assignment]
    return marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="policy spec, repeatable (default: 'default' and 'hf:default', the embedded policy on both backends)",
    )
    parser.add_argument("--segmenter", default="grabcut")
    parser.add_argument("--image", default=str(REPO / "examples" / "salient-0.png"))
    parser.add_argument("--repeat", type=int, default=3, help="child processes per model (default 3)")
    parser.add_argument("--profile", default=None, metavar="FILE", help="cProfile of the first run's loading")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        (model,) = args.model or [None]
        print(
            json.dumps(child(None if model == "default" else model, args.segmenter, args.image, args.profile))
        )
        return 0
    models = args.model or ["default", "hf:default"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    runs: dict[str, list[dict]] = {m: [] for m in models}
    for i in range(args.repeat):
        for model in models:  # alternating, so that load changes on a shared machine hit every model alike
            cmd = [sys.executable, __file__, "--child", "--segmenter", args.segmenter, "--image", args.image]
            cmd += ["--model", model]
            if args.profile and i == 0 and model == models[0]:
                cmd += ["--profile", args.profile]
            wall = time.perf_counter()
            env[_START_ENV] = repr(time.time())
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            runs[model].append(
                {**json.loads(out.strip().splitlines()[-1]), "process": time.perf_counter() - wall}
            )
    header = ["model", "run", *STAGES, "beyond torch", "cpu beyond torch", "whole process"]
    print("| " + " | ".join(header) + " |")
    print("|---|---|" + "---:|" * (len(header) - 2))
    medians: dict[str, list[float]] = {}
    for model in models:
        rows = []
        for i, r in enumerate(runs[model]):
            beyond = sum(r[s] for s in STAGES[2:])
            rows.append([r[s] for s in STAGES] + [beyond, r["cpu beyond torch"], r["process"]])
            print(f"| {model} | {i + 1} | " + " | ".join(f"{v:.2f}" for v in rows[-1]) + " |")
        medians[model] = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(f"| {model} | median | " + " | ".join(f"{v:.2f}" for v in medians[model]) + " |")
    beyond_col = len(STAGES)
    base = medians[models[0]][beyond_col]
    for model in models:
        r = runs[model][0]
        answers = {x["answer"] for x in runs[model]}
        print(
            f"{model}: policy {r['policy']}, transformers imported: {'yes' if r['transformers imported'] else 'no'}, "
            f"beyond torch {medians[model][beyond_col]:.2f} s (x{medians[model][beyond_col] / base:.2f} of "
            f"{models[0]}), answer (all runs {'identical' if len(answers) == 1 else 'DIFFER'}): {r['answer']}"
        )
    if len({runs[m][0]["answer"] for m in models}) > 1:
        print("the models' answers DIFFER")
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
