"""Streaming meters for the foreground suite: sums, not per-sample lists, exactly mergeable.

``ForegroundMeter`` averages per-image values (S, wF, MAE, adaptive E / F, HCE, mBA) and per-image
256-threshold curves (E, F, boundary IoU) over a dataset, as PySODMetrics does; mean / max E, F and
boundary IoU are then the mean / max of the averaged curve. Sums are kept as integers (see
:mod:`segr1.metrics._exact`), so ``merge`` gives the same result, bit for bit, as one meter over all
samples, in any order and split.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from segr1.metrics._exact import fixed_mean, fixed_mean_array, to_fixed, to_fixed_array
from segr1.metrics._inputs import NUM_LEVELS
from segr1.metrics.foreground import ForegroundScores, foreground_scores

logger = logging.getLogger(__name__)

FOREGROUND_KEYS = ("sm", "wfm", "mae", "adp_em", "mean_em", "max_em", "adp_fm", "mean_fm", "max_fm")
BOUNDARY_KEYS = ("hce", "mba", "mean_biou", "max_biou")
_SCALARS = ("sm", "wfm", "mae", "adp_em", "adp_fm")
_CURVES = ("em", "fm")


class ForegroundMeter:
    """Dataset averages of S-measure, weighted F, MAE, E- and F-measure (and optionally DIS boundary metrics).

    Example::

        meter = ForegroundMeter()
        for pred, gt in pairs:          # pred (H, W) uint8/float/bool map, gt (H, W) bool or uint8 mask
            meter.update(pred, gt)
        meter.compute()                 # {"sm": ..., "wfm": ..., ..., "max_fm": ...}

    Args:
        boundary: also accumulate HCE, mBA and boundary IoU (keys ``hce``, ``mba``, ``mean_biou``,
            ``max_biou``); needs scikit-image and is slower.
    """

    def __init__(self, boundary: bool = False) -> None:
        self.boundary = bool(boundary)
        self.reset()

    def reset(self) -> None:
        """Forget every sample."""
        self.count = 0
        self._sums: dict[str, int] = {key: 0 for key in _SCALARS}
        self._curves: dict[str, np.ndarray] = {key: _zero_curve() for key in _CURVES}
        if self.boundary:
            self._sums["mba"] = 0
            self._hce_total = 0
            self._curves["biou"] = _zero_curve()

    def update(self, pred: np.ndarray, gt: np.ndarray) -> ForegroundScores:
        """Score one pair and add it.

        Args:
            pred: (H, W) prediction map: uint8 in [0, 255], float in [0, 1], or bool.
            gt: (H, W) ground truth: bool, or uint8 (foreground where > 128). Same size as pred.

        Returns:
            The pair's per-image scores.

        Raises:
            ValueError: the sizes differ (resize the prediction to the ground truth first) or values are
                out of range; TypeError: unsupported dtypes.
        """
        scores = foreground_scores(pred, gt, boundary=self.boundary)
        self.add(scores)
        return scores

    def add(self, scores: ForegroundScores) -> None:
        """Add per-image scores computed elsewhere (e.g. in a worker process) by :func:`foreground_scores`."""
        if self.boundary and scores.hce is None:
            raise ValueError("this meter has boundary=True: compute the scores with boundary=True")
        for key in _SCALARS:
            self._sums[key] += to_fixed(getattr(scores, key))
        self._curves["em"] += to_fixed_array(scores.em_curve)
        self._curves["fm"] += to_fixed_array(scores.fm_curve)
        if self.boundary:
            self._sums["mba"] += to_fixed(scores.mba)
            self._hce_total += int(scores.hce)
            self._curves["biou"] += to_fixed_array(scores.biou_curve)
        self.count += 1

    def merge(self, other: ForegroundMeter) -> ForegroundMeter:
        """Add another meter's samples to this one (in place) and return self."""
        if not isinstance(other, ForegroundMeter):
            raise TypeError(f"can only merge a ForegroundMeter, got {type(other).__name__}")
        if other.boundary != self.boundary:
            raise ValueError(
                f"cannot merge meters with boundary={self.boundary} and boundary={other.boundary}"
            )
        for key in self._sums:
            self._sums[key] += other._sums[key]
        for key in self._curves:
            self._curves[key] = self._curves[key] + other._curves[key]
        if self.boundary:
            self._hce_total += other._hce_total
        self.count += other.count
        return self

    def compute(self) -> dict[str, float]:
        """The dataset scores: keys ``FOREGROUND_KEYS`` (+ ``BOUNDARY_KEYS`` when enabled); NaN when empty."""
        n = self.count
        em = fixed_mean_array(self._curves["em"], n)
        fm = fixed_mean_array(self._curves["fm"], n)
        result = {
            "sm": fixed_mean(self._sums["sm"], n),
            "wfm": fixed_mean(self._sums["wfm"], n),
            "mae": fixed_mean(self._sums["mae"], n),
            "adp_em": fixed_mean(self._sums["adp_em"], n),
            "mean_em": float(em.mean()),
            "max_em": float(em.max()),
            "adp_fm": fixed_mean(self._sums["adp_fm"], n),
            "mean_fm": float(fm.mean()),
            "max_fm": float(fm.max()),
        }
        if self.boundary:
            biou = fixed_mean_array(self._curves["biou"], n)
            result["hce"] = self._hce_total / n if n else float("nan")
            result["mba"] = fixed_mean(self._sums["mba"], n)
            result["mean_biou"] = float(biou.mean())
            result["max_biou"] = float(biou.max())
        return result

    def curves(self) -> dict[str, np.ndarray]:
        """Dataset-averaged (256,) curves ``em``, ``fm`` (and ``biou``); entry i is threshold 255 - i."""
        return {key: fixed_mean_array(value, self.count) for key, value in self._curves.items()}

    def state_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot (Python ints), e.g. for ``accelerate``'s ``gather_object``."""
        state: dict[str, Any] = {
            "boundary": self.boundary,
            "count": self.count,
            "sums": dict(self._sums),
            "curves": {key: [int(v) for v in value] for key, value in self._curves.items()},
        }
        if self.boundary:
            state["hce_total"] = self._hce_total
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ForegroundMeter:
        """Rebuild a meter from :meth:`state_dict`."""
        meter = cls(boundary=state["boundary"])
        meter.count = int(state["count"])
        meter._sums = {key: int(value) for key, value in state["sums"].items()}
        meter._curves = {
            key: np.array([int(v) for v in value], dtype=object) for key, value in state["curves"].items()
        }
        if meter.boundary:
            meter._hce_total = int(state["hce_total"])
        return meter

    def __repr__(self) -> str:
        return f"ForegroundMeter(boundary={self.boundary}, count={self.count})"


def _zero_curve() -> np.ndarray:
    return np.array([0] * NUM_LEVELS, dtype=object)
