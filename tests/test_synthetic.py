"""Synthetic scenes: determinism, exact masks, family properties, the `segr1 data synth` command."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest
from PIL import Image

from segr1.cli import main
from segr1.data.folders import read_manifest
from segr1.data.io import read_image, read_mask
from segr1.data.synthetic import (
    COLOURS,
    KINDS,
    REF_SHAPES,
    SIZE_WORDS,
    generate_scene,
    iter_scenes,
    scene_at,
    scene_id,
)


def _box_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_and_index_give_identical_bytes(kind):
    a, b = scene_at(kind, 7, 3), scene_at(kind, 7, 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.mask, b.mask)
    assert a.text == b.text and a.meta == b.meta
    c = generate_scene(kind, 123, size=96)
    d = generate_scene(kind, np.random.default_rng(123), size=96)
    assert c.image.tobytes() == d.image.tobytes()


@pytest.mark.parametrize("kind", KINDS)
def test_scenes_differ_across_index_seed_and_do_not_depend_on_order(kind):
    ref = scene_at(kind, 0, 4, size=96)
    assert scene_at(kind, 0, 5, size=96).image.tobytes() != ref.image.tobytes()
    assert scene_at(kind, 1, 4, size=96).image.tobytes() != ref.image.tobytes()
    listed = list(iter_scenes(kind, 0, 3, start=3, size=96))
    assert listed[1].image.tobytes() == ref.image.tobytes()
    assert ref.meta["id"] == scene_id(kind, 0, 4) and ref.meta["index"] == 4 and ref.meta["seed"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_image_and_mask_types_shapes_and_sizes(kind):
    shapes = set()
    for i in range(12):
        s = scene_at(kind, 2, i, min_size=64, max_size=200)
        h, w = s.mask.shape
        assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8
        assert s.mask.dtype == bool
        assert 64 <= w <= 200 and 64 <= h <= 200
        assert s.meta["size"] == [w, h]
        shapes.add((w, h))
        json.dumps(s.meta)  # JSON-serialisable
    assert any(w != h for w, h in shapes)
    fixed = scene_at(kind, 0, 0, size=(120, 70))
    assert fixed.image.shape == (70, 120, 3)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [16, 24, 40])
def test_tiny_images_still_have_a_non_empty_mask(kind, size):
    for i in range(5):
        s = scene_at(kind, 0, i, size=size)
        assert s.mask.any() and not s.mask.all()


@pytest.mark.parametrize("kind", KINDS)
def test_masks_are_non_empty_inside_the_image_and_match_meta(kind):
    for i in range(20):
        s = scene_at(kind, 3, i, size=(160, 128))
        area = s.mask.mean()
        assert 0.003 < area < 0.9
        box = _box_of(s.mask)
        if "objects" in s.meta:
            assert box == s.meta["objects"][0]["box"]
            assert int(s.mask.sum()) == s.meta["objects"][0]["area"]
        else:
            assert box == s.meta["box"]
            # objects are placed fully inside the image
            assert box[0] >= 1 and box[1] >= 1 and box[2] <= 159 and box[3] <= 127


def _contrast(scene) -> float:
    img = scene.image.astype(np.float64)
    return float(np.linalg.norm(img[scene.mask].mean(0) - img[~scene.mask].mean(0)))


def test_salient_masks_cover_the_distinct_object():
    contrasts = [_contrast(scene_at("salient", 11, i, size=128)) for i in range(30)]
    assert min(contrasts) > 40  # the painted object is what the mask covers
    assert np.mean(contrasts) > 90


def test_camouflaged_contrast_is_lower_than_salient_but_not_zero():
    sal = [_contrast(scene_at("salient", 5, i, size=128)) for i in range(50)]
    cam = [_contrast(scene_at("camouflaged", 5, i, size=128)) for i in range(50)]
    assert np.mean(cam) < 0.4 * np.mean(sal)
    assert np.median(cam) > 8  # the object is still there to find


def _resolve(text: str, objects: list[dict]) -> int:
    """Index of the single object the phrase names; fails the test if it names none or several."""
    words = text.split()
    assert words[0] == "the"
    colour = next((w for w in words if w in COLOURS), None)
    shape = next((w for w in words if w in REF_SHAPES), None)
    cands = [
        i
        for i, o in enumerate(objects)
        if (colour is None or o["colour"] == colour) and (shape is None or o["shape"] == shape)
    ]
    assert cands, text
    extremes = {
        ("leftmost", "on the left"): lambda o: o["centre"][0],
        ("rightmost", "on the right"): lambda o: -o["centre"][0],
        ("topmost", "at the top"): lambda o: o["centre"][1],
        ("lowest", "at the bottom"): lambda o: -o["centre"][1],
    }
    key = next((k for cue, k in extremes.items() if any(c in text for c in cue)), None)
    if key is None and any(w in words for w in SIZE_WORDS["large"]):
        key = lambda o: -o["area"]  # noqa: E731
    elif key is None and any(w in words for w in SIZE_WORDS["small"]):
        key = lambda o: o["area"]  # noqa: E731
    if key is None:
        assert len(cands) == 1, (text, objects)
        return cands[0]
    ranked = sorted(cands, key=lambda i: key(objects[i]))
    assert len(ranked) >= 2, (text, objects)  # a qualifier is only used when needed
    assert key(objects[ranked[0]]) < key(objects[ranked[1]]), (text, objects)  # strictly unique
    return ranked[0]


def test_referring_phrase_names_exactly_the_masked_object():
    texts = []
    for i in range(150):
        s = scene_at("referring", 9, i, size=(200, 160))
        objs = s.meta["objects"]
        assert 2 <= len(objs) <= 4
        assert _resolve(s.text, objs) == s.meta["target"] == 0
        assert int(s.mask.sum()) == objs[0]["area"]
        texts.append(s.text)
    joined = " | ".join(texts)
    for cue in ("on the left", "at the ", "leftmost", "large", "small"):
        assert (
            cue in joined or cue.replace("large", "big") in joined or cue.replace("small", "little") in joined
        )
    assert len(set(texts)) > 60


def test_invalid_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="kind"):
        scene_at("glowing", 0, 0)
    with pytest.raises(ValueError, match="min_size"):
        generate_scene("salient", 0, min_size=300, max_size=200)
    with pytest.raises(ValueError, match="16x16"):
        generate_scene("salient", 0, size=(8, 40))
    with pytest.raises(ValueError, match="seed"):
        scene_at("salient", -1, 0)


@pytest.mark.slow
def test_generation_speed_at_256_pixels():
    t0 = time.perf_counter()
    n = 0
    for kind in KINDS:
        for i in range(60):
            scene_at(kind, 0, i, size=256)
            n += 1
    assert n / (time.perf_counter() - t0) > 50


def test_cli_synth_writes_images_masks_manifest_and_refs(tmp_path):
    out = tmp_path / "ref"
    rc = main(
        ["data", "synth", "--kind", "referring", "--n", "4", "--seed", "3", "--out", str(out)]
        + ["--min-size", "64", "--max-size", "96", "--no-progress"]
    )
    assert rc == 0
    ids = [scene_id("referring", 3, i) for i in range(4)]
    assert sorted(p.stem for p in (out / "images").iterdir()) == ids
    assert sorted(p.stem for p in (out / "masks").iterdir()) == ids
    refs = [json.loads(line) for line in (out / "refs.jsonl").read_text().splitlines()]
    assert [r["id"] for r in refs] == ids
    samples = read_manifest(out / "manifest.jsonl")
    assert [s.id for s in samples] == ids
    for i, (s, r) in enumerate(zip(samples, refs, strict=True)):
        scene = scene_at("referring", 3, i, min_size=64, max_size=96)
        assert s.task == "referring" and s.text == r["text"] == scene.text
        assert s.image == (out / r["image"]).absolute()
        assert np.array_equal(read_image(s.image), scene.image)  # PNG is lossless
        assert np.array_equal(read_mask(s.mask), scene.mask)
        assert s.meta["dataset"] == "synthetic-referring"


def test_cli_synth_foreground_has_manifest_but_no_refs(tmp_path):
    out = tmp_path / "sal"
    assert (
        main(
            [
                "data",
                "synth",
                "--kind",
                "salient",
                "--n",
                "2",
                "--out",
                str(out),
                "--size",
                "48",
                "--no-progress",
            ]
        )
        == 0
    )
    assert not (out / "refs.jsonl").exists()
    samples = read_manifest(out / "manifest.jsonl")
    assert [s.task for s in samples] == ["foreground", "foreground"]
    assert all(s.text is None for s in samples)
    mask_values = np.unique(np.asarray(Image.open(samples[0].mask)))
    assert set(mask_values.tolist()) <= {0, 255}


def test_synth_text_cues_every_foreground_scene_and_changes_nothing_else(tmp_path, capsys):
    from segr1.data.synthetic import write_scenes

    plain = write_scenes("camouflaged-hard", 2, tmp_path / "plain", seed=3, size=64, progress=False)
    cue = "The object is  camouflaged."
    args = ["data", "synth", "--kind", "camouflaged-hard", "--n", "2", "--seed", "3", "--size", "64"]
    assert main([*args, "--out", str(tmp_path / "cued"), "--text", cue, "--no-progress"]) == 0
    cued = read_manifest(tmp_path / "cued" / "manifest.jsonl")
    assert [s.text for s in cued] == ["The object is camouflaged."] * 2  # one line, single spaces
    for a, b in zip(plain, cued, strict=True):
        assert a.text is None and a.meta == b.meta and a.task == b.task == "foreground"
        assert np.array_equal(read_image(a.image), read_image(b.image))
    rc = main(
        ["data", "synth", "--kind", "referring-seen", "--n", "1", "--out", str(tmp_path / "r"), "--text", "x"]
    )
    assert rc == 2 and "foreground families" in capsys.readouterr().err
    with pytest.raises(ValueError, match="foreground families"):
        write_scenes("reasoning", 1, tmp_path / "q", text="x", progress=False)
    with pytest.raises(ValueError, match="1-500 characters"):
        write_scenes("salient", 1, tmp_path / "s", text="   ", progress=False)


def test_cli_synth_rejects_bad_sizes(tmp_path, capsys):
    rc = main(
        ["data", "synth", "--kind", "salient", "--n", "1", "--out", str(tmp_path), "--min-size", "300"]
        + ["--max-size", "100"]
    )
    assert rc == 2
    assert "--min-size" in capsys.readouterr().err


def test_cli_check_without_check_module_gives_a_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "segr1.data.check", None)  # import fails as if the module were absent
    assert main(["data", "check", str(tmp_path)]) == 2
    assert "not available" in capsys.readouterr().err


def test_silhouette_is_a_light_flat_object_on_a_dark_flat_background():
    for i in range(6):
        s = scene_at("silhouette", 2, i, min_size=160, max_size=320)
        fg, bg = s.image[s.mask].astype(float), s.image[~s.mask].astype(float)
        assert fg.mean() > 170 and bg.mean() < 85, (fg.mean(), bg.mean())
        assert fg.std() < 15 and bg.std() < 15  # flat: grain, noise and a soft illumination ramp only
        assert s.meta["fg_texture"] == s.meta["bg_texture"] == "flat"
        assert s.meta["box"] == _box_of(s.mask)


def test_referring_colour_names_the_target_by_its_colour_only():
    from segr1.data.synthetic import COLOURS, CURRICULUM_COLOURS

    for i in range(40):
        s = scene_at("referring-colour", 4, i, min_size=16 if i % 5 == 0 else 160, max_size=320)
        target, other = s.meta["objects"]
        words = s.text.split()
        assert words[0] == "the" and words[1] == target["colour"] and words[2] in ("object", "shape", "one")
        assert target["shape"] == other["shape"] and target["colour"] != other["colour"]
        assert {target["colour"], other["colour"]} <= set(CURRICULUM_COLOURS)
        mean = s.image[s.mask].astype(float).mean(axis=0)
        nearest = min(COLOURS, key=lambda c: np.linalg.norm(np.array(COLOURS[c]) - mean))
        assert nearest == target["colour"], (i, nearest, target)
        background = ~s.mask & (np.abs(s.image.astype(float) - mean).sum(axis=2) > 150)
        assert s.image[background].astype(float).mean() < 120  # the rest is the dark background + the other
