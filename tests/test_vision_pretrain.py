"""scripts/vision_pretrain.py: the tiny policy's vision tower learns the shape and colour on each image-token cell."""

from __future__ import annotations

import json

import pytest

import fakedata as fd


@pytest.fixture(scope="module")
def vp():
    return fd.load_script("vision_pretrain", register=True)


def test_cells_show_an_object_by_cover_or_centre_and_background_where_no_box_touches(vp):
    meta = {
        "size": [224, 224],
        "objects": [
            {"box": [0, 0, 56, 56], "centre": [28.0, 28.0]},  # covers cells 0, 1, 8, 9
            # small, across the corner of cells (4, 4) .. (5, 5): none half covered; its centre is in (4, 4)
            {"box": [126, 126, 150, 150], "centre": [138.0, 138.0]},
        ],
    }
    labels = vp.cell_labels(meta, 224)
    assert all(labels[c] == 0 for c in (0, 1, 8, 9))
    assert labels[4 * 8 + 4] == 1  # only its centre labels the small object's cell
    assert labels[7 * 8 + 7] == -1  # untouched: background
    assert 2 not in labels or labels[2] == -1
    assert 4 * 8 + 5 not in labels  # touched by the small box, neither covered nor centre: left out


def test_two_centres_in_one_cell_label_neither(vp):
    meta = {
        "size": [224, 224],
        "objects": [
            {"box": [30, 30, 40, 40], "centre": [35.0, 35.0]},
            {"box": [42, 42, 50, 50], "centre": [46.0, 46.0]},
        ],
    }
    assert 9 not in vp.cell_labels(meta, 224)


def test_a_short_run_trains_the_tower_and_keeps_the_language_model(vp, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from segr1.data.synthetic import write_scenes
    from segr1.policies.tiny import tiny_model_dir

    scenes, val = tmp_path / "scenes", tmp_path / "val"
    write_scenes("referring-seen", 12, scenes, seed=1, min_size=160, max_size=200, progress=False)
    write_scenes("referring-seen", 4, val, seed=2, min_size=160, max_size=200, progress=False)
    init, out = tiny_model_dir(), tmp_path / "pre"
    args = ["--init", str(init), "--out", str(out), "--scenes", str(scenes), "--val", str(val)]
    assert vp.main([*args, "--steps", "30", "--batch", "4", "--lr", "3e-3"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["after"]["colour"]["object_cells"] > 0
    assert report["after"]["colour"]["all"] > report["before"]["colour"]["all"]  # it learnt something
    before, after = load_file(init / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(before) == set(after)  # the heads are not saved: an ordinary Qwen2.5-VL
    vision = [k for k in before if ".visual." in k or k.startswith("visual.")]
    text = [k for k in before if k not in vision]
    assert vision and text
    assert any(not torch.equal(before[k], after[k]) for k in vision)
    assert all(torch.equal(before[k], after[k]) for k in text)
    meta = json.loads((out / "segr1_policy.json").read_text())
    assert meta["vision_pretrain"]["steps"] == 30
    with pytest.raises(SystemExit):
        vp.main(
            [
                "--init",
                str(out),
                "--out",
                str(out),
                "--scenes",
                str(scenes),
                "--val",
                str(val),
                "--steps",
                "1",
            ]
        )
