"""Benchmark evaluation: ``segr1 eval foreground|referring|reasoning``.

* :mod:`segr1.evaluate.runner` — :func:`evaluate`: the batched, resumable loop, sharded across processes
  under ``accelerate launch``; failure accounting.
* :mod:`segr1.evaluate.tasks` — ground truth and scoring per task (foreground suite; gIoU/cIoU with ignore
  regions).
* :mod:`segr1.evaluate.sources` — which samples: a named benchmark, a folder pair or a manifest.
* :mod:`segr1.evaluate.records` — the run's files (JSONL records, atomic writes, resume checks).
* :mod:`segr1.evaluate.summary` and :mod:`segr1.evaluate.report` — metrics.json, the table, report.html.

Usage and the output files are documented in ``docs/evaluation.md``.
"""

from segr1.evaluate.runner import EvalConfig, default_state, evaluate
from segr1.evaluate.sources import load_eval_samples
from segr1.evaluate.tasks import GroundTruth, make_scorer, read_ground_truth

__all__ = [
    "EvalConfig",
    "GroundTruth",
    "default_state",
    "evaluate",
    "load_eval_samples",
    "make_scorer",
    "read_ground_truth",
]
