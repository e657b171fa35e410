"""benchmarks/reward_throughput.py: the family-rewards table (CPU smoke run, tiny SAM2 and GrabCut)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_family_table_sets_box_point_rewards_beside_the_mask_rewards(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("reward_throughput", None)
    bench = importlib.import_module("reward_throughput")
    bench.main(["--device", "cpu", "--tiny", "--batch", "1", "--group", "2", "--image-size", "48"])
    rows = bench.main.family_rows
    assert [r["segmenter"] for r in rows[:3]] == ["GrabCut", "SAM2 tiny fp32", "SAM2 tiny fp32"]
    assert rows[0]["x vs GrabCut"] == 1.0 and rows[1]["x vs SAM2"] == 1.0
    box_point = [r for r in rows if r["segmenter"] == "none"]
    assert len(box_point) == 4 and all(r["us/completion"] > 0 for r in box_point)
    # ratios are measured, not asserted: speed targets live in the benchmark's printout (docs/benchmarks.md)
    assert all(r["x vs GrabCut"] > 0 and r["x vs SAM2"] > 0 for r in box_point)
    assert "Reward cost per completion" in capsys.readouterr().out
    bench.main(
        ["--device", "cpu", "--tiny", "--batch", "1", "--group", "2", "--image-size", "32", "--no-family"]
    )
    assert bench.main.family_rows == []
