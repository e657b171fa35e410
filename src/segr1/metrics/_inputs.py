"""Input checking and PySODMetrics-style normalisation shared by every metric.

PySODMetrics (and the MATLAB toolboxes it follows) min-max normalise a uint8 prediction map
(``pred / 255``, then ``(pred - min) / (max - min)`` unless it is constant) and binarise a uint8 ground
truth at ``> 128``. A bool ground truth is taken as the real binary mask (never thresholded at 128; a
uint8 0/1 mask is refused rather than emptied), a bool prediction as the {0, 255} map, and a float
prediction in [0, 1] as ``uint8 / 255``.

A uint8 or bool prediction is kept as *levels*: the raw value of each pixel (``codes``) plus a 256-entry
table of normalised values (``lut``), bit-identical to PySODMetrics' per-pixel arithmetic. Most metrics
then reduce to histograms of the levels, which is where the speed comes from.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)

EPS = float(np.spacing(1))  # MATLAB's eps, as PySODMetrics uses
NUM_LEVELS = 256
_CALCHIST_LIMIT = 1 << 24  # cv2.calcHist counts in float32: exact below 2**24 per bin

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def check_gt(gt: np.ndarray) -> np.ndarray:
    """Return a ground truth as an (H, W) C-contiguous bool mask.

    Args:
        gt: (H, W) bool mask (taken as is) or uint8 mask (foreground where ``gt > 128``).

    Raises:
        TypeError: gt is not a bool or uint8 numpy array.
        ValueError: gt is not 2-D, is empty, or is a uint8 0/1 mask (which ``> 128`` would empty: the
            mistake of thresholding an already binarised mask; pass it as bool).
    """
    if not isinstance(gt, np.ndarray):
        raise TypeError(f"gt must be a numpy array, got {type(gt).__name__}")
    if gt.ndim != 2 or gt.size == 0:
        raise ValueError(f"gt must be a non-empty (H, W) array, got shape {gt.shape}")
    if gt.dtype == np.bool_:
        return np.ascontiguousarray(gt)
    if gt.dtype == np.uint8:
        if gt.max() == 1:
            raise ValueError(
                "gt is a uint8 mask with values 0/1: thresholding it at 128 would make it empty; "
                "pass gt.astype(bool) (or scale it to 0/255)"
            )
        return gt > 128
    raise TypeError(
        f"gt must be bool or uint8 (foreground = gt > 128), got dtype {gt.dtype}; "
        "convert it explicitly, e.g. gt.astype(bool) for a 0/1 mask"
    )


def check_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """Return a bool (H, W) mask unchanged (made contiguous); raise on anything else."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise TypeError(
            f"{name} must be a bool mask, got dtype {mask.dtype}; threshold it explicitly (e.g. mask > 0)"
        )
    if mask.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) mask, got shape {mask.shape}")
    return np.ascontiguousarray(mask)


