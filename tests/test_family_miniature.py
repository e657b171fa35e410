"""scripts/family_miniature.py: its format-validity count and table, and (slow) the whole run at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fakedata as fd

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    return fd.load_script("family_miniature")


def test_format_validity_and_table(tmp_path):
    script = load_script()
    good = '<think></think><answer>[{"bbox_2d": [1,2,30,40], "point_2d": [5,6]}]</answer>'
    half = '<think></think><answer>[{"bbox_2d": [1,2,30,40], "point_2d": [5]}]</answer>'
    lines = [{"answer": a} for a in (good, half, good + " trailing", None)]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert script.format_validity(tmp_path) == {"format_valid": 0.25, "json_valid": 0.75}
    summary = {"policies": {"sft": {"seconds_per_step": None, "giou": 0.5, "format_valid": 1.0},
                            "grpo-mask-s0": {"seconds_per_step": 2.0, "giou": 0.25}}}  # fmt: skip
    rows = script.table(summary).splitlines()
    assert rows[2].startswith("| sft | n/a | 0.500 |") and rows[3].startswith(
        "| grpo-mask-s0 | 2.00 | 0.250 |"
    )
    assert rows[2].endswith("| 1.000 |") and rows[3].endswith("| n/a |")


@pytest.mark.slow
def test_the_whole_run_at_a_tiny_size(tmp_path):
    script = load_script()
    out = tmp_path / "mini"
    args = ["--out", str(out), "--sft-steps", "2", "--grpo-steps", "1", "--eval-n", "4", "--train-n", "8",
            "--seeds", "0", "--max-tokens", "16"]  # fmt: skip
    assert script.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["policies"]) == {"sft", "grpo-boxpoint-s0", "grpo-mask-s0", "grpo-boxpoint (mean)",
                                        "grpo-mask (mean)"}  # fmt: skip
    assert all(summary["policies"][k]["n_scored"] == 4 for k in ("sft", "grpo-boxpoint-s0", "grpo-mask-s0"))
    assert summary["policies"]["grpo-mask-s0"]["seconds_per_step"] > 0
