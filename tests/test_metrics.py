"""segr1.metrics foreground suite against PySODMetrics, the reference implementation, on many inputs."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segr1.metrics import (
    FOREGROUND_KEYS,
    ForegroundMeter,
    adaptive_e_measure,
    adaptive_f_measure,
    e_measure_curve,
    f_measure_curve,
    foreground_scores,
    mae,
    s_measure,
    weighted_f_measure,
)
from segr1.metrics.weighted import _nearest_foreground_in_band, distance_to_foreground

sod = pytest.importorskip("py_sod_metrics")
pytestmark = [
    pytest.mark.filterwarnings("ignore:This class will be removed"),  # PySODMetrics' Fmeasure
    pytest.mark.filterwarnings("ignore:Mean of empty slice"),  # PySODMetrics' NaN quadrants
    pytest.mark.filterwarnings("ignore:invalid value encountered in scalar divide"),
]
TOL = 1e-9  # the contract is 1e-6; the implementations agree to rounding


class _SmeasureNoNaN(sod.Smeasure):
    """PySODMetrics' S-measure with an empty quadrant (weight 0) contributing 0 instead of NaN."""

    def ssim(self, pred, gt):
        return 0.0 if pred.size == 0 else super().ssim(pred, gt)


def reference(pred: np.ndarray, gt: np.ndarray, normalize: bool = True, s_cls=sod.Smeasure) -> dict:
    """PySODMetrics' per-image results (fresh metric objects)."""
    sm, em, fm, wfm, m = s_cls(), sod.Emeasure(), sod.Fmeasure(), sod.WeightedFmeasure(), sod.MAE()
    for metric in (sm, em, fm, wfm, m):
        metric.step(pred, gt, normalize=normalize)
    return {
        "sm": sm.get_results()["sm"],
        "wfm": wfm.get_results()["wfm"],
        "mae": m.get_results()["mae"],
        "adp_em": em.get_results()["em"]["adp"],
        "adp_fm": fm.get_results()["fm"]["adp"],
        "em_curve": em.get_results()["em"]["curve"],
        "fm_curve": fm.get_results()["fm"]["curve"],
    }


def assert_matches(pred: np.ndarray, gt: np.ndarray, expected: dict) -> None:
    got = foreground_scores(pred, gt)
    for key, want in expected.items():
        have = getattr(got, key)
        if key == "sm" and np.isnan(want):  # PySODMetrics' NaN for an empty quadrant
            expected_sm = reference(*_as_uint8(pred, gt), s_cls=_SmeasureNoNaN)["sm"]
            assert math.isfinite(have) and abs(have - expected_sm) <= TOL
            continue
        np.testing.assert_allclose(have, want, rtol=0, atol=TOL, err_msg=key)