class Prepared:
    """A checked (pred, gt) pair in PySODMetrics' normalised form.

    Attributes:
        gt: (H, W) bool ground truth.
        codes: (H, W) uint8 raw level of each pixel for a bool/uint8 prediction (bool: 0/1), else None.
        lut: (256,) float64 normalised value of each level (bool: entries 0 and 1 used), else None.
        binary: the prediction was a bool mask (codes are 0/1).
        raw_high: (H, W) bool, raw prediction > 128 on the uint8 scale (DIS's binarisation), lazily.
        cache: derived quantities shared between metrics (e.g. the S-measure quadrants).
    """

    __slots__ = ("gt", "codes", "lut", "binary", "cache", "_pred", "_values", "_n_fg")

    def __init__(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if not isinstance(pred, np.ndarray):
            raise TypeError(f"pred must be a numpy array, got {type(pred).__name__}")
        if pred.ndim != 2 or pred.size == 0:
            raise ValueError(f"pred must be a non-empty (H, W) map, got shape {pred.shape}")
        if isinstance(gt, np.ndarray) and pred.shape != gt.shape:
            raise ValueError(
                f"pred and gt sizes differ: pred {pred.shape}, gt {gt.shape}; resize the prediction to the "
                "ground truth first"
            )
        self.gt = check_gt(gt)
        self._pred = pred
        self._values: np.ndarray | None = None
        self._n_fg: int | None = None
        self.cache: dict[str, object] = {}
        self.binary = pred.dtype == np.bool_
        if pred.dtype == np.bool_:
            self.codes = np.ascontiguousarray(pred).view(np.uint8)
            self.lut = np.zeros(NUM_LEVELS)
            self.lut[1] = 1.0
        elif pred.dtype == np.uint8:
            self.codes = np.ascontiguousarray(pred)
            lo, hi, _, _ = cv2.minMaxLoc(self.codes)
            lut = np.arange(NUM_LEVELS) / 255
            if hi != lo:
                lut = (lut - lut[int(lo)]) / (lut[int(hi)] - lut[int(lo)])
                np.clip(lut, 0.0, 1.0, out=lut)  # only levels outside [lo, hi] (no pixels) change
            self.lut = lut
        elif pred.dtype in _FLOAT_DTYPES:
            values = np.array(pred, dtype=np.float64, order="C")
            lo, hi = float(values.min()), float(values.max())
            if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
                raise ValueError(f"a float pred must lie in [0, 1], got values in [{lo}, {hi}]")
            if hi != lo:
                values = (values - lo) / (hi - lo)
            self._values = values
            self.codes = None
            self.lut = None
        else:
            raise TypeError(f"pred must be uint8 [0, 255], float [0, 1] or bool, got dtype {pred.dtype}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.gt.shape  # type: ignore[return-value]

    @property
    def size(self) -> int:
        return int(self.gt.size)

    @property
    def n_fg(self) -> int:
        """Number of ground-truth foreground pixels."""
        if self._n_fg is None:
            self._n_fg = int(np.count_nonzero(self.gt))
        return self._n_fg

    @property
    def values(self) -> np.ndarray:
        """(H, W) float64 normalised prediction in [0, 1] (PySODMetrics' ``pred`` after normalisation)."""
        if self._values is None:
            self._values = lookup(self.codes, self.lut)
        return self._values

    @property
    def raw_high(self) -> np.ndarray:
        """(H, W) bool: the raw prediction > 128 on the uint8 scale (DIS / Seg-R1 binarisation)."""
        pred = self._pred
        if pred.dtype == np.bool_:
            return self.codes.view(np.bool_)
        if pred.dtype == np.uint8:
            return self.codes > 128
        return np.asarray(pred, dtype=np.float64) * 255 > 128

    def quantised_codes(self) -> np.ndarray:
        """(H, W) uint8 ``floor(values * 255)``, PySODMetrics' quantisation for threshold curves."""
        if self.codes is not None:
            return lookup(self.codes, quantise(self.lut))
        return quantise(self.values)

    def abs_error(self) -> np.ndarray:
        """(H, W) float64 ``|values - gt|`` (a new array)."""
        error = lookup(self.codes, self.lut) if self.codes is not None else np.array(self.values)
        np.subtract(error, self.gt, out=error)
        return np.abs(error, out=error)


def lookup(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[codes]`` for (H, W) uint8 codes and a (256,) table (OpenCV's LUT: same values, faster)."""
    if codes.ndim == 2 and codes.shape[1] > 0 and codes.shape[0] * codes.shape[1] < 1 << 30:
        return cv2.LUT(codes, np.ascontiguousarray(table).reshape(1, NUM_LEVELS))
    return table[codes]


def quantise(values: np.ndarray) -> np.ndarray:
    """``floor(values * 255)`` as uint8 — the 256 thresholds of PySODMetrics' curves."""
    return (values * 255).astype(np.uint8)


def joint_histogram(codes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Count pixels per (level, gt) pair.

    Args:
        codes: (h, w) uint8 levels (may be a strided view).
        gt: (h, w) bool mask of the same shape (may be a strided view).

    Returns:
        (2, 256) int64: row 0 counts background pixels per level, row 1 foreground pixels.
    """
    if codes.size == 0:
        return np.zeros((2, NUM_LEVELS), dtype=np.int64)
    if codes.size < _CALCHIST_LIMIT:
        hist = cv2.calcHist([codes, gt.view(np.uint8)], [0, 1], None, [NUM_LEVELS, 2], [0, NUM_LEVELS, 0, 2])
        return np.rint(hist.T).astype(np.int64)
    flat = codes.astype(np.intp).ravel() + NUM_LEVELS * gt.ravel()
    return np.bincount(flat, minlength=2 * NUM_LEVELS).reshape(2, NUM_LEVELS)


def binary_joint_histogram(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """:func:`joint_histogram` of a bool prediction (levels 0 and 1) from three pixel counts."""
    n, n_p, n_g = pred.size, int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    n_pg = int(np.count_nonzero(pred & gt))
    hist = np.zeros((2, NUM_LEVELS), dtype=np.int64)
    hist[:, :2] = [[n - n_p - n_g + n_pg, n_p - n_pg], [n_g - n_pg, n_pg]]
    return hist


def histogram_quantised(q: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(2, 256) int64 counts of uint8 values ``q`` over background (row 0) and foreground (row 1)."""
    return joint_histogram(np.ascontiguousarray(q), np.ascontiguousarray(gt))
