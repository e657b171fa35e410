"""DIS boundary metrics (HCE, mBA, boundary IoU) and the mask IoU meter."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from segr1.metrics import (
    BOUNDARY_KEYS,
    FOREGROUND_KEYS,
    ForegroundMeter,
    IoUMeter,
    boundary_iou_curve,
    foreground_scores,
    human_correction_effort,
    intersection_union,
    iou,
    mean_boundary_accuracy,
)

sod = pytest.importorskip("py_sod_metrics")
pytest.importorskip("skimage")


def _cases(seed: int, n: int, lo: int = 8, hi: int = 120) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(lo, hi, 2))
        gt = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(0 if i % 11 == 0 else 1, 5))):
            axes = (int(rng.integers(1, w // 2 + 2)), int(rng.integers(1, h // 2 + 2)))
            cv2.ellipse(
                gt,
                (int(rng.integers(0, w)), int(rng.integers(0, h))),
                axes,
                float(rng.uniform(0, 180)),
                0,
                360,
                255,
                -1,
            )
        kind = i % 6
        if kind == 0:
            pred = rng.integers(0, 256, (h, w), dtype=np.uint8)
        elif kind == 1:
            pred = cv2.GaussianBlur(np.roll(gt, int(rng.integers(-6, 7)), axis=1), (0, 0), 2.0)
        elif kind == 2:
            pred = np.roll(gt, int(rng.integers(-6, 7)), axis=0)
        elif kind == 3:
            pred = np.clip(gt * 0.6 + rng.normal(0, 50, (h, w)), 0, 255).astype(np.uint8)
        elif kind == 4:  # holes and specks
            pred = cv2.dilate(gt, np.ones((3, 3), np.uint8))
            pred[rng.random((h, w)) < 0.05] = 0
            pred[rng.random((h, w)) < 0.01] = 255
        else:
            pred = np.full((h, w), int(rng.choice([0, 255, 140])), np.uint8)
        if i % 13 == 5:
            gt[:] = 255
        cases.append((pred, gt))
    return cases


# ------------------------------------------------------------------------------------------------ HCE


def test_hce_matches_pysodmetrics():
    for pred, gt in _cases(1, 80):
        ref = sod.HumanCorrectionEffortMeasure()
        ref.step(pred, gt)
        assert human_correction_effort(pred, gt) == ref.get_results()["hce"]


def test_hce_of_a_perfect_prediction_is_zero_and_bool_inputs_work():
    gt = np.zeros((40, 40), bool)
    gt[10:30, 5:25] = True
    assert human_correction_effort(gt, gt) == 0
    assert human_correction_effort(np.zeros_like(gt), np.zeros_like(gt)) == 0
    assert human_correction_effort(np.zeros_like(gt), gt) > 0  # everything missed


# ----------------------------------------------------------------------------------- mBA, boundary IoU


def reference_mba(pred: np.ndarray, gt: np.ndarray) -> float:
    """The DIS / Seg-R1 evaluators' mBA, restated: accuracy of pred > 128 in 5 gradient bands of gt > 128."""
    p, g = (pred > 128).astype(np.uint8), (gt > 128).astype(np.uint8)
    h, w = g.shape
    accs = []
    for i in range(5):
        r = 1 + int(((w + h) / 300 - 1) / 5 * i)
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        band = (cv2.dilate(g, k) - cv2.erode(g, k)) > 0
        accs.append(np.mean(p[band] == g[band]) if band.any() else 1.0)  # the evaluators divide by 0 here
    return sum(accs) / 5


def reference_biou(pred: np.ndarray, gt: np.ndarray, ratio: float = 0.02) -> np.ndarray:
    """The BiRefNet / Seg-R1 evaluators' boundary IoU curve, restated with a loop over thresholds."""
    p = pred / 255
    if p.max() != p.min():
        p = (p - p.min()) / (p.max() - p.min())
    h, w = gt.shape
    d = max(1, int(round(ratio * np.sqrt(h * h + w * w))))

    def boundary(m: np.ndarray) -> np.ndarray:
        padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        return m - cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1 : h + 1, 1 : w + 1]

    pb = boundary((p * 255).astype(np.uint8))
    gb = boundary((gt > 128).astype(np.uint8) * 255) > 128
    return np.array(
        [(pb >= t)[gb].sum() / (max(gb.sum(), 1) + (pb >= t)[~gb].sum()) for t in range(255, -1, -1)]
    )


