"""Start-up cost of segr1: from process start to the first mask, split into its stages, in ONE process.

Stages (seconds, measured in this order in a fresh interpreter):

* ``python start``: from just before the parent starts the child process to the child's first line;
* ``import torch``;
* ``import segr1``: ``segr1.pipeline``, ``segr1.policies``, ``segr1.segmenters`` (what ``segr1 segment`` imports
  before it loads models);
* ``import transformers``: the transformers modules the ``hf`` policy needs (``AutoProcessor``,
  ``AutoModelForImageTextToText``), which import torchvision and, through ``torchvision.ops``, ``torch._dynamo``;
* ``segmenter load``: ``load_segmenter(SPEC)`` (GrabCut: starts its worker process in the background);
* ``policy load``: ``load_policy(MODEL)`` after those imports (default: the embedded policy);
* ``first mask``: the first ``SegR1Pipeline(image)`` call on ``examples/salient-0.png`` (answer + mask);
* ``beyond torch``: everything after ``import torch`` up to the first mask (the target: <= 2 s on a warm
  cache for the embedded default); ``cpu beyond torch``: the CPU seconds this process spent on it (less
  sensitive than wall time to other work on a shared machine; the GrabCut worker's CPU is not included).

Each ``--repeat`` runs a new child process (warm file cache after the first); the table shows every run and
the median. ``--profile FILE`` writes a cProfile of the first child's model loading.

    python benchmarks/startup.py                       # embedded default + grabcut, 5 runs
    python benchmarks/startup.py --repeat 3 --segmenter grabcut --model path/to/checkpoint
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
    "import transformers",
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
    t = time.perf_counter()
    import transformers.models.auto.modeling_auto  # noqa: F401  (what the hf policy imports, torchvision too)
    import transformers.models.auto.processing_auto  # noqa: F401

    marks["import transformers"] = time.perf_counter() - t
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
    return marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="policy spec (default: the embedded policy)")
    parser.add_argument("--segmenter", default="grabcut")
    parser.add_argument("--image", default=str(REPO / "examples" / "salient-0.png"))
    parser.add_argument("--repeat", type=int, default=5, help="child processes to run (default 5)")
    parser.add_argument("--profile", default=None, metavar="FILE", help="cProfile of the first run's loading")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.segmenter, args.image, args.profile)))
        return 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    runs = []
    for i in range(args.repeat):
        cmd = [sys.executable, __file__, "--child", "--segmenter", args.segmenter, "--image", args.image]
        if args.model:
            cmd += ["--model", args.model]
        if args.profile and i == 0:
            cmd += ["--profile", args.profile]
        wall = time.perf_counter()
        env[_START_ENV] = repr(time.time())
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        runs.append({**json.loads(out.strip().splitlines()[-1]), "process": time.perf_counter() - wall})
    header = ["run", *STAGES, "beyond torch", "cpu beyond torch", "whole process"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---:|" * len(header))
    rows = []
    for i, r in enumerate(runs):
        beyond = sum(r[s] for s in STAGES[2:])
        rows.append([r[s] for s in STAGES] + [beyond, r["cpu beyond torch"], r["process"]])
        print(f"| {i + 1} | " + " | ".join(f"{v:.2f}" for v in rows[-1]) + " |")
    medians = [statistics.median(col) for col in zip(*rows, strict=True)]
    print("| median | " + " | ".join(f"{v:.2f}" for v in medians) + " |")
    answers = {r["answer"] for r in runs}
    print(f"answer (all runs {'identical' if len(answers) == 1 else 'DIFFER'}): {runs[0]['answer']}")
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
