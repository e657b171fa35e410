"""Trainer callbacks: a JSON-lines log of every logging step (rewards, mean mask IoU, loss, ...).

TRL's ``GRPOTrainer`` already logs ``reward``, ``reward_std``, ``rewards/<name>/mean`` and ``/std`` per reward
function, and whatever rewards report through ``log_metric`` (`segr1.rewards.SegmentationReward` reports
``<name>/mask_iou``, ``<name>/s_measure`` and ``<name>/empty``). `JsonlLogCallback` appends each of these log
dicts, with the step, to ``<output_dir>/log.jsonl`` on the main process, so curves can be plotted without
TensorBoard or W&B, and prints a one-line summary.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"
_SUMMARY_KEYS = ("loss", "reward", "mask_iou", "format", "learning_rate", "kl", "mean_token_accuracy")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl``; when a resumed run re-logged a step, the latest record of it wins."""
    by_step: dict[tuple[int, bool], dict[str, Any]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            by_step[(int(rec.get("step", 0)), "train_runtime" in rec)] = rec
    return [by_step[k] for k in sorted(by_step)]


class JsonlLogCallback(TrainerCallback):
    """Append ``{"step": N, "time": unix, **logs}`` to ``<output_dir>/log.jsonl`` (or ``path``) on each log."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102 - transformers' signature
        if not logs or not state.is_world_process_zero:
            return
        path = self.path or Path(args.output_dir) / LOG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"step": state.global_step, "time": round(time.time(), 3)}
        record.update({k: _clean(v) for k, v in logs.items()})
        with path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        shown = {
            k: v
            for k, v in logs.items()
            if isinstance(v, (int, float)) and any(s in k for s in _SUMMARY_KEYS)
        }
        if shown:
            logger.info(
                "step %d: %s", state.global_step, ", ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items()))
            )
