"""segr1.data.trl: Samples -> TRL conversational vision datasets (GRPO rows, SFT rows with mask targets)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segr1.answer import parse_answer
from segr1.data.records import Sample
from segr1.data.trl import describe_mask, sft_target, to_grpo_dataset, to_sft_dataset
from segr1.geometry import mask_to_box, resize_to_frame
from segr1.prompts import SYSTEM_PROMPT
from segr1.rewards import decode_mask


def _sample(i: int, w: int = 90, h: int = 60, as_paths=None) -> Sample:
    rng = np.random.default_rng(i)
    image = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[10 + i : 40, 20 : 50 + i] = True
    if as_paths is not None:
        ip, mp = as_paths / f"im{i}.jpg", as_paths / f"gt{i}.png"
        Image.fromarray(image).save(ip)
        Image.fromarray(mask.astype(np.uint8) * 255).save(mp)
        return Sample(id=f"s{i}", image=ip, mask=mp)
    return Sample(id=f"s{i}", image=image, mask=mask)


def test_grpo_rows_have_placeholder_prompt_frame_image_and_mask(tmp_path):
    samples = [_sample(0), _sample(1, as_paths=tmp_path)]
    ds = to_grpo_dataset(samples, frame=56)
    assert len(ds) == 2
    for i, row in enumerate(ds.__getitems__([0, 1])):
        assert set(row) == {"prompt", "image", "mask", "id", "task", "text"}
        system, user = row["prompt"]
        assert system == {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}
        assert user["role"] == "user"
        assert user["content"][0] == {"type": "image"}  # placeholder: TRL fills it from the "image" column
        assert "56x56" in user["content"][1]["text"]
        assert isinstance(row["image"], Image.Image) and row["image"].size == (56, 56)
        gt = decode_mask(row["mask"])
        assert gt.shape == (60, 90)  # ground truth at its own resolution
        np.testing.assert_array_equal(gt, decode_mask(samples[i].mask) if i else samples[0].mask)
        assert row["task"] == "foreground" and row["id"] == f"s{i}"


def test_grpo_rows_go_through_trl_image_injection():
    from trl.data_utils import prepare_multimodal_messages

    row = to_grpo_dataset([_sample(0)], frame=56, system=None)[0]
    assert [m["role"] for m in row["prompt"]] == ["user"]
    filled = prepare_multimodal_messages(row["prompt"], images=[row["image"]])
    assert filled[0]["content"][0]["image"] is row["image"]


def test_task_override_text_and_default_frame():
    s = _sample(0)
    s.text, s.task = "the red thing", "referring"
    row = to_grpo_dataset([s])[0]
    assert row["image"].size == (1024, 1024)  # referring default frame
    assert "the red thing" in row["prompt"][-1]["content"][1]["text"]
    pre = to_grpo_dataset([_sample(0)], task="prerl", frame=56)[0]
    assert pre["task"] == "prerl"
    assert [m["role"] for m in pre["prompt"]] == ["user"]  # the pre-RL stage has no system prompt
    assert "<bbox>" not in pre["prompt"][0]["content"][1]["text"]


def test_samples_without_masks_are_left_out_with_a_warning(caplog):
    samples = [_sample(0), Sample(id="nomask", image=np.zeros((8, 8, 3), np.uint8), mask=None)]
    ds = to_grpo_dataset(samples, frame=28)
    assert len(ds) == 1
    assert "without a ground-truth mask" in caplog.text
    with pytest.raises(ValueError, match="no usable samples"):
        to_grpo_dataset(samples[1:], frame=28)
    with pytest.raises(ValueError, match="task"):
        to_grpo_dataset(samples, task="nope")
    with pytest.raises(ValueError, match="frame"):
        to_grpo_dataset(samples, frame=0)


def test_sft_target_is_a_complete_answer_from_the_mask():
    yy, xx = np.mgrid[:60, :90]
    mask = ((xx - 40) / 20) ** 2 + ((yy - 26) / 14) ** 2 <= 1  # an ellipse: its box has background corners
    frame = 112
    text = sft_target(mask, frame=frame, rng=0, n_pos=3, n_neg=2)
    p = parse_answer(text)
    assert p.validity.is_complete(), text
    small = resize_to_frame(mask, frame)
    np.testing.assert_array_equal(p.boxes[0], mask_to_box(small))
    assert p.labels.tolist() == [1, 1, 1, 0, 0]
    xs, ys = p.points[:, 0].astype(int), p.points[:, 1].astype(int)
    assert small[ys[:3], xs[:3]].all()  # positives on the object
    assert not small[ys[3:], xs[3:]].any()  # negatives off it ...
    x1, y1, x2, y2 = p.boxes[0]
    assert ((xs[3:] >= x1) & (xs[3:] <= x2) & (ys[3:] >= y1) & (ys[3:] <= y2)).all()  # ... but inside the box
    assert p.think == describe_mask(small)
    assert sft_target(mask, frame=frame, rng=0, n_pos=3, n_neg=2) == text  # seeded


def test_sft_target_points_only_and_think_modes():
    mask = np.zeros((50, 50), bool)
    mask[5:15, 30:45] = True
    p = parse_answer(sft_target(mask, frame=100, rng=1, points_only=True, think="none"))
    assert p.validity.is_complete(points_only=True) and not p.validity.bbox
    assert p.think == ""
    assert parse_answer(sft_target(mask, frame=100, rng=1, think="look")).think == "look"
    thin = np.zeros((400, 400), bool)
    thin[200, 100:300] = True  # thinner than one frame pixel
    assert parse_answer(sft_target(thin, frame=28, rng=0)).validity.is_complete()


@pytest.mark.parametrize(
    ("box", "words"),
    [
        ((2, 2, 10, 10), "small object at the top left"),
        ((40, 40, 60, 60), "small object in the center"),
        ((5, 50, 95, 99), "large object at the bottom"),
        ((70, 30, 99, 70), "medium object at the right"),
    ],
)
def test_describe_mask(box, words):
    m = np.zeros((100, 100), bool)
    m[box[1] : box[3] + 1, box[0] : box[2] + 1] = True
    assert describe_mask(m) == f"a {words}"
    assert describe_mask(np.zeros((4, 4), bool)) == "no object is visible"


def test_sft_rows_are_prompt_completion_image_and_stable(tmp_path):
    samples = [_sample(i, as_paths=tmp_path if i % 2 else None) for i in range(4)]
    ds = to_sft_dataset(samples, frame=56, n_pos=2, n_neg=1, seed=3)
    rows = ds.__getitems__([0, 1, 2, 3])
    for row in rows:
        assert set(row) == {"prompt", "completion", "image", "id", "task"}
        (msg,) = row["completion"]
        assert msg["role"] == "assistant"
        assert parse_answer(msg["content"]).validity.is_complete()
        assert row["image"].size == (56, 56)
    again = to_sft_dataset(samples, frame=56, n_pos=2, n_neg=1, seed=3).__getitems__([3, 2, 1, 0])
    assert [r["completion"] for r in again] == [r["completion"] for r in rows[::-1]]
    other = to_sft_dataset(samples, frame=56, n_pos=2, n_neg=1, seed=4)[0]["completion"]
    assert other != rows[0]["completion"]
    with pytest.raises(ValueError, match="at least one point"):
        to_sft_dataset(samples, n_pos=0, n_neg=0)


def test_dataset_transform_survives_pickling():
    import pickle

    ds = to_grpo_dataset([_sample(0)], frame=28)
    _ = ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[0]["image"].size == (28, 28)


def test_in_memory_images_with_the_same_id_are_not_confused():
    a, b = _sample(0), _sample(1)
    b.id = a.id  # ids are unique per dataset only; two sources may repeat one
    rows = to_grpo_dataset([a, b], frame=28).__getitems__([0, 1])
    assert np.asarray(rows[0]["image"]).tobytes() != np.asarray(rows[1]["image"]).tobytes()


def test_scene_think_lists_the_objects_in_reading_order_in_the_model_frame():
    from segr1.data.trl import scene_think

    meta = {
        "size": [200, 100],
        "target": 1,
        "objects": [
            {"colour": "green", "shape": "circle", "centre": [150.0, 80.0], "box": [140, 70, 160, 90]},
            {"colour": "red", "shape": "square", "centre": [50.0, 20.0], "box": [40, 10, 60, 30]},
            {"colour": "blue", "shape": "star", "centre": [10.0, 80.0], "box": [0, 70, 20, 90]},
        ],
    }
    # x scaled by 224/200, y by 224/100, box ends exclusive -> inclusive; sorted by centre y, then x
    want = " red square [45,22,66,66]; blue star [0,157,21,201]; green circle [157,157,178,201]"
    assert scene_think(meta, 224) == want
    # the target's entry is the box the answer carries (the mask's), so that copying it is exact
    assert scene_think(meta, 224, target_box=[44, 20, 67, 68]).startswith(" red square [44,20,67,68]; blue")
    assert scene_think(meta, 224, centres=True) == " red square 56,45; blue star 11,179; green circle 168,179"
    # untrusted metadata: anything malformed gives no list (the caller falls back), never an exception
    for bad in (None, {}, {"size": [0, 10], "objects": meta["objects"]}, {"size": [10, 10], "objects": []},
                {"size": [10, 10], "objects": [{"colour": "red"}]},
                {"size": [10, 10], "objects": [{"colour": "red", "shape": "x", "centre": [1, 1]}]},
                {"size": [10, 10], "objects": [{"colour": "red</think>", "shape": "x", "centre": [1, 1],
                                                "box": [0, 0, 2, 2]}]},
                {"size": "big", "objects": meta["objects"]}):  # fmt: skip
        assert scene_think(bad, 224) is None


def test_scene_think_targets_list_text_task_scenes_and_keep_foreground_targets_plain():
    objects = [{"colour": "red", "shape": "square", "centre": [35.0, 25.0], "box": [20, 11, 51, 40]},
               {"colour": "blue", "shape": "ring", "centre": [80.0, 50.0], "box": [75, 45, 86, 56]}]  # fmt: skip
    meta = {"size": [90, 60], "objects": objects, "target": 0}
    base = _sample(1)  # mask rows 11..39, columns 20..50
    referring = Sample(
        id="r", image=base.image, mask=base.mask, text="the red square", task="referring", meta=meta
    )
    foreground = Sample(id="f", image=base.image, mask=base.mask, task="foreground", meta=meta)
    bare = Sample(id="b", image=base.image, mask=base.mask, text="the red square", task="referring")
    ds = to_sft_dataset(
        [referring, foreground, bare], frame=112, system=None, think="scene", n_pos=1, n_neg=0
    )
    targets = [row["completion"][0]["content"] for row in ds]
    thinks = [t.split("</think>")[0].removeprefix("<think>") for t in targets]
    assert thinks[1:] == ["object", "object"]
    box = parse_answer(targets[0]).boxes[0]
    listed = "[" + ",".join(str(int(v)) for v in box) + "]"
    assert thinks[0] == f" red square {listed}; blue ring [93,84,106,104]"  # the answer's box, copied exactly
