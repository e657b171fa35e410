"""DIS boundary metrics: human correction effort (HCE), mean boundary accuracy (mBA), boundary IoU.

* **HCE** (Qin et al., ECCV 2022, DIS5K's evaluation; PySODMetrics' ``HumanCorrectionEffortMeasure``):
  the number of polygon control points (Ramer-Douglas-Peucker, epsilon 2) and independent regions a person
  needs to fix the false positives and negatives, after relaxing them by 5 pixels and keeping the ground
  truth skeleton. The prediction is binarised as PySODMetrics does (normalised ``pred > 0.5``; DIS5K's own
  script uses raw ``pred > 128``, which differs only for maps that do not span 0..255).
* **mBA** (CascadePSP, as in the DIS / BiRefNet / Seg-R1 evaluators): the accuracy of ``pred > 128`` inside
  the ground truth's morphological-gradient band, averaged over five disk radii from 1 to ``(H + W) / 300``.
  A band that is empty (empty or full ground truth) counts as accuracy 1 (the evaluators divide by zero).
* **Boundary IoU** (Cheng et al., CVPR 2021, as the BiRefNet / Seg-R1 evaluators compute it): the inner
  boundary of width ``d = max(1, round(0.02 * diagonal))`` of the quantised prediction (grey-level:
  ``q - erode(q)``) against the ground truth's, IoU = TP / (|G| + FP) at each of 256 thresholds (entry i:
  threshold 255 - i), |G| at least 1. Its mean and max over the dataset-averaged curve are reported.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from segr1.metrics._inputs import Prepared, joint_histogram

logger = logging.getLogger(__name__)

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=np.uint8)  # skimage.morphology.disk(1)
MBA_STEPS = 5


def human_correction_effort(pred: np.ndarray, gt: np.ndarray, relax: int = 5, epsilon: float = 2.0) -> int:
    """HCE of one prediction (lower is better).

    Args:
        pred: (H, W) prediction map: uint8 in [0, 255], float in [0, 1], or bool.
        gt: (H, W) ground truth: bool, or uint8 (foreground where > 128).
        relax: pixels of tolerance around the ground truth / prediction boundaries.
        epsilon: RDP tolerance in pixels for counting polygon control points.
    """
    return hce_of(Prepared(pred, gt), relax, epsilon)


def mean_boundary_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """mBA of one prediction in [0, 1]; pred binarised at > 128 on the uint8 scale. Args as HCE's."""
    return mba_of(Prepared(pred, gt))


