"""Segmentation metrics that match the field's reference implementations.

Foreground suite (COD / SOD / DIS tables; PySODMetrics' conventions: min-max normalised prediction,
uint8 ground truth > 128, bool ground truth taken as is):

* per image: :func:`s_measure`, :func:`weighted_f_measure`, :func:`mae`, :func:`e_measure_curve`,
  :func:`f_measure_curve`, :func:`adaptive_e_measure`, :func:`adaptive_f_measure`, all at once with
  :func:`foreground_scores`; DIS boundary metrics :func:`human_correction_effort`,
  :func:`mean_boundary_accuracy`, :func:`boundary_iou_curve`;
* over a dataset: :class:`ForegroundMeter` (``update`` / ``compute`` / ``merge``).

Referring / reasoning segmentation: :func:`iou` and :class:`IoUMeter` (gIoU, cIoU; LISA's convention).

Predictions are (H, W) uint8 maps in [0, 255], float maps in [0, 1] or bool masks; ground truths are (H, W)
bool or uint8 masks of the same size.
"""

from segr1.metrics.boundary import boundary_iou_curve, human_correction_effort, mean_boundary_accuracy
from segr1.metrics.foreground import (
    ForegroundScores,
    adaptive_e_measure,
    adaptive_f_measure,
    e_measure_curve,
    f_measure_curve,
    foreground_scores,
    mae,
)
from segr1.metrics.iou import IoUMeter, intersection_union, iou
from segr1.metrics.meters import BOUNDARY_KEYS, FOREGROUND_KEYS, ForegroundMeter
from segr1.metrics.structure import s_measure
from segr1.metrics.weighted import weighted_f_measure

__all__ = [
    "BOUNDARY_KEYS",
    "FOREGROUND_KEYS",
    "ForegroundMeter",
    "ForegroundScores",
    "IoUMeter",
    "adaptive_e_measure",
    "adaptive_f_measure",
    "boundary_iou_curve",
    "e_measure_curve",
    "f_measure_curve",
    "foreground_scores",
    "human_correction_effort",
    "intersection_union",
    "iou",
    "mae",
    "mean_boundary_accuracy",
    "s_measure",
    "weighted_f_measure",
]
