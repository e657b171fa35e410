"""Weighted F-measure (Margolin et al., CVPR 2014) with PySODMetrics' exact conventions.

``E = |pred - gt|``; background errors take the error of the nearest foreground pixel (``Et``), which is
smoothed by MATLAB's ``fspecial('gaussian', 7, 5)`` (``EA``); inside the foreground the error is
``min(E, EA)``; background errors are weighted by ``2 - 0.5 ** (distance to the foreground / 5)``.
``Q = (1 + beta) R P / (R + beta P + eps)`` with weighted recall R and precision P (beta = 1).

Speed-ups that keep the values: the background distances come from OpenCV's exact Euclidean transform
(float32, whose integer squared distances are recovered exactly for images up to a 2048-pixel diagonal;
SciPy beyond); the nearest-foreground lookup is needed only within 3 pixels of the foreground, so it is a short
search over the 56 offsets within reach, in the order that reproduces SciPy's tie-breaking (nearest, then
smallest column, then smallest row); the 7 x 7 Gaussian runs as a separable filter on the foreground's
bounding box.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

from segr1.metrics._inputs import EPS, Prepared

logger = logging.getLogger(__name__)

_DECAY = math.log(0.5) / 5  # background weight 2 - exp(_DECAY * distance)
_SIGMA, _RADIUS = 5.0, 3  # fspecial('gaussian', 7, 5)
_CROP_MARGIN = _RADIUS + 1
_EXACT_F32_DIAG2 = 1 << 22  # squared distances below 2**22 survive a float32 sqrt round trip


def _gaussian_1d(radius: int, sigma: float) -> np.ndarray:
    """Normalised 1-D factor of MATLAB's fspecial('gaussian'); its outer square is the 2-D kernel."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


_KERNEL_1D = _gaussian_1d(_RADIUS, _SIGMA)


def weighted_f_measure(pred: np.ndarray, gt: np.ndarray, beta: float = 1.0) -> float:
    """Weighted F-measure of one prediction.

    Args:
        pred: (H, W) prediction map: uint8 in [0, 255], float in [0, 1], or bool.
        gt: (H, W) ground truth: bool, or uint8 (foreground where > 128).
        beta: PySODMetrics' weight (used as ``1 + beta``, not ``1 + beta**2``; the field uses 1).

    Returns:
        The weighted F-measure in [0, 1]; 0 for an empty ground truth (as PySODMetrics).
    """
    return weighted_f_of(Prepared(pred, gt), beta)


def weighted_f_of(prep: Prepared, beta: float = 1.0) -> float:
    """Weighted F-measure of a prepared pair."""
    gt, n_fg = prep.gt, prep.n_fg
    if n_fg == 0:
        return 0.0
    error = prep.abs_error()
    weight = distance_to_foreground(gt)
    weight *= _DECAY
    np.exp(weight, out=weight)
    np.subtract(2.0, weight, out=weight)  # exactly 1 on the foreground (distance 0)
    weight *= error
    fg_error_sum, fg_min_sum = _foreground_sums(error, gt)
    fpw = float(weight.sum()) - fg_error_sum  # weighted background errors
    tpw = n_fg - fg_min_sum
    recall = 1 - fg_min_sum / n_fg
    precision = tpw / (tpw + fpw + EPS)
    return float((1 + beta) * recall * precision / (recall + beta * precision + EPS))


def distance_to_foreground(gt: np.ndarray) -> np.ndarray:
    """(H, W) float64 Euclidean distance of every pixel to the nearest True pixel of ``gt`` (0 on it).

    Bit-identical to ``scipy.ndimage.distance_transform_edt(~gt)`` when gt has a True pixel.
    """
    h, w = gt.shape
    if h * h + w * w > _EXACT_F32_DIAG2:
        return distance_transform_edt(~gt)
    d = cv2.distanceTransform((~gt).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE).astype(np.float64)
    np.square(d, out=d)
    np.rint(d, out=d)  # the exact integer squared distance
    return np.sqrt(d, out=d)