def boundary_iou_curve(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """(256,) boundary IoU at each threshold (entry i: ``floor(pred * 255)`` boundary >= 255 - i)."""
    return boundary_iou_of(Prepared(pred, gt), dilation_ratio)


def hce_of(prep: Prepared, relax: int = 5, epsilon: float = 2.0) -> int:
    """HCE of a prepared pair."""
    gt = prep.gt
    pred = (prep.lut > 0.5)[prep.codes] if prep.codes is not None else prep.values > 0.5
    skeleton = _skeleton(gt)
    tp = gt & pred
    fp = pred & ~gt
    fn = gt & ~pred
    eroded_union = cv2.erode((gt | pred).view(np.uint8), _CROSS, iterations=relax).view(np.bool_)

    fp_relaxed = fp & eroded_union
    for _ in range(relax):
        fp_relaxed = _dilate(fp_relaxed) & ~gt
    fp_relaxed &= fp

    fn_relaxed = fn & eroded_union
    for _ in range(relax):
        fn_relaxed = _dilate(fn_relaxed) & ~pred
    fn_relaxed &= fn
    fn_relaxed |= skeleton & ~tp  # keep the structure: skeleton pixels that were missed

    fp_cost = _correction_cost(fp_relaxed, tp | fn_relaxed, epsilon)
    fn_cost = _correction_cost(fn_relaxed, ~(tp | fp_relaxed | fn_relaxed), epsilon)
    return fp_cost + fn_cost


def mba_of(prep: Prepared) -> float:
    """mBA of a prepared pair."""
    gt = prep.gt.view(np.uint8)
    correct = ~(prep.raw_high ^ prep.gt)
    h, w = gt.shape
    max_radius = (w + h) / 300
    accuracy: dict[int, float] = {}
    total = 0.0
    for step in range(MBA_STEPS):
        radius = 1 + int((max_radius - 1) / MBA_STEPS * step)
        if radius not in accuracy:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            band = cv2.morphologyEx(gt, cv2.MORPH_GRADIENT, kernel).view(np.bool_)
            n_band = int(np.count_nonzero(band))
            accuracy[radius] = np.count_nonzero(band & correct) / n_band if n_band else 1.0
        total += accuracy[radius]
    return total / MBA_STEPS


def boundary_iou_of(prep: Prepared, dilation_ratio: float = 0.02) -> np.ndarray:
    """Boundary IoU curve of a prepared pair."""
    h, w = prep.shape
    width = max(1, int(round(dilation_ratio * math.sqrt(h * h + w * w))))
    kernel = np.ones((2 * width + 1, 2 * width + 1), dtype=np.uint8)

    def inner_boundary(image: np.ndarray) -> np.ndarray:
        eroded = cv2.erode(image, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        return image - eroded  # the image border counts as boundary (zero outside)

    pred_boundary = inner_boundary(prep.quantised_codes())
    gt_boundary = inner_boundary(prep.gt.view(np.uint8)).view(np.bool_)
    hist = joint_histogram(pred_boundary, gt_boundary)
    fp = np.cumsum(hist[0][::-1])
    tp = np.cumsum(hist[1][::-1])
    return tp / (max(int(np.count_nonzero(gt_boundary)), 1) + fp)


def _dilate(mask: np.ndarray) -> np.ndarray:
    return cv2.dilate(mask.view(np.uint8), _CROSS).view(np.bool_)


def _skeleton(gt: np.ndarray) -> np.ndarray:
    """skimage's skeleton of gt, computed on its bounding box (with a zero margin) for speed."""
    try:
        from skimage.morphology import skeletonize
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("HCE needs scikit-image for the skeleton: pip install scikit-image") from exc
    out = np.zeros_like(gt)
    if not gt.any():
        return out
    rows = np.flatnonzero(gt.any(axis=1))
    cols = np.flatnonzero(gt.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    padded = np.pad(gt[r0:r1, c0:c1], 1)
    out[r0:r1, c0:c1] = skeletonize(padded)[1:-1, 1:-1]
    return out


def _correction_cost(mask: np.ndarray, condition: np.ndarray, epsilon: float) -> int:
    """Control points of the boundary pieces of ``mask`` that touch ``condition``, plus untouched regions.

    A contour point counts when the (cross-dilated) condition holds there and no earlier contour point sat
    on the same pixel; consecutive counted points form a piece (the first and last piece of a contour join
    when they are 8-neighbours); each piece is simplified with RDP; a connected region of ``mask`` none of
    whose contour points counted is one more independent correction.
    """
    if not mask.any():
        return 0
    mask_u8 = mask.view(np.uint8)
    h, w = mask.shape
    near = cv2.dilate(condition.view(np.uint8), _CROSS).view(np.bool_).ravel()
    contours, _ = cv2.findContours(mask_u8, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    n_labels, labels = cv2.connectedComponents(mask_u8, connectivity=8)
    points = np.concatenate([c.reshape(-1, 2) for c in contours])  # (P, 2) x, y
    owner = np.repeat(np.arange(len(contours)), [len(c) for c in contours])
    flat = points[:, 1].astype(np.int64) * w + points[:, 0]
    first = np.zeros(len(flat), dtype=bool)
    first[np.unique(flat, return_index=True)[1]] = True
    kept = np.flatnonzero(first & near[flat])
    independent = (n_labels - 1) - len(np.unique(labels.ravel()[flat[kept]]))
    if kept.size == 0:
        return independent
    breaks = np.flatnonzero((np.diff(kept) != 1) | (np.diff(owner[kept]) != 0)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [kept.size]])
    run_owner = owner[kept[starts]]
    total = 0
    group_starts = np.flatnonzero(np.concatenate([[True], run_owner[1:] != run_owner[:-1]]))
    group_ends = np.concatenate([group_starts[1:], [len(starts)]])
    for g0, g1 in zip(group_starts, group_ends, strict=True):
        pieces = [points[kept[starts[i] : ends[i]]] for i in range(g0, g1)]
        if len(pieces) > 1:
            dx, dy = np.abs(pieces[0][0] - pieces[-1][-1])
            if max(dx, dy) == 1:  # 8-neighbours: the contour's first and last pieces are one piece
                pieces[-1] = np.concatenate([pieces[-1], pieces[0][::-1]])
                del pieces[0]
        for piece in pieces:
            total += len(cv2.approxPolyDP(piece.reshape(-1, 1, 2), epsilon, False))
    return total + independent
