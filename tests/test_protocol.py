"""segr1.protocol: the release-protocol switches, their presets and spec strings, and each switch's effect on
the pure functions that apply it (prompt handling, the model-frame image, the reward, the segmenters)."""

from __future__ import annotations

import io
from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

from segr1.answer import AnswerValidity, SegPrompt, parse_answer
from segr1.geometry import resize_to_frame, split_by_box
from segr1.protocol import (
    SWITCHES,
    Protocol,
    adjust_prompt,
    describe,
    get_protocol,
    model_image,
    preset,
    qwen_rounded,
    segmenter_options,
)


def test_segr1_preset_is_the_default_dataclass():
    for stage in ("train", "eval", "demo"):
        assert preset("segr1", stage) == Protocol() == get_protocol(None, stage) == get_protocol("", stage)
    assert describe(Protocol()) == "segr1"


def test_seg_r1_preset_takes_the_release_side_of_every_switch_but_the_ablations():
    base = Protocol()
    for stage in ("train", "eval", "demo"):
        release = preset("seg-r1", stage)
        assert release.ablations == ()  # never in a preset
        changed = {f.name for f in fields(Protocol) if getattr(release, f.name) != getattr(base, f.name)}
        assert not any(name.startswith("ablation_") for name in changed)
        assert {"labels_mismatch", "reasoning_boxes", "single_point_multimask", "sam_fp32",
                "reward_requires_complete", "refcoco_sentences", "reasonseg_query", "reasonseg_ignore"} <= changed  # fmt: skip
    ev, demo, train = preset("seg-r1", "eval"), preset("seg-r1", "demo"), preset("seg-r1", "train")
    assert (ev.frame_filter, ev.jpeg_round_trip, ev.qwen_vl_utils_rounding) == ("bicubic", True, True)
    assert (demo.frame_filter, demo.jpeg_round_trip, demo.qwen_vl_utils_rounding) == ("bilinear", True, True)
    assert (train.frame_filter, train.jpeg_round_trip, train.qwen_vl_utils_rounding) == (
        "bilinear",
        False,
        False,
    )
    assert demo.demo_prompt == "release" and ev.labels_mismatch == "drop_points"


def test_spec_strings_with_overrides():
    p = get_protocol("seg-r1,labels_mismatch=foreground, sam_fp32=false")
    assert p.labels_mismatch == "foreground" and p.sam_fp32 is False and p.reasoning_boxes == "first"
    assert p.name == "seg-r1,labels_mismatch=foreground, sam_fp32=false"
    only = get_protocol("jpeg_round_trip=yes,sample_seed=7")  # overrides on top of segr1
    assert only.jpeg_round_trip and only.sample_seed == 7 and only.labels_mismatch == "foreground"
    assert get_protocol("segr1,ablation-bgr-to-sam=1").ablations == ("ablation_bgr_to_sam",)
    assert "labels_mismatch=drop_points" in describe(get_protocol("seg-r1"))
    assert get_protocol(p) is p
    for bad, match in (
        ("release", "unknown protocol preset"),
        ("seg-r1,nope=1", "switch=value"),
        ("seg-r1,sam_fp32", "switch=value"),
        ("seg-r1,sam_fp32=maybe", "true or false"),
        ("seg-r1,sample_seed=x", "int"),
        ("seg-r1,reasoning_boxes=second", "must be one of"),
    ):
        with pytest.raises(ValueError, match=match):
            get_protocol(bad)
    with pytest.raises(ValueError, match="stage"):
        preset("segr1", "test")
    assert set(SWITCHES) == {f.name for f in fields(Protocol)} - {"name"}
    assert all(f.metadata.get("help") and f.metadata.get("row") for f in fields(Protocol) if f.name != "name")


def test_every_switch_is_documented_in_docs_fidelity():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "fidelity.md").read_text(encoding="utf-8")
    for name in SWITCHES:
        assert f"`{name}" in doc, f"docs/fidelity.md does not document the switch {name}"


# ------------------------------------------------------------------------------------------ answer rules


def test_labels_mismatch_drop_points_keeps_the_box():
    answer = "<think>x</think> <bbox>[1,2,30,40]</bbox>, <points>[[5,6],[7,8]]</points>, <labels>[1]</labels>"
    prompt = parse_answer(answer)
    assert prompt.points.shape == (2, 2) and prompt.labels.tolist() == [1, 1]  # segr1: kept as foreground
    assert adjust_prompt(prompt, "foreground") is prompt
    dropped = adjust_prompt(prompt, "foreground", get_protocol("seg-r1"))
    assert dropped.points.shape == (0, 2) and dropped.boxes.tolist() == [[1, 2, 30, 40]]
    points_only = parse_answer("<points>[[5,6]]</points>")  # no labels at all, no box
    assert adjust_prompt(points_only, "prerl", get_protocol("seg-r1")).is_empty
    good = parse_answer(answer.replace("[1]</labels>", "[1,0]</labels>"))
    assert adjust_prompt(good, "foreground", get_protocol("seg-r1")) is good