def test_mba_matches_the_evaluator_definition():
    for pred, gt in _cases(2, 60, lo=5, hi=400):
        assert mean_boundary_accuracy(pred, gt) == pytest.approx(reference_mba(pred, gt), abs=1e-12)


def test_boundary_iou_matches_the_evaluator_definition():
    for pred, gt in _cases(3, 30, lo=5, hi=200):
        np.testing.assert_allclose(boundary_iou_curve(pred, gt), reference_biou(pred, gt), atol=1e-12)


def test_boundary_edge_cases():
    empty, full = np.zeros((30, 30), bool), np.ones((30, 30), bool)
    assert mean_boundary_accuracy(full, empty) == 1.0  # no GT boundary: nothing to get wrong
    assert mean_boundary_accuracy(empty, full) == 1.0
    gt = np.zeros((30, 30), bool)
    gt[8:20, 8:20] = True
    assert mean_boundary_accuracy(gt, gt) == 1.0
    assert boundary_iou_curve(gt, gt)[0] == pytest.approx(1.0)  # threshold 255: the exact boundary
    assert np.all(boundary_iou_curve(full, empty) == 0)  # |G| = 0 counts as 1, TP = 0
    assert boundary_iou_curve(gt, gt).shape == (256,)


def test_boundary_meter_keys_means_and_merge():
    cases = _cases(4, 12)
    meter, halves = (
        ForegroundMeter(boundary=True),
        [ForegroundMeter(boundary=True), ForegroundMeter(boundary=True)],
    )
    per_image = []
    for i, (pred, gt) in enumerate(cases):
        per_image.append(meter.update(pred, gt))
        halves[i % 2].update(pred, gt)
    result = meter.compute()
    assert tuple(result) == FOREGROUND_KEYS + BOUNDARY_KEYS
    assert result["hce"] == pytest.approx(np.mean([s.hce for s in per_image]))
    assert result["mba"] == pytest.approx(np.mean([s.mba for s in per_image]), abs=1e-15)
    curve = np.mean([s.biou_curve for s in per_image], axis=0)
    assert result["max_biou"] == pytest.approx(curve.max(), abs=1e-15)
    assert result["mean_biou"] == pytest.approx(curve.mean(), abs=1e-15)
    assert halves[0].merge(halves[1]).compute() == result
    restored = ForegroundMeter.from_state_dict(json.loads(json.dumps(meter.state_dict())))
    assert restored.compute() == result
    with pytest.raises(ValueError, match="boundary=True"):
        ForegroundMeter(boundary=True).add(foreground_scores(*cases[0]))


# ------------------------------------------------------------------------------------------------ IoU


def test_iou_values_and_edge_cases():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    assert iou(a, b) == 1.0  # empty prediction on an empty target
    b[2:4, 2:4] = True
    assert iou(a, b) == 0.0
    a[2:4, 2:6] = True
    assert intersection_union(a, b) == (4, 8)
    assert iou(a, b) == 0.5
    with pytest.raises(TypeError, match="bool"):
        iou(a.astype(np.uint8), b)
    with pytest.raises(ValueError, match="sizes differ"):
        iou(a, b[:5])


def test_iou_meter_giou_ciou_and_exact_merge():
    rng = np.random.default_rng(0)
    pairs = [(rng.random((12, 9)) < p, rng.random((12, 9)) < q) for p, q in rng.random((20, 2))]
    pairs.append((np.zeros((4, 4), bool), np.zeros((4, 4), bool)))
    meter = IoUMeter()
    values = [meter.update(p, g) for p, g in pairs]
    inter = sum(np.count_nonzero(p & g) for p, g in pairs)
    union = sum(np.count_nonzero(p | g) for p, g in pairs)
    result = meter.compute()
    assert result["giou"] == pytest.approx(np.mean(values), abs=1e-15)
    assert result["ciou"] == inter / union
    parts = [IoUMeter(), IoUMeter(), IoUMeter()]
    for i, (p, g) in enumerate(pairs):
        parts[i % 3].update(p, g)
    assert parts[2].merge(parts[0]).merge(parts[1]).compute() == result
    assert IoUMeter.from_state_dict(json.loads(json.dumps(meter.state_dict()))).compute() == result


def test_iou_meter_empty_cases():
    assert all(math.isnan(v) for v in IoUMeter().compute().values())
    meter = IoUMeter()
    meter.update(np.zeros((3, 3), bool), np.zeros((3, 3), bool))
    assert meter.compute() == {"giou": 1.0, "ciou": 1.0}
    with pytest.raises(TypeError):
        meter.merge(ForegroundMeter())  # type: ignore[arg-type]