def _as_uint8(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if pred.dtype == bool:
        pred = pred.astype(np.uint8) * 255
    if gt.dtype == bool:
        gt = gt.astype(np.uint8) * 255
    return pred, gt


# ----------------------------------------------------------------------------------------------- inputs


def _blobs(rng: np.random.Generator, h: int, w: int, n: int | None = None) -> np.ndarray:
    gt = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4)) if n is None else n):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(1, max(2, w // 2))), int(rng.integers(1, max(2, h // 2))))
        cv2.ellipse(gt, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    return gt


def _pred_like(rng: np.random.Generator, gt: np.ndarray, kind: int) -> np.ndarray:
    h, w = gt.shape
    if kind == 0:  # uniform noise
        return rng.integers(0, 256, (h, w), dtype=np.uint8)
    if kind == 1:  # shifted and blurred
        shifted = np.roll(gt, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
        return cv2.GaussianBlur(shifted, (0, 0), float(rng.uniform(0.5, 4)))
    if kind == 2:  # shifted binary mask
        return np.roll(gt, int(rng.integers(-6, 7)), axis=int(rng.integers(0, 2)))
    if kind == 3:  # soft map with Gaussian noise
        noisy = gt * rng.uniform(0.3, 1) + rng.normal(0, rng.uniform(5, 60), (h, w))
        return np.clip(noisy, 0, 255).astype(np.uint8)
    if kind == 4:  # a narrow value range (exercises the min-max normalisation)
        return (100 + rng.integers(0, 12, (h, w)) + (gt > 128) * rng.integers(0, 3)).astype(np.uint8)
    if kind == 5:  # three levels
        return rng.choice(np.array([0, 128, 255], np.uint8), size=(h, w))
    return np.full((h, w), int(rng.choice([0, 1, 77, 128, 200, 255])), np.uint8)  # constant


SIZES = [(1, 1), (1, 7), (9, 1), (2, 2), (5, 3), (17, 31), (37, 53), (64, 64), (63, 40)]


def structured_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(12345)
    cases = []
    for h, w in SIZES:
        for kind in range(7):
            gt = _blobs(rng, h, w)
            cases.append((f"blob{h}x{w}-k{kind}", _pred_like(rng, gt, kind), gt))
        empty, full = np.zeros((h, w), np.uint8), np.full((h, w), 255, np.uint8)
        cases.append((f"emptygt{h}x{w}", rng.integers(0, 256, (h, w), dtype=np.uint8), empty))
        cases.append((f"fullgt{h}x{w}", rng.integers(0, 256, (h, w), dtype=np.uint8), full))
        cases.append((f"emptyboth{h}x{w}", empty, empty))
        cases.append((f"fullboth{h}x{w}", full, full))
        cases.append((f"emptypred{h}x{w}", empty, _blobs(rng, h, w)))
        cases.append((f"fullpred{h}x{w}", full, _blobs(rng, h, w)))
    for h, w in [(20, 20), (33, 47), (48, 31)]:  # tiny objects, corners and last row / column
        for y, x in [(0, 0), (h - 1, w - 1), (h - 1, w // 2), (h // 2, w - 1), (h // 3, w // 3)]:
            gt = np.zeros((h, w), np.uint8)
            gt[y, x] = 255
            cases.append((f"dot{h}x{w}@{y},{x}", _pred_like(rng, gt, int(rng.integers(0, 4))), gt))
            cases.append((f"dotexact{h}x{w}@{y},{x}", gt.copy(), gt))
        gt = np.zeros((h, w), np.uint8)
        gt[2:4, 5:7] = 255
        cases.append((f"square2{h}x{w}", cv2.GaussianBlur(gt, (3, 3), 1), gt))
    soft = cv2.GaussianBlur(_blobs(rng, 40, 50), (5, 5), 2)  # soft GT edges: values around 128
    cases.append(("softgt", _pred_like(rng, soft, 1), soft))
    return cases


CASES = structured_cases()


@pytest.mark.parametrize("name,pred,gt", CASES, ids=[c[0] for c in CASES])
def test_matches_pysodmetrics_structured(name, pred, gt):
    assert_matches(pred, gt, reference(pred, gt))


def test_matches_pysodmetrics_random_larger():
    rng = np.random.default_rng(7)
    for i in range(24):
        h, w = (int(v) for v in rng.integers(60, 200, 2))
        gt = _blobs(rng, h, w)
        pred = _pred_like(rng, gt, i % 7)
        assert_matches(pred, gt, reference(pred, gt))


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_matches_pysodmetrics_hypothesis(data):
    h = data.draw(st.integers(1, 24), label="h")
    w = data.draw(st.integers(1, 24), label="w")
    pred = data.draw(arrays(np.uint8, (h, w)), label="pred")
    gt = data.draw(arrays(np.bool_, (h, w)), label="gt")
    assert_matches(pred, gt, reference(*_as_uint8(pred, gt)))


def test_histograms_without_opencv_match(monkeypatch):
    """Images above 2**24 pixels count with np.bincount (calcHist counts in float32): same results."""
    from segr1.metrics import _inputs

    expected = [foreground_scores(pred, gt) for _, pred, gt in CASES[::7]]
    monkeypatch.setattr(_inputs, "_CALCHIST_LIMIT", 0)
    for want, (_, pred, gt) in zip(expected, CASES[::7], strict=True):
        got = foreground_scores(pred, gt)
        assert got.sm == want.sm and got.mae == want.mae
        np.testing.assert_array_equal(got.em_curve, want.em_curve)


def test_bool_inputs_match_their_uint8_form():
    rng = np.random.default_rng(3)
    for _ in range(20):
        gt = _blobs(rng, 41, 29) > 128
        pred = _pred_like(rng, gt.astype(np.uint8) * 255, 2) > 128
        expected = reference(*_as_uint8(pred, gt))
        assert_matches(pred, gt, expected)
        assert s_measure(pred, gt) == pytest.approx(expected["sm"], abs=TOL)


def test_bool_gt_is_not_thresholded_and_uint8_01_is_refused():
    gt = np.zeros((20, 20), bool)
    gt[5:12, 4:15] = True
    pred = gt.astype(np.uint8) * 255
    assert s_measure(pred, gt) == pytest.approx(1.0)  # a perfect prediction, not an empty-GT score
    with pytest.raises(ValueError, match="0/1"):
        s_measure(pred, gt.astype(np.uint8))


def test_float_predictions_match_pysodmetrics_unnormalised_path():
    rng = np.random.default_rng(5)
    for i in range(20):
        gt = _blobs(rng, 37, 45) > 128
        pred = rng.random((37, 45)) * rng.uniform(0.1, 1) if i % 2 else cv2.GaussianBlur(gt * 0.8, (5, 5), 2)
        pred = pred.astype(np.float32 if i % 3 == 0 else np.float64)
        p64 = pred.astype(np.float64)
        lo, hi = p64.min(), p64.max()
        normalised = (p64 - lo) / (hi - lo) if hi != lo else p64
        assert_matches(pred, gt, reference(normalised, gt, normalize=False))


def test_float_map_equals_its_uint8_form():
    rng = np.random.default_rng(9)
    gt = _blobs(rng, 50, 60)
    pred = _pred_like(rng, gt, 3)
    a, b = foreground_scores(pred, gt), foreground_scores(pred / 255, gt)
    for key in ("sm", "wfm", "mae", "adp_em", "adp_fm"):
        assert getattr(a, key) == pytest.approx(getattr(b, key), abs=1e-12)
    np.testing.assert_allclose(a.em_curve, b.em_curve, atol=1e-12)


def test_single_metric_functions_agree_with_the_suite():
    rng = np.random.default_rng(11)
    gt = _blobs(rng, 45, 38)
    pred = _pred_like(rng, gt, 1)
    scores = foreground_scores(pred, gt)
    assert s_measure(pred, gt) == scores.sm
    assert weighted_f_measure(pred, gt) == scores.wfm
    assert mae(pred, gt) == pytest.approx(scores.mae, abs=1e-15)
    assert adaptive_e_measure(pred, gt) == scores.adp_em
    assert adaptive_f_measure(pred, gt) == scores.adp_fm
    np.testing.assert_array_equal(e_measure_curve(pred, gt), scores.em_curve)
    np.testing.assert_array_equal(f_measure_curve(pred, gt), scores.fm_curve)
    assert scores.em_curve.shape == scores.fm_curve.shape == (256,)


@pytest.mark.parametrize(
    "pred,gt,error",
    [
        (np.zeros((4, 4), np.uint8), np.zeros((4, 5), bool), ValueError),  # size mismatch
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool), ValueError),  # not (H, W)
        (np.zeros((0, 4), np.uint8), np.zeros((0, 4), bool), ValueError),  # empty
        (np.full((4, 4), 1.5), np.zeros((4, 4), bool), ValueError),  # float out of [0, 1]
        (np.full((4, 4), np.nan), np.zeros((4, 4), bool), ValueError),
        (np.zeros((4, 4), np.int32), np.zeros((4, 4), bool), TypeError),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.float32), TypeError),
        ([[0, 1]], np.zeros((1, 2), bool), TypeError),
    ],
)
def test_bad_inputs_raise_clear_errors(pred, gt, error):
    with pytest.raises(error):
        foreground_scores(pred, gt)


# ------------------------------------------------------------------------------- weighted-F internals


def test_nearest_foreground_matches_scipy_tie_breaking():
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(21)
    for i in range(60):
        h, w = (int(v) for v in rng.integers(3, 50, 2))
        gt = rng.random((h, w)) < rng.uniform(0.02, 0.5) if i % 2 else _blobs(rng, h, w) > 128
        if not gt.any():
            continue
        _, (rows, cols) = distance_transform_edt(~gt, return_indices=True)
        br, bc, nr, nc = _nearest_foreground_in_band(gt)
        np.testing.assert_array_equal(nr, rows[br, bc])
        np.testing.assert_array_equal(nc, cols[br, bc])


@pytest.mark.parametrize("shape", [(1, 1), (3, 200), (97, 61), (700, 900), (2100, 300)])
def test_distance_to_foreground_is_scipys(shape):
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(shape[0])
    gt = np.zeros(shape, bool)
    gt[tuple(rng.integers(0, s) for s in shape)] = True
    gt |= rng.random(shape) < 1e-4
    np.testing.assert_array_equal(distance_to_foreground(gt), distance_transform_edt(~gt))


# --------------------------------------------------------------------------------------------- meter


def _dataset(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(20, 70, 2))
        gt = _blobs(rng, h, w) if i % 9 else np.zeros((h, w), np.uint8)
        pairs.append((_pred_like(rng, gt, i % 7), gt))
    return pairs


def test_meter_matches_pysodmetrics_over_a_dataset():
    pairs = _dataset(30)
    suite = [sod.Smeasure(), sod.Emeasure(), sod.Fmeasure(), sod.WeightedFmeasure(), sod.MAE()]
    meter = ForegroundMeter()
    for pred, gt in pairs:
        for metric in suite:
            metric.step(pred, gt)
        meter.update(pred, gt)
    sm, em, fm, wfm, m = (metric.get_results() for metric in suite)
    expected = {
        "sm": sm["sm"],
        "wfm": wfm["wfm"],
        "mae": m["mae"],
        "adp_em": em["em"]["adp"],
        "mean_em": em["em"]["curve"].mean(),
        "max_em": em["em"]["curve"].max(),
        "adp_fm": fm["fm"]["adp"],
        "mean_fm": fm["fm"]["curve"].mean(),
        "max_fm": fm["fm"]["curve"].max(),
    }
    got = meter.compute()
    assert tuple(got) == FOREGROUND_KEYS
    for key in FOREGROUND_KEYS:
        assert got[key] == pytest.approx(expected[key], abs=TOL), key
    np.testing.assert_allclose(meter.curves()["em"], em["em"]["curve"], atol=TOL)


def test_meter_merge_is_exact_in_any_split_and_order():
    pairs = _dataset(24, seed=4)
    whole = ForegroundMeter()
    scores = [whole.update(pred, gt) for pred, gt in pairs]
    expected = whole.compute()
    rng = np.random.default_rng(0)
    for _ in range(5):
        parts = [ForegroundMeter() for _ in range(int(rng.integers(2, 6)))]
        for s in scores:
            parts[int(rng.integers(0, len(parts)))].add(s)
        order = rng.permutation(len(parts))
        merged = ForegroundMeter()
        for i in order:
            merged.merge(parts[i])
        assert merged.count == len(pairs)
        assert merged.compute() == expected  # bit for bit


def test_meter_state_dict_round_trips_through_json():
    meter = ForegroundMeter()
    for pred, gt in _dataset(5):
        meter.update(pred, gt)
    state = json.loads(json.dumps(meter.state_dict()))
    assert ForegroundMeter.from_state_dict(state).compute() == meter.compute()


def test_meter_edge_cases():
    empty = ForegroundMeter()
    assert set(empty.compute()) == set(FOREGROUND_KEYS)
    assert all(math.isnan(v) for v in empty.compute().values())
    with pytest.raises(ValueError, match="boundary"):
        ForegroundMeter().merge(ForegroundMeter(boundary=True))
    with pytest.raises(TypeError):
        ForegroundMeter().merge(object())  # type: ignore[arg-type]
    meter = ForegroundMeter()
    with pytest.raises(ValueError, match="sizes differ"):
        meter.update(np.zeros((5, 5), np.uint8), np.zeros((5, 6), np.uint8))
    assert meter.count == 0
    meter.update(np.zeros((5, 5), np.uint8), np.zeros((5, 5), np.uint8))
    meter.reset()
    assert meter.count == 0 and math.isnan(meter.compute()["sm"])
