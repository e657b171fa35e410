"""S-measure (structure measure; Fan et al., ICCV 2017) with PySODMetrics' exact conventions.

``S = alpha * S_object + (1 - alpha) * S_region`` (alpha = 0.5), clipped at 0. An empty ground truth gives
``1 - mean(pred)``, a full one ``mean(pred)``. ``S_region`` splits both maps at the ground-truth centroid
(PySODMetrics' rounding: ``round(mean index) + 1``) into four quadrants and area-weights their SSIM.

For a uint8/bool prediction everything is computed from one (level, gt) histogram per quadrant, a single
pass over the image; a float prediction is handled directly on the pixels.

Deliberate difference: when the centroid rounds onto the last row or column a quadrant is empty (weight
0). PySODMetrics then returns NaN (the mean of an empty array); here the empty quadrant contributes 0.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from segr1.metrics._inputs import EPS, Prepared, binary_joint_histogram, joint_histogram

logger = logging.getLogger(__name__)

Quadrant = tuple[slice, slice]


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """S-measure of one prediction.

    Args:
        pred: (H, W) prediction map: uint8 in [0, 255], float in [0, 1], or bool (a binary mask).
        gt: (H, W) ground truth: bool mask, or uint8 mask (foreground where > 128). Same size as pred.
        alpha: weight of the object term (PySODMetrics' default 0.5).

    Returns:
        The S-measure in [0, 1]; equal to PySODMetrics' ``Smeasure`` on the same pair.
    """
    return structure_of(Prepared(pred, gt), alpha)


def structure_of(prep: Prepared, alpha: float = 0.5, hists: np.ndarray | None = None) -> float:
    """S-measure of a prepared pair; ``hists`` are its (4, 2, 256) quadrant histograms if already made."""
    n, n_fg = prep.size, prep.n_fg
    if prep.codes is None:
        return _structure_direct(prep, alpha)
    if hists is None:
        hists = quadrant_histograms(prep)
    if n_fg == 0 or n_fg == n:
        mean = float(hists.sum(axis=(0, 1)) @ prep.lut) / n
        return 1.0 - mean if n_fg == 0 else mean
    fg_counts, bg_counts = hists[:, 1].sum(axis=0), hists[:, 0].sum(axis=0)
    y = n_fg / n
    obj = _object_score(fg_counts, prep.lut) * y + _object_score(bg_counts, 1.0 - prep.lut) * (1.0 - y)
    quadrants, weights = _split(prep)
    region = 0.0
    for quadrant, weight, hist in zip(quadrants, weights, hists, strict=True):
        region += _ssim_from_hist(prep, quadrant, hist) * weight
    return max(0.0, obj * alpha + region * (1.0 - alpha))


def quadrant_histograms(prep: Prepared) -> np.ndarray:
    """(4, 2, 256) int64 (level, gt) counts in the four centroid quadrants (lt, rt, lb, rb) of a level map."""
    quadrants, _ = _split(prep)
    if prep.binary:
        pred = prep.codes.view(np.bool_)
        return np.stack([binary_joint_histogram(pred[q], prep.gt[q]) for q in quadrants])
    return np.stack([joint_histogram(prep.codes[q], prep.gt[q]) for q in quadrants])


def _split(prep: Prepared) -> tuple[list[Quadrant], list[float]]:
    split = prep.cache.get("split")
    if split is None:
        split = prep.cache["split"] = split_at_centroid(prep.gt)
    return split  # type: ignore[return-value]


def split_at_centroid(gt: np.ndarray) -> tuple[list[Quadrant], list[float]]:
    """The four quadrants (lt, rt, lb, rb) of S_region and their area weights, as PySODMetrics splits them.

    Args:
        gt: (H, W) bool ground truth.

    Returns:
        (slices, weights): four (row slice, column slice) pairs and weights summing to 1.
    """
    h, w = gt.shape
    gt_u8 = np.ascontiguousarray(gt).view(np.uint8)
    rows = cv2.reduce(gt_u8, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()  # foreground pixels per row
    total = int(rows.sum(dtype=np.int64))
    if total == 0:
        cy, cx = round(h / 2), round(w / 2)
    else:
        cols = cv2.reduce(gt_u8, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
        # exact integer sums, then one correctly rounded division, as np.argwhere(gt).mean(0) gives
        cy = round(int(rows @ np.arange(h, dtype=np.int64)) / total)
        cx = round(int(cols @ np.arange(w, dtype=np.int64)) / total)
    cy, cx = int(cy) + 1, int(cx) + 1
    area = h * w
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    w_rb = 1 - w_lt - w_rt - w_lb
    top, bottom, left, right = slice(0, cy), slice(cy, h), slice(0, cx), slice(cx, w)
    return [(top, left), (top, right), (bottom, left), (bottom, right)], [w_lt, w_rt, w_lb, w_rb]


def _object_score(counts: np.ndarray, values: np.ndarray) -> float:
    """PySODMetrics' ``s_object`` of the pixels whose values are ``values`` with multiplicities ``counts``."""
    n = int(counts.sum())
    mean = float(counts @ values) / n
    std = math.sqrt(float(counts @ (values - mean) ** 2) / (n - 1)) if n > 1 else 0.0
    return 2 * mean / (mean * mean + 1 + std + EPS)


def _ssim(x: float, y: float, sxx: float, syy: float, sxy: float) -> float:
    alpha = 4 * x * y * sxy
    beta = (x * x + y * y) * (sxx + syy)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def _ssim_from_hist(prep: Prepared, quadrant: Quadrant, hist: np.ndarray) -> float:
    """SSIM of one quadrant from its (2, 256) histogram; 0 for an empty quadrant."""
    bg, fg = hist
    counts = bg + fg
    n = int(counts.sum())
    if n == 0:
        return 0.0
    lut = prep.lut
    n_g = int(fg.sum())
    denom = n - 1 + EPS
    if (
        (n_g == 0 or n_g == n)
        and np.count_nonzero(counts) == 1
        and lut[np.flatnonzero(counts)[0]] not in (0, 1)
    ):
        # A constant prediction (not 0 or 1) on a constant ground truth: the score is 1 or 0 depending on
        # whether PySODMetrics' float mean of the constant comes out exact. Reproduce its arithmetic.
        values = prep.values[quadrant]
        x = float(np.mean(values))
        sxx = float(np.sum((values - x) ** 2)) / denom
        return _ssim(x, n_g / n, sxx, 0.0, 0.0)
    x = float(counts @ lut) / n
    y = n_g / n
    dx = lut - x
    sxx = float(counts @ (dx * dx)) / denom
    syy = (n_g * (1 - y) ** 2 + (n - n_g) * y**2) / denom
    sxy = (float(fg @ dx) * (1 - y) + float(bg @ dx) * (0 - y)) / denom
    return _ssim(x, y, sxx, syy, sxy)


def _structure_direct(prep: Prepared, alpha: float) -> float:
    """S-measure of a float prediction, computed on the pixels."""
    values, gt = prep.values, prep.gt
    n, n_fg = prep.size, prep.n_fg
    if n_fg == 0:
        return 1.0 - float(np.mean(values))
    if n_fg == n:
        return float(np.mean(values))
    y = n_fg / n
    obj = _object_direct(values[gt]) * y + _object_direct((1 - values)[~gt]) * (1 - y)
    quadrants, weights = _split(prep)
    region = 0.0
    for (rows, cols), weight in zip(quadrants, weights, strict=True):
        v, g = values[rows, cols], gt[rows, cols]
        if v.size == 0:
            continue
        denom = v.size - 1 + EPS
        x, yq = float(np.mean(v)), float(np.mean(g))
        dv, dg = v - x, g - yq
        score = _ssim(
            x,
            yq,
            float(np.sum(dv * dv)) / denom,
            float(np.sum(dg * dg)) / denom,
            float(np.sum(dv * dg)) / denom,
        )
        region += score * weight
    return max(0.0, obj * alpha + region * (1 - alpha))


def _object_direct(x: np.ndarray) -> float:
    mean = float(np.mean(x))
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return 2 * mean / (mean * mean + 1 + std + EPS)
