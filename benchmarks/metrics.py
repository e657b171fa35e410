"""Time segr1's foreground suite (S, E, F, weighted F, MAE) against PySODMetrics on the same pairs.

Usage::

    python benchmarks/metrics.py [--n 500] [--size 768] [--seed 0]

Both implementations score the same N synthetic (prediction, ground truth) pairs: uint8 ground truths of
1-3 ellipses / polygons of random size, predictions made from them by shifting, dilating or eroding,
blurring and adding noise. Pairs are generated in chunks, outside the timed regions, and each chunk is
timed for both libraries back to back (so a busy machine slows both alike). The dataset-level results
are compared first (they must agree within 1e-6), then the times and the speed-up are printed.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import cv2
import numpy as np


def make_pair(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (pred uint8 (size, size), gt uint8 {0, 255} (size, size)) pair."""
    gt = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = (int(v) for v in rng.integers(size // 8, size - size // 8, 2))
        if rng.random() < 0.6:
            axes = tuple(int(v) for v in rng.integers(size // 20, size // 3, 2))
            cv2.ellipse(gt, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        else:
            k = int(rng.integers(3, 9))
            angles = np.sort(rng.uniform(0, 2 * np.pi, k))
            radii = rng.uniform(size / 20, size / 3, k)
            pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.int32)
            cv2.fillPoly(gt, [pts], 255)
    shift = rng.integers(-size // 40, size // 40 + 1, 2)
    pred = np.roll(gt, (int(shift[0]), int(shift[1])), axis=(0, 1)).astype(np.float32)
    kernel = np.ones((int(rng.integers(1, 12)),) * 2, np.uint8)
    pred = cv2.dilate(pred, kernel) if rng.random() < 0.5 else cv2.erode(pred, kernel)
    sigma = float(rng.uniform(0.5, 8))
    pred = cv2.GaussianBlur(pred, (0, 0), sigma)
    pred += rng.normal(0, rng.uniform(0, 25), pred.shape).astype(np.float32)
    return np.clip(pred, 0, 255).astype(np.uint8), gt


def pysod_suite():
    import py_sod_metrics as sod

    warnings.filterwarnings("ignore", message="This class will be removed")
    return [sod.Smeasure(), sod.Emeasure(), sod.Fmeasure(), sod.WeightedFmeasure(), sod.MAE()]


def pysod_results(suite) -> dict[str, float]:
    sm, em, fm, wfm, mae = (m.get_results() for m in suite)
    return {
        "sm": float(sm["sm"]),
        "wfm": float(wfm["wfm"]),
        "mae": float(mae["mae"]),
        "adp_em": float(em["em"]["adp"]),
        "mean_em": float(em["em"]["curve"].mean()),
        "max_em": float(em["em"]["curve"].max()),
        "adp_fm": float(fm["fm"]["adp"]),
        "mean_fm": float(fm["fm"]["curve"].mean()),
        "max_fm": float(fm["fm"]["curve"].max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="number of pairs (default 500)")
    parser.add_argument("--size", type=int, default=768, help="square map size in pixels (default 768)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=25, help="pairs generated and timed together")
    args = parser.parse_args(argv)

    from segr1.metrics import ForegroundMeter

    rng = np.random.default_rng(args.seed)
    ours, theirs = ForegroundMeter(), pysod_suite()
    t_ours = t_theirs = 0.0
    done = 0
    while done < args.n:
        pairs = [make_pair(rng, args.size) for _ in range(min(args.chunk, args.n - done))]
        start = time.perf_counter()
        for pred, gt in pairs:
            for metric in theirs:
                metric.step(pred, gt)
        t_theirs += time.perf_counter() - start
        start = time.perf_counter()
        for pred, gt in pairs:
            ours.update(pred, gt)
        t_ours += time.perf_counter() - start
        done += len(pairs)

    expected, got = pysod_results(theirs), ours.compute()
    worst = max(abs(got[k] - expected[k]) for k in expected)
    print(
        f"{args.n} pairs of {args.size}x{args.size}; max |segr1 - PySODMetrics| over the 9 scores = {worst:.2e}"
    )
    for key in expected:
        print(f"  {key:8s} segr1 {got[key]:.6f}  PySODMetrics {expected[key]:.6f}")
    if worst > 1e-6:
        print("FAIL: the values disagree", file=sys.stderr)
        return 1
    print(f"PySODMetrics: {t_theirs:8.2f} s  ({1000 * t_theirs / args.n:6.1f} ms/pair)")
    print(f"segr1:        {t_ours:8.2f} s  ({1000 * t_ours / args.n:6.1f} ms/pair)")
    print(f"speed-up:     {t_theirs / t_ours:8.2f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