def _foreground_sums(error: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(sum of E, sum of min(E, EA)) over the foreground, working on its bounding box only."""
    h, w = gt.shape
    rows = np.flatnonzero(gt.any(axis=1))
    cols = np.flatnonzero(gt.any(axis=0))
    r0, r1 = max(int(rows[0]) - _CROP_MARGIN, 0), min(int(rows[-1]) + _CROP_MARGIN + 1, h)
    c0, c1 = max(int(cols[0]) - _CROP_MARGIN, 0), min(int(cols[-1]) + _CROP_MARGIN + 1, w)
    sub_gt, sub_error = gt[r0:r1, c0:c1], error[r0:r1, c0:c1]
    spread = np.array(sub_error)  # Et: background pixels near the foreground take their nearest one's error
    band_rows, band_cols, near_rows, near_cols = _nearest_foreground_in_band(sub_gt)
    spread[band_rows, band_cols] = sub_error[near_rows, near_cols]
    smoothed = cv2.sepFilter2D(
        spread, cv2.CV_64F, _KERNEL_1D, _KERNEL_1D, borderType=cv2.BORDER_CONSTANT
    )  # zero outside the image, like scipy's convolve(mode="constant"); the box margin covers the rest
    fg_error = sub_error[sub_gt]
    fg_smoothed = smoothed[sub_gt]
    return float(fg_error.sum()), float(np.minimum(fg_error, fg_smoothed).sum())


def _band_offsets() -> tuple[np.ndarray, np.ndarray]:
    """(dr, dc) offsets with 0 < dr^2 + dc^2 <= 18 in the order scipy's feature transform prefers them."""
    reach = 2 * _RADIUS * _RADIUS  # a pixel within Chebyshev distance 3 has a foreground pixel this close
    offsets = [
        (dr, dc)
        for dr in range(-_CROP_MARGIN, _CROP_MARGIN + 1)
        for dc in range(-_CROP_MARGIN, _CROP_MARGIN + 1)
        if 0 < dr * dr + dc * dc <= reach
    ]
    # nearest first; among equally near pixels scipy's distance_transform_edt returns the smallest column,
    # then the smallest row (checked against it in tests/test_metrics.py)
    offsets.sort(key=lambda o: (o[0] * o[0] + o[1] * o[1], o[1], o[0]))
    dr, dc = np.array(offsets).T
    return dr, dc


_OFFSET_ROWS, _OFFSET_COLS = _band_offsets()
_BAND_KERNEL = np.ones((2 * _RADIUS + 1, 2 * _RADIUS + 1), dtype=np.uint8)


def _nearest_foreground_in_band(gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Background pixels within 3 pixels (Chebyshev) of the foreground and their nearest foreground pixel.

    The nearest pixel is the one ``scipy.ndimage.distance_transform_edt(~gt, return_indices=True)`` picks
    (MATLAB's ``bwdist`` index). Returns (band rows, band cols, nearest rows, nearest cols).
    """
    band = cv2.dilate(gt.view(np.uint8), _BAND_KERNEL).view(np.bool_) & ~gt
    band_rows, band_cols = np.nonzero(band)
    pad = _CROP_MARGIN
    padded = np.pad(gt, pad)
    stride = padded.shape[1]
    flat_gt = padded.ravel()
    start = (band_rows + pad) * stride + (band_cols + pad)
    nearest = np.empty_like(start)
    todo = np.arange(start.size)
    for dr, dc in zip(_OFFSET_ROWS.tolist(), _OFFSET_COLS.tolist(), strict=True):
        candidate = start[todo] + (dr * stride + dc)
        hit = flat_gt[candidate]
        nearest[todo[hit]] = candidate[hit]
        todo = todo[~hit]
        if todo.size == 0:
            break
    assert todo.size == 0, "every band pixel has a foreground pixel within its reach"
    near_rows, near_cols = np.divmod(nearest, stride)
    return band_rows, band_cols, near_rows - pad, near_cols - pad
