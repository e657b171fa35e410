"""The foreground-segmentation suite (COD / SOD / DIS tables): E-measure, F-measure, MAE, and all at once.

Conventions are PySODMetrics' (min-max normalised prediction, uint8 ground truth > 128):

* **Curves** have 256 entries; entry ``i`` binarises the prediction at ``floor(pred * 255) >= 255 - i``
  (PySODMetrics' order). Mean / max E- and F-measure are the mean / max of the dataset-averaged curve.
* **Adaptive** measures binarise at ``pred >= min(2 * mean(pred), 1)``.
* **E-measure** (Fan et al., IJCAI 2018) is PySODMetrics' closed form over the four confusion counts,
  divided by ``H * W - 1 + eps`` (so a 1-pixel image gives PySODMetrics' huge value; do not use one).
* **F-measure** uses ``beta^2 = 0.3``; an empty binarisation scores 0.

:func:`foreground_scores` computes every per-image quantity from shared work: one (level, gt) histogram
per S-measure quadrant gives S, both curves, the adaptive measures and MAE; the weighted F-measure needs the
pixels. Optional DIS boundary metrics (HCE, mBA, boundary IoU) come from :mod:`segr1.metrics.boundary`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from segr1.metrics._inputs import EPS, NUM_LEVELS, Prepared, histogram_quantised, joint_histogram, quantise
from segr1.metrics.boundary import boundary_iou_of, hce_of, mba_of
from segr1.metrics.structure import quadrant_histograms, structure_of
from segr1.metrics.weighted import weighted_f_of

logger = logging.getLogger(__name__)

F_BETA2 = 0.3
_TIE_TOLERANCE = 1e-12  # a level this close to the adaptive threshold triggers PySODMetrics' exact mean


@dataclass(frozen=True)
class ForegroundScores:
    """Per-image results of the foreground suite.

    Attributes:
        sm, wfm, mae, adp_em, adp_fm: S-measure, weighted F, MAE, adaptive E and F of the image.
        em_curve, fm_curve: (256,) E- and F-measure per threshold (entry i: threshold 255 - i).
        hce: human correction effort (count of control points + regions), when boundary metrics are on.
        mba: mean boundary accuracy in [0, 1], when boundary metrics are on.
        biou_curve: (256,) boundary IoU per threshold (entry i: threshold 255 - i), when on.
    """

    sm: float
    wfm: float
    mae: float
    adp_em: float
    adp_fm: float
    em_curve: np.ndarray
    fm_curve: np.ndarray
    hce: int | None = None
    mba: float | None = None
    biou_curve: np.ndarray | None = None


def foreground_scores(pred: np.ndarray, gt: np.ndarray, *, boundary: bool = False) -> ForegroundScores:
    """All foreground metrics of one (prediction, ground truth) pair, sharing the work between them.

    Args:
        pred: (H, W) prediction map: uint8 in [0, 255], float in [0, 1], or bool.
        gt: (H, W) ground truth: bool, or uint8 (foreground where > 128). Same size as pred.
        boundary: also compute the DIS boundary metrics (HCE, mBA, boundary IoU curve); slower.

    Returns:
        A :class:`ForegroundScores`, each value equal to PySODMetrics' on the same pair.
    """
    prep = Prepared(pred, gt)
    if prep.codes is not None:
        quad_hists = quadrant_histograms(prep)
        hist = quad_hists.sum(axis=0)
        sm = structure_of(prep, hists=quad_hists)
    else:
        hist = None
        sm = structure_of(prep)
    em_curve, fm_curve, adp_em, adp_fm, mae = _threshold_measures(prep, hist)
    scores = dict(
        sm=sm,
        wfm=weighted_f_of(prep),
        mae=mae,
        adp_em=adp_em,
        adp_fm=adp_fm,
        em_curve=em_curve,
        fm_curve=fm_curve,
    )
    if boundary:
        scores.update(hce=hce_of(prep), mba=mba_of(prep), biou_curve=boundary_iou_of(prep))
    return ForegroundScores(**scores)


def e_measure_curve(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(256,) E-measure at each threshold (entry i binarises at ``floor(pred * 255) >= 255 - i``).

    Args: as :func:`foreground_scores`.
    """
    return _threshold_measures(Prepared(pred, gt))[0]


