"""Per-instance scoring (``segr1 eval ... --per-instance``): predicted objects matched to ground-truth objects.

The union of a prediction's instances is scored as always (gIoU / cIoU, the foreground suite). With
per-instance scoring each sample's predicted instance masks (`segr1.pipeline.SegResult.instances`, resized to
the ground truth) are also matched one-to-one with its ground-truth instances by the Hungarian algorithm on mask
IoU (`segr1.instances.mask_iou_matrix` + `match_instances`). Ground-truth instances come from the sample's
``meta["instances"]`` (an instance map: a path, PNG bytes or an array; the synthetic multi-object scenes have
one); a sample without one is a single object, its mask (RefCOCO, ReasonSeg).

Per sample, the record keeps ``instances``: ``n_pred`` (M), ``n_gt`` (N) and ``ious`` (the matched IoU of each
ground-truth object, 0 when it is unmatched). The dataset metrics, computed from the records only (so a resumed
run gives the same numbers), are:

* ``inst_miou``: mean over samples of (sum of matched IoUs) / max(M, N) -- a missing or an extra object costs as
  an object with IoU 0 (samples with M = N = 0 are left out);
* ``inst_precision50`` / ``inst_recall50`` / ``inst_f1_50``: matched pairs with IoU > 0.5 over all predicted /
  all ground-truth objects of the dataset, and their harmonic mean;
* ``inst_count_acc``: fraction of samples whose prediction has as many objects as the ground truth.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from segr1.data.records import Sample

logger = logging.getLogger(__name__)

METRIC_KEYS: tuple[str, ...] = (
    "inst_miou",
    "inst_precision50",
    "inst_recall50",
    "inst_f1_50",
    "inst_count_acc",
)
HIT_IOU = 0.5


def ground_truth_instances(sample: Sample, mask: np.ndarray) -> list[np.ndarray]:
    """The sample's ground-truth objects as (H, W) bool masks: its ``meta["instances"]`` map's objects, else its
    (H, W) bool ``mask`` as one object (none when the mask is empty). Raises ValueError / OSError for an
    unreadable map or one whose size differs from the mask's."""
    from segr1.instances import decode_instance_map, instance_masks

    meta = sample.meta if isinstance(sample.meta, dict) else {}
    value = meta.get("instances")
    if value is None:
        return [mask] if mask.any() else []
    instance_map = decode_instance_map(value)
    if instance_map.shape != mask.shape:
        raise ValueError(
            f"instance map of shape {instance_map.shape} for a ground truth of shape {mask.shape}"
        )
    return instance_masks(instance_map)[1]


def instance_scores(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray]) -> dict[str, Any]:
    """``{"n_pred": M, "n_gt": N, "ious": [matched IoU of each ground-truth object]}`` for M predicted and N
    ground-truth (H, W) masks of one sample (same size); unmatched ground-truth objects get 0."""
    from segr1.instances import mask_iou_matrix, match_instances

    ious = [0.0] * len(gt)
    if pred and gt:
        matrix = mask_iou_matrix(list(pred), list(gt))
        for r, c in match_instances(matrix):
            ious[c] = round(float(matrix[r, c]), 6)
    return {"n_pred": len(pred), "n_gt": len(gt), "ious": ious}


def instance_metrics(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The dataset metrics (module docstring) over the records that hold ``instances`` scores; None where
    nothing could be counted."""
    per_sample, counts, n_pred, n_gt, hits = [], [], 0, 0, 0
    for rec in records:
        inst = rec.get("instances")
        if not isinstance(inst, dict):
            continue
        m, n, ious = int(inst["n_pred"]), int(inst["n_gt"]), [float(v) for v in inst["ious"]]
        n_pred, n_gt = n_pred + m, n_gt + n
        hits += sum(v > HIT_IOU for v in ious)
        counts.append(m == n)
        if max(m, n):
            per_sample.append(sum(ious) / max(m, n))
    precision = hits / n_pred if n_pred else None
    recall = hits / n_gt if n_gt else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else (0.0 if precision is not None and recall is not None else None)
    )
    return {
        "inst_miou": float(np.mean(per_sample)) if per_sample else None,
        "inst_precision50": precision,
        "inst_recall50": recall,
        "inst_f1_50": f1,
        "inst_count_acc": float(np.mean(counts)) if counts else None,
    }
