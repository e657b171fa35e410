"""scripts/token_probe.py: linear probes for the colour and shape of the object on each image-token cell."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fakedata as fd
from segr1.train.grounding import object_cells


@pytest.fixture(scope="module")
def probe():
    return fd.load_script("token_probe", register=True)


def test_object_cells_are_the_cells_one_object_covers(probe):
    meta = {"size": [224, 224], "objects": [{"box": [0, 0, 56, 56]}, {"box": [28, 28, 84, 84]}]}
    cells = object_cells(meta, 224, 0.5)
    assert cells[0] == 0 and cells[1] == 0 and cells[8] == 0  # the first object's own cells
    assert 9 not in cells  # (row 1, col 1) is covered by both: left out
    assert cells[2 * 8 + 2] == 1 and set(cells.values()) == {0, 1}


def test_probe_accuracy_reads_a_linear_label_and_not_noise(probe):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    y = np.where(x[:, 0] > 0, "a", "b")
    train = np.arange(400) < 300
    assert probe.probe_accuracy(x, y, train)["probe"] > 0.95
    noise = probe.probe_accuracy(x, rng.choice(["a", "b"], size=400), train)
    assert noise["probe"] < 0.7 and noise["classes"] == 2


def test_a_run_on_a_few_scenes_prints_both_attributes_per_layer(probe, tmp_path, capsys):
    from segr1.data.synthetic import write_scenes
    from segr1.policies.tiny import tiny_model_dir

    scenes = tmp_path / "scenes"
    write_scenes("referring-seen", 8, scenes, seed=1, min_size=160, max_size=200, progress=False)
    assert probe.main(["--model", str(tiny_model_dir()), "--scenes", str(scenes), "--layer", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    row = report["layer 0"]
    assert set(row) == {"colour", "shape"} and row["colour"]["cells_test"] > 0
    assert 0 <= row["shape"]["probe"] <= 1
