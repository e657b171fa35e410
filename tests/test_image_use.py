"""scripts/image_use.py: the shuffled-image loss and greedy-box checks of whether a policy uses the image."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import fakedata as fd

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def image_use():
    return fd.load_script("image_use", register=True)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from segr1.data.synthetic import write_scenes

    out = tmp_path_factory.mktemp("scenes") / "salient"
    write_scenes("salient", 4, out, seed=3, min_size=160, max_size=200, progress=False)
    return out


def test_reports_every_policy_and_family(image_use, scenes, capsys):
    from segr1.policies.tiny import tiny_model_dir

    rc = image_use.main(["--policy", f"tiny={tiny_model_dir()}", "--test", f"salient={scenes}", "--n", "4"])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    row = lines[0]
    assert row["policy"] == "tiny" and row["family"] == "salient" and row["n"] == 4
    for key in ("loss_own_image", "loss_shuffled_image", "box_iou", "fixed_box_iou"):
        assert math.isfinite(row[key])
    assert row["gain"] == pytest.approx(row["loss_shuffled_image"] - row["loss_own_image"])
    assert 0.0 < row["fixed_box_iou"] <= 1.0


def test_text_scenes_get_their_own_task_text_and_a_shuffled_text_loss(image_use, tmp_path, capsys):
    from segr1.data.synthetic import write_scenes
    from segr1.policies.tiny import tiny_model_dir

    out = tmp_path / "referring"
    write_scenes("referring-seen", 3, out, seed=3, min_size=160, max_size=200, progress=False)
    rc = image_use.main(["--policy", f"tiny={tiny_model_dir()}", "--test", f"ref={out}", "--n", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    row = next(json.loads(line) for line in printed.splitlines() if line.startswith("{"))
    assert row["text_gain"] == pytest.approx(row["loss_shuffled_text"] - row["loss_own_image"])
    assert "text gain" in printed