def f_measure_curve(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(256,) F-measure (beta^2 = 0.3) at each threshold, ordered as :func:`e_measure_curve`."""
    return _threshold_measures(Prepared(pred, gt))[1]


def adaptive_e_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    """E-measure at the adaptive threshold ``min(2 * mean(pred), 1)``."""
    return _threshold_measures(Prepared(pred, gt))[2]


def adaptive_f_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    """F-measure (beta^2 = 0.3) at the adaptive threshold ``min(2 * mean(pred), 1)``; 0 if nothing is hit."""
    return _threshold_measures(Prepared(pred, gt))[3]


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error between the normalised prediction and the binary ground truth, in [0, 1]."""
    prep = Prepared(pred, gt)
    if prep.codes is None:
        return float(np.mean(np.abs(prep.values - prep.gt)))
    hist = joint_histogram(prep.codes, prep.gt)
    return _mae_from_hist(hist, prep.lut, prep.size)


def enhanced_alignment(tp: np.ndarray, fp: np.ndarray, n_fg: int, n: int) -> np.ndarray:
    """E-measure of binarisations given their true / false positive counts (arrays or scalars).

    Args:
        tp, fp: true and false positive pixel counts (same shape).
        n_fg: ground-truth foreground pixels; n: pixels in the image.
    """
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    pred_fg = tp + fp
    pred_bg = n - pred_fg
    if n_fg == 0:
        total = pred_bg
    elif n_fg == n:
        total = pred_fg
    else:
        fn = n_fg - tp
        tn = pred_bg - fn
        mean_pred, mean_gt = pred_fg / n, n_fg / n
        total = 0.0
        for count, a, b in (
            (tp, 1 - mean_pred, 1 - mean_gt),
            (fp, 1 - mean_pred, 0 - mean_gt),
            (fn, 0 - mean_pred, 1 - mean_gt),
            (tn, 0 - mean_pred, 0 - mean_gt),
        ):
            align = 2 * (a * b) / (a**2 + b**2 + EPS)
            total = total + (align + 1) ** 2 / 4 * count
    return total / (n - 1 + EPS)


def f_from_counts(tp: np.ndarray, fp: np.ndarray, n_fg: int, beta2: float = F_BETA2) -> np.ndarray:
    """F-measure curve from true / false positive counts (PySODMetrics' zero handling)."""
    tp = np.asarray(tp, dtype=np.float64)
    positives = tp + fp
    precision = tp / np.where(positives == 0, 1, positives)
    recall = tp / max(n_fg, 1)
    numerator = (1 + beta2) * precision * recall
    return numerator / np.where(numerator == 0, 1, beta2 * precision + recall)


def _threshold_measures(
    prep: Prepared, hist: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """(E curve, F curve, adaptive E, adaptive F, MAE); ``hist`` is the (2, 256) level histogram if made."""
    n, n_fg = prep.size, prep.n_fg
    if prep.codes is not None:
        if hist is None:
            hist = joint_histogram(prep.codes, prep.gt)
        lut = prep.lut
        levels = quantise(lut)
        quantised = np.stack([np.bincount(levels, weights=h, minlength=NUM_LEVELS) for h in hist])
        mean = float(hist.sum(axis=0) @ lut) / n
        threshold = min(2 * mean, 1.0)
        used = hist.sum(axis=0) > 0
        if np.any(np.abs(lut[used] - threshold) <= _TIE_TOLERANCE):
            threshold = min(2 * float(np.mean(prep.values)), 1.0)  # PySODMetrics' exact float mean
        hit = lut >= threshold
        adp_tp, adp_pos = int(hist[1][hit].sum()), int(hist[:, hit].sum())
        mae_value = _mae_from_hist(hist, lut, n)
    else:
        values, gt = prep.values, prep.gt
        quantised = histogram_quantised(quantise(values), gt)
        threshold = min(2 * float(np.mean(values)), 1.0)
        binary = values >= threshold
        adp_tp, adp_pos = int(np.count_nonzero(binary & gt)), int(np.count_nonzero(binary))
        mae_value = float(np.mean(np.abs(values - gt)))
    fp = np.cumsum(quantised[0][::-1])
    tp = np.cumsum(quantised[1][::-1])
    em_curve = enhanced_alignment(tp, fp, n_fg, n)
    fm_curve = f_from_counts(tp, fp, n_fg)
    adp_em = float(enhanced_alignment(adp_tp, adp_pos - adp_tp, n_fg, n))
    if adp_tp == 0:
        adp_fm = 0.0
    else:
        precision, recall = adp_tp / adp_pos, adp_tp / n_fg
        adp_fm = (1 + F_BETA2) * precision * recall / (F_BETA2 * precision + recall)
    return em_curve, fm_curve, adp_em, adp_fm, mae_value


def _mae_from_hist(hist: np.ndarray, lut: np.ndarray, n: int) -> float:
    return (float(hist[1] @ np.abs(lut - 1)) + float(hist[0] @ lut)) / n
