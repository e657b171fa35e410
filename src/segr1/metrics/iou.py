"""Mask IoU for referring / reasoning segmentation: per-sample IoU, gIoU and cIoU (LISA's convention).

* ``iou(pred, gt)`` = |pred & gt| / |pred | gt|; an empty prediction on an empty target is 1.0.
* gIoU = the mean of per-sample IoUs; cIoU = total intersection / total union over the dataset (1.0 when
  every union is empty). LISA adds 1e-5 / 1e-10 to the unions; here the ratios are exact.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from segr1.metrics._exact import fixed_mean, to_fixed
from segr1.metrics._inputs import check_mask

logger = logging.getLogger(__name__)


def intersection_union(pred_mask: np.ndarray, gt_mask: np.ndarray) -> tuple[int, int]:
    """(|pred & gt|, |pred | gt|) in pixels.

    Args:
        pred_mask: (H, W) bool predicted mask.
        gt_mask: (H, W) bool target mask, same size.
    """
    pred_mask = check_mask(pred_mask, "pred_mask")
    gt_mask = check_mask(gt_mask, "gt_mask")
    if pred_mask.shape != gt_mask.shape:
        raise ValueError(f"pred_mask {pred_mask.shape} and gt_mask {gt_mask.shape} sizes differ")
    inter = int(np.count_nonzero(pred_mask & gt_mask))
    union = int(np.count_nonzero(pred_mask)) + int(np.count_nonzero(gt_mask)) - inter
    return inter, union


def iou(pred_mask: np.ndarray, gt_mask: np.ndarray) -> float:
    """IoU of two (H, W) bool masks in [0, 1]; 1.0 when both are empty."""
    inter, union = intersection_union(pred_mask, gt_mask)
    return inter / union if union else 1.0


class IoUMeter:
    """gIoU and cIoU over a dataset; exactly mergeable across processes.

    Example::

        meter = IoUMeter()
        for pred, gt in pairs:      # (H, W) bool masks
            meter.update(pred, gt)
        meter.compute()             # {"giou": ..., "ciou": ...}
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every sample."""
        self.count = 0
        self.intersection = 0
        self.union = 0
        self._iou_sum = 0  # fixed point, see segr1.metrics._exact

    def update(self, pred_mask: np.ndarray, gt_mask: np.ndarray) -> float:
        """Add one pair of (H, W) bool masks; returns its IoU."""
        inter, union = intersection_union(pred_mask, gt_mask)
        value = inter / union if union else 1.0
        self.count += 1
        self.intersection += inter
        self.union += union
        self._iou_sum += to_fixed(value)
        return value

    def merge(self, other: IoUMeter) -> IoUMeter:
        """Add another meter's samples to this one (in place) and return self."""
        if not isinstance(other, IoUMeter):
            raise TypeError(f"can only merge an IoUMeter, got {type(other).__name__}")
        self.count += other.count
        self.intersection += other.intersection
        self.union += other.union
        self._iou_sum += other._iou_sum
        return self

    def compute(self) -> dict[str, float]:
        """``{"giou": mean per-sample IoU, "ciou": total intersection / total union}``; NaN when empty."""
        if self.count == 0:
            return {"giou": float("nan"), "ciou": float("nan")}
        ciou = self.intersection / self.union if self.union else 1.0
        return {"giou": fixed_mean(self._iou_sum, self.count), "ciou": ciou}

    def state_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot."""
        return {
            "count": self.count,
            "intersection": self.intersection,
            "union": self.union,
            "iou_sum": self._iou_sum,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> IoUMeter:
        """Rebuild a meter from :meth:`state_dict`."""
        meter = cls()
        meter.count = int(state["count"])
        meter.intersection = int(state["intersection"])
        meter.union = int(state["union"])
        meter._iou_sum = int(state["iou_sum"])
        return meter

    def __repr__(self) -> str:
        return f"IoUMeter(count={self.count})"
