"""segr1.data.synthetic_multi: multi-object referring scenes with exact per-instance masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from segr1.data.synthetic import COLOURS
from segr1.data.synthetic_multi import (
    PALETTE,
    PLURALS,
    QUERY_KINDS,
    SHAPES,
    multi_scene_at,
    write_multi_scenes,
)
from segr1.instances import connected_components, inscribed_point


def referred(scene) -> list[dict]:
    """The objects a phrase refers to, decided from the phrase and the described objects only."""
    words = scene.text.split()
    colour = next((w for w in words if w in PALETTE), None)
    shape = next((s for s in SHAPES if s in words or PLURALS[s] in words), None)
    return [
        o
        for o in scene.meta["objects"]
        if (colour is None or o["colour"] == colour) and (shape is None or o["shape"] == shape)
    ]


@pytest.mark.parametrize("index", range(40))
def test_scene_invariants(index):
    s = multi_scene_at(3, index)
    h, w = s.image.shape[:2]
    assert s.image.dtype == np.uint8 and s.image.shape == (h, w, 3) and s.instances.shape == (h, w)
    assert [w, h] == s.meta["size"] and 160 <= w <= 512 and 160 <= h <= 512
    objs = s.meta["objects"]
    assert set(np.unique(s.instances)) == set(range(len(objs) + 1))  # every object visible, ids 1..N
    assert s.n_targets == sum(o["target"] for o in objs) >= 1 and all(
        o["target"] for o in objs[: s.n_targets]
    )
    # the phrase refers to exactly the targets (distractors never satisfy it)
    assert referred(s) == objs[: s.n_targets], s.text
    if s.n_targets == 1:
        assert s.text.startswith("the ") and s.meta["query"] == "single"
    elif s.n_targets == 2:
        assert s.text.split()[0] in ("both", "the", "all")
    else:
        assert s.text.startswith("all the ")
    # exact masks: each instance is one connected blob, painted in its colour, >= 3 px from the others
    for k, o in enumerate(objs, start=1):
        m = s.instances == k
        assert len(connected_components(m)) == 1
        box = o["box"]
        ys, xs = np.nonzero(m)
        assert box == [xs.min(), ys.min(), xs.max(), ys.max()]
        mean = s.image[m].astype(float).mean(0)
        assert np.abs(mean - COLOURS[o["colour"]]).max() < 14
    assert np.array_equal(s.mask, (s.instances >= 1) & (s.instances <= s.n_targets))
    assert len(connected_components(s.mask)) == s.n_targets  # gaps keep the referred objects apart
    np.testing.assert_array_equal(s.boxes, [o["box"] for o in objs[: s.n_targets]])
    np.testing.assert_array_equal(s.points[0], inscribed_point(s.target_masks[0]))
    assert np.all(s.target_instances[s.instances > s.n_targets] == 0)


def test_pure_function_of_seed_and_index():
    a, b = multi_scene_at(0, 5), multi_scene_at(0, 5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.instances, b.instances) and a.text == b.text
    assert not np.array_equal(multi_scene_at(0, 6).image, a.image) or multi_scene_at(0, 6).text != a.text
    assert multi_scene_at(1, 5).meta["id"] == "multi-1-000005"
    fixed = multi_scene_at(0, 0, size=(96, 64))
    assert fixed.image.shape == (64, 96, 3)
    for bad in (dict(size=20), dict(min_size=10), dict(min_size=300, max_size=200)):
        with pytest.raises(ValueError):
            multi_scene_at(0, 0, **bad)
    with pytest.raises(ValueError):
        multi_scene_at(-1, 0)


def test_the_families_are_all_drawn_with_several_targets():
    scenes = [multi_scene_at(0, i) for i in range(120)]
    kinds = {s.meta["query"] for s in scenes}
    assert kinds == set(QUERY_KINDS)
    counts = [s.n_targets for s in scenes]
    assert min(counts) == 1 and max(counts) >= 4 and np.mean([c >= 2 for c in counts]) > 0.6
    assert any(s.text.startswith("both ") for s in scenes) and any("shapes" in s.text for s in scenes)


def test_write_multi_scenes(tmp_path):
    from segr1.data.folders import read_manifest
    from segr1.instances import decode_instance_map

    samples = write_multi_scenes(3, tmp_path / "multi", seed=2, size=128)
    back = read_manifest(tmp_path / "multi" / "manifest.jsonl")
    assert [s.id for s in back] == [s.id for s in samples] == [f"multi-2-00000{i}" for i in range(3)]
    for s in back:
        scene = multi_scene_at(2, s.meta["index"], size=128)
        assert s.task == "referring" and s.text == scene.text
        np.testing.assert_array_equal(np.asarray(Image.open(s.image)), scene.image)
        np.testing.assert_array_equal(np.asarray(Image.open(s.mask)) > 128, scene.mask)
        inst = decode_instance_map(tmp_path / "multi" / s.meta["instances"])
        np.testing.assert_array_equal(inst, scene.target_instances)
        assert s.meta["boxes"] == scene.boxes.tolist() and s.meta["points"] == scene.points.tolist()
        json.dumps(s.meta)
    with pytest.raises(ValueError):
        write_multi_scenes(-1, tmp_path / "x")
