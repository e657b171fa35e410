"""How each evaluation task reads its ground truth and scores predictions.

* ``foreground`` (COD / SOD / DIS and image/mask folder pairs): the ground truth is a mask file read with
  the benchmark convention (8-bit value ``> 128``); the dataset metrics are :class:`segr1.metrics.ForegroundMeter`
  (S-measure, weighted F, MAE, E- and F-measures; plus HCE, mBA and boundary IoU for DIS) on the 0/255
  prediction maps; per sample we keep the S-measure (which orders the report) and the IoU.
* ``referring`` and ``reasoning`` (RefCOCO family, ReasonSeg): the ground truth is a bool mask; the dataset
  metrics are :class:`segr1.metrics.IoUMeter`'s gIoU (mean per-sample IoU) and cIoU (summed intersection
  over summed union), LISA's convention. Pixels of a sample's ignore mask (``meta["ignore"]``, ReasonSeg's
  ``ignore`` regions) are left out of both the intersection and the union, as LISA's
  ``intersectionAndUnionGPU(..., ignore_index=255)`` does: prediction and ground truth are both cleared there
  before scoring.

All masks here are (H, W) bool arrays at the ground-truth size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segr1.data.records import Sample

logger = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("foreground", "referring", "reasoning")


class MissingGroundTruth(ValueError):
    """A sample without a ground-truth mask: it is predicted but cannot be scored."""


@dataclass
class GroundTruth:
    """A sample's ground truth at its own size.

    Attributes:
        mask: (H, W) bool target mask.
        ignore: (H, W) bool pixels to leave out of the scores, or None.
    """

    mask: np.ndarray
    ignore: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) in pixels."""
        return int(self.mask.shape[1]), int(self.mask.shape[0])


def _as_mask(value: Any, what: str) -> np.ndarray:
    """An (H, W) bool mask from a mask file path or an array (bool, or uint8 read as ``> 128``)."""
    if isinstance(value, str | Path):
        from segr1.data.io import read_mask

        return read_mask(value)
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{what} must be an (H, W) mask, got shape {arr.shape}")
    return arr.astype(bool) if arr.dtype == np.bool_ else arr > 128 if arr.dtype == np.uint8 else arr > 0


def read_ground_truth(sample: Sample) -> GroundTruth:
    """The ground truth of ``sample``: its mask (a file or an array) and ``meta["ignore"]`` if any.

    Raises:
        MissingGroundTruth: the sample has no mask.
        OSError: the mask file is missing or cannot be decoded (``segr1.data.io.ImageReadError``).
        ValueError: the ignore mask's shape differs from the mask's.
    """
    if sample.mask is None:
        raise MissingGroundTruth(f"sample {sample.id!r} has no ground-truth mask")
    mask = _as_mask(sample.mask, "ground truth")
    ignore = sample.meta.get("ignore") if isinstance(sample.meta, dict) else None
    if ignore is not None:
        ignore = _as_mask(ignore, "ignore mask")
        if ignore.shape != mask.shape:
            raise ValueError(f"ignore mask of shape {ignore.shape} for a ground truth of shape {mask.shape}")
        if not ignore.any():
            ignore = None
    return GroundTruth(mask, ignore)


def read_sample_image(sample: Sample) -> np.ndarray:
    """The sample's image as (H, W, 3) uint8 RGB (a file is read with EXIF orientation applied).

    Raises:
        OSError: missing or undecodable file (``segr1.data.io.ImageReadError``).
        ValueError, TypeError: an array that is not an image.
    """
    if isinstance(sample.image, np.ndarray):
        from segr1.pipeline import as_rgb_array

        return as_rgb_array(sample.image)
    from segr1.data.io import read_image

    return read_image(sample.image)


class Scorer(Protocol):
    """Per-task scoring (see the module docstring)."""

    task: str
    rank_key: str  # the per-sample score that orders the report's best and worst cases
    metric_keys: tuple[str, ...]  # the order the table prints known metrics in

    def sample_scores(self, pred: np.ndarray, gt: GroundTruth) -> dict[str, float | int]: ...
    def new_meter(self) -> Any: ...
    def update(self, meter: Any, pred: np.ndarray, gt: GroundTruth) -> None: ...


class ForegroundScorer:
    """Foreground task: PySODMetrics-style suite over 0/255 prediction maps; per sample ``sm`` and ``iou``."""

    task = "foreground"
    rank_key = "sm"
    # The column order COD/SOD papers print: S, wF, meanF, meanE, maxE, MAE, maxF, adpE, adpF.
    metric_keys = ("sm", "wfm", "mean_fm", "mean_em", "max_em", "mae", "max_fm", "adp_em", "adp_fm")

    def __init__(self, boundary: bool = False) -> None:
        self.boundary = boundary
        if boundary:  # DIS: human correction effort, mean boundary accuracy, boundary IoU
            self.metric_keys = (*self.metric_keys, "hce", "mba", "mean_biou", "max_biou")

    def sample_scores(self, pred: np.ndarray, gt: GroundTruth) -> dict[str, float | int]:
        from segr1.metrics import iou, s_measure

        return {
            "sm": float(s_measure(pred.astype(np.uint8) * 255, gt.mask)),
            "iou": float(iou(pred, gt.mask)),
        }

    def new_meter(self) -> Any:
        from segr1.metrics import ForegroundMeter

        return ForegroundMeter(boundary=self.boundary)

    def update(self, meter: Any, pred: np.ndarray, gt: GroundTruth) -> None:
        meter.update(pred.astype(np.uint8) * 255, gt.mask)


class IoUScorer:
    """Referring / reasoning tasks: gIoU and cIoU with ignore regions left out; per sample ``iou``,
    ``intersection`` and ``union`` (pixel counts)."""

    rank_key = "iou"
    metric_keys = ("giou", "ciou")

    def __init__(self, task: str = "referring", ignore_regions: bool = True) -> None:
        self.task = task
        self.ignore_regions = ignore_regions  # False: ignore pixels count as background (the Seg-R1 release)

    def _cleared(self, pred: np.ndarray, gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
        if gt.ignore is None or not self.ignore_regions:
            return pred, gt.mask
        keep = ~gt.ignore
        return pred & keep, gt.mask & keep

    def sample_scores(self, pred: np.ndarray, gt: GroundTruth) -> dict[str, float | int]:
        from segr1.metrics import iou

        p, g = self._cleared(pred, gt)
        return {
            "iou": float(iou(p, g)),
            "intersection": int(np.count_nonzero(p & g)),
            "union": int(np.count_nonzero(p | g)),
        }

    def new_meter(self) -> Any:
        from segr1.metrics import IoUMeter

        return IoUMeter()

    def update(self, meter: Any, pred: np.ndarray, gt: GroundTruth) -> None:
        meter.update(*self._cleared(pred, gt))


def make_scorer(task: str, boundary: bool = False, ignore_regions: bool = True) -> Scorer:
    """The scorer of ``task`` (``foreground``, ``referring`` or ``reasoning``); ``boundary`` adds the DIS
    boundary metrics (HCE, mBA, boundary IoU) to the foreground suite; ``ignore_regions=False`` scores
    ReasonSeg's ignore pixels as background (the Seg-R1 release) instead of leaving them out.

    Raises:
        ValueError: unknown task.
    """
    if task == "foreground":
        return ForegroundScorer(boundary)
    if task in ("referring", "reasoning"):
        return IoUScorer(task, ignore_regions)
    raise ValueError(f"unknown evaluation task {task!r}; choose one of {TASKS}")
