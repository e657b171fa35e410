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
    assert 0.0 <= row["named"] <= 1.0 and "named object boxed" in printed


def test_scene_think_targets_and_a_text_first_checkpoint(image_use, tmp_path, capsys):
    """``--think scene`` scores each scene against its own object list, and a checkpoint that records a
    text-first style is prompted text-first (the prompts differ, so the losses do)."""
    import shutil

    from segr1.data.synthetic import write_scenes
    from segr1.policies import read_policy_metadata, write_policy_metadata
    from segr1.policies.tiny import tiny_model_dir

    out = tmp_path / "colour"
    write_scenes("referring-colour", 3, out, seed=3, min_size=160, max_size=200, progress=False)
    text_first = tmp_path / "tiny-text-first"
    shutil.copytree(tiny_model_dir(), text_first)
    write_policy_metadata(
        text_first, {**read_policy_metadata(text_first), "prompt_style": "segr1-text-first"}
    )
    rows = {}
    for name, folder, think in (("plain", tiny_model_dir(), "object"), ("scene", tiny_model_dir(), "scene"),
                                ("text-first", text_first, "object")):  # fmt: skip
        rc = image_use.main(
            ["--policy", f"{name}={folder}", "--test", f"c={out}", "--n", "3", "--think", think]
        )
        assert rc == 0
        rows[name] = next(json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{"))
    assert rows["scene"]["loss_own_image"] != pytest.approx(rows["plain"]["loss_own_image"])
    assert rows["text-first"]["loss_own_image"] != pytest.approx(rows["plain"]["loss_own_image"])


def test_scene_naming_parses_both_list_forms():
    naming = fd.load_script("scene_naming", register=True)
    got = naming.parse_list(" red square [10,20,30,40]; green circle 100,50")
    assert got == [("red", "square", 20.0, 30.0), ("green", "circle", 100.0, 50.0)]
    assert naming.parse_list("object") == []