def test_reasoning_first_box_takes_every_point():
    prompt = SegPrompt(
        boxes=[[0, 0, 10, 10], [50, 50, 60, 60]],
        points=[[5, 5], [55, 55]],
        labels=[1, 0],
        validity=AnswerValidity(bbox=True, points=True, labels=True),
    )
    release = get_protocol("seg-r1")
    first = adjust_prompt(prompt, "reasoning", release)
    assert first.boxes.tolist() == [[0, 0, 10, 10]] and first.point_assignment == "all"
    (sub,) = split_by_box(first)
    assert sub.points.tolist() == [[5, 5], [55, 55]] and sub.labels.tolist() == [1, 0]  # outside point kept
    assert adjust_prompt(prompt, "referring", release) is prompt  # only the reasoning evaluation did this
    subs = split_by_box(prompt)  # segr1: each box with the points inside it
    assert [s.points.tolist() for s in subs] == [[[5, 5]], [[55, 55]]]
    assert first.to_dict()["point_assignment"] == "all" and "point_assignment" not in prompt.to_dict()
    assert SegPrompt.from_dict(first.to_dict()) == first
    with pytest.raises(ValueError, match="point_assignment"):
        SegPrompt(point_assignment="some")


# ------------------------------------------------------------------------------------ the model-frame image


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(60, 90, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(base).resize((300, 200), Image.Resampling.BICUBIC))


def test_default_model_image_is_resize_to_frame(photo):
    assert np.array_equal(
        np.asarray(model_image(photo, 224)), np.asarray(resize_to_frame(Image.fromarray(photo), 224))
    )


def test_release_eval_chain_bicubic_jpeg_then_qwen_rounding(photo):
    got = model_image(photo, 768, get_protocol("seg-r1"))
    assert got.size == (756, 756)
    buf = io.BytesIO()
    Image.fromarray(photo).resize((768, 768), Image.Resampling.BICUBIC).save(buf, format="JPEG")
    want = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").resize((756, 756), Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(got), np.asarray(want))
    demo = model_image(photo, 1024, get_protocol("seg-r1", "demo"))
    assert demo.size == (1036, 1036)
    bilinear = model_image(photo, 64, get_protocol("frame_filter=bilinear"))
    assert np.array_equal(
        np.asarray(bilinear), np.asarray(Image.fromarray(photo).resize((64, 64), Image.Resampling.BILINEAR))
    )
    jpeg = np.asarray(model_image(photo, 224, get_protocol("jpeg_round_trip=true")), dtype=int)
    assert 0 < np.abs(jpeg - np.asarray(model_image(photo, 224), dtype=int)).mean() < 20  # lossy, but close


def test_qwen_rounding_matches_smart_resize():
    # qwen-vl-utils: round(side / 28) * 28 within [4*28*28, 16384*28*28] pixels
    assert [qwen_rounded(s) for s in (768, 1024, 224, 448, 10, 800)] == [756, 1036, 224, 448, 56, 812]


# -------------------------------------------------------------------------------------- segmenter options


def test_segmenter_options():
    assert segmenter_options(Protocol()) == {}
    assert segmenter_options(get_protocol("seg-r1")) == {"dtype": "float32", "single_point_multimask": False}


# ---------------------------------------------------------------------------------------------- rewards


class ConstSegmenter:
    """A segmenter whose mask for any prompt is the left half of the image."""

    name = "half"

    def segment(self, image, prompts):
        h, w = np.asarray(image).shape[:2]
        mask = np.zeros((h, w), dtype=bool)
        mask[:, : w // 2] = True
        return [mask.copy() for _ in prompts]


def _reward_inputs(n):
    image = np.zeros((40, 40, 3), np.uint8)
    gt = np.zeros((40, 40), bool)
    gt[:, :20] = True
    return {"image": [image] * n, "mask": [gt] * n}


def test_reward_requires_complete_answers_when_asked():
    from segr1.rewards import SegmentationReward

    box_only = "<think>a</think> <bbox>[0,0,20,40]</bbox>"
    complete = box_only + ", <points>[[5,5]]</points>, <labels>[1]</labels>"
    loose = SegmentationReward(ConstSegmenter(), frame=40)
    strict = SegmentationReward(ConstSegmenter(), frame=40, requires_complete=True)
    assert loose([box_only, complete], **_reward_inputs(2)) == pytest.approx([1.0, 1.0])
    assert strict([box_only, complete], **_reward_inputs(2)) == pytest.approx([0.0, 1.0])
    pre = SegmentationReward(ConstSegmenter(), frame=40, points_only=True, requires_complete=True)
    points = "<points>[[5,5]]</points> <labels>[1]</labels>"  # no think: the release's pre-RL format
    assert pre([points, "<points>[[5,5]]</points>"], **_reward_inputs(2)) == pytest.approx([1.0, 0.0])


def test_area_penalty_s_measure_ablation():
    from segr1.rewards import SegmentationReward

    complete = "<think>a</think> <bbox>[0,0,20,40]</bbox>, <points>[[5,5]]</points>, <labels>[1]</labels>"
    ablation = SegmentationReward(
        ConstSegmenter(), frame=40, iou_weight=0.7, s_weight=0.3, s_measure="area_penalty"
    )
    (reward,) = ablation([complete], **_reward_inputs(1))
    assert reward == pytest.approx(0.7 * 1.0 + 0.3 * (1 - 0.5))  # a perfect mask, penalised for its area
    with pytest.raises(ValueError, match="s_measure"):
        SegmentationReward(ConstSegmenter(), s_measure="other")


def test_points_format_reward_without_think():
    from segr1.rewards import points_format_reward

    release = "<points>[[1,2],[3,4]]</points> <labels>[1,0]</labels>"
    assert points_format_reward([release]) == [0.0]
    assert points_format_reward([release], require_think=False) == [1.0]
    assert points_format_reward(["<points>[[1,2]]</points>"], require_think=False) == [0.0]
