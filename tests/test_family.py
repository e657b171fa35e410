"""segr1.family: the protocol facts of Seg-Zero, VisionReasoner and SAM-R1, pinned byte for byte."""

from __future__ import annotations

import dataclasses

import pytest

from segr1.answer_json import parse_json_answer
from segr1.family import FAMILIES, SAM_R1, SEG_ZERO, VISION_REASONER, RewardSpec, get_family

# Golden strings, typed in from the sources named in segr1.family's docstring (not generated from the module).
SEG_ZERO_USER = (
    "Please find 'the unusal object in the image' with bbox and points.Compare the difference between objects "
    "and find the most closely matched one.Output the thinking process in <think> </think> and final answer in "
    "<answer> </answer> tags.Output the one bbox and points of two largest inscribed circles inside the "
    "interested object in JSON format.i.e., <think> thinking process here </think><answer>{'bbox': "
    "[10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}</answer>"
)
VISION_REASONER_USER = (
    'Please find "what can i have if i\'m thirsty" with bboxs and points.Compare the difference between '
    "object(s) and find the most closely matched object(s).Output the thinking process in <think> </think> and "
    "final answer in <answer> </answer> tags.Output the bbox(es) and point(s) inside the interested object(s) in "
    'JSON format.i.e., <think> thinking process here </think><answer>[{"bbox_2d": [10,100,200,210], '
    '"point_2d": [30,110]}, {"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]</answer>'
)


def test_user_texts_are_byte_exact():
    assert SEG_ZERO.user_text("The unusal object in the image.") == SEG_ZERO_USER
    assert VISION_REASONER.user_text("What can I have if I'm thirsty?") == VISION_REASONER_USER
    # training: EasyR1's "<image>" placeholder first ("<image>\n" since the May 2025 update); Seg-Zero's data
    # loader strips only '.', VisionReasoner's inference strips '."?!'
    assert SEG_ZERO.user_text("The unusal object in the image.", training=True) == "<image>" + SEG_ZERO_USER
    vr_train = VISION_REASONER.user_text("What can I have if I'm thirsty?", training=True)
    assert vr_train == "<image>\n" + VISION_REASONER_USER.replace('thirsty"', 'thirsty?"')
    assert VISION_REASONER.question('"Both cups?!"') == "both cups"
    assert SEG_ZERO.question("..The Cup..") == "the cup"


def test_frames_budgets_and_layouts():
    for p in (SEG_ZERO, VISION_REASONER, SAM_R1):
        assert p.frame == 840
    assert (SEG_ZERO.max_new_tokens, SEG_ZERO.max_response_length, SEG_ZERO.max_prompt_length) == (
        1024,
        1300,
        1300,
    )
    assert (VISION_REASONER.max_new_tokens, VISION_REASONER.max_response_length) == (2048, 2000)
    assert SEG_ZERO.system == VISION_REASONER.system == "You are a helpful assistant."
    assert (SEG_ZERO.layout, VISION_REASONER.layout, SAM_R1.layout) == ("single", "objects", None)
    assert SEG_ZERO.resample == VISION_REASONER.resample == "bilinear"
    assert SEG_ZERO.greedy and VISION_REASONER.greedy
    assert SAM_R1.template is None and SAM_R1.system is None
    with pytest.raises(ValueError, match="not published"):
        SAM_R1.user_text("x")


def test_answer_examples_parse_in_their_own_layout():
    vr = parse_json_answer(f"<think>t</think><answer>{VISION_REASONER.answer_example}</answer>")
    assert vr.validity.layout == "objects" and vr.validity.all_valid and vr.validity.entries == 2
    # Seg-Zero's example is a Python dict literal, not JSON: the reward (json.loads) refuses it as written
    sz = parse_json_answer(f"<think>t</think><answer>{SEG_ZERO.answer_example}</answer>")
    assert not sz.validity.json
    sz = parse_json_answer(
        f"<think>t</think><answer>{SEG_ZERO.answer_example.replace(chr(39), chr(34))}</answer>"
    )
    assert sz.validity.layout == "single" and sz.validity.all_valid


def test_reward_thresholds():
    vr, sz, sam = VISION_REASONER.reward, SEG_ZERO.reward, SAM_R1.reward
    assert (vr.iou_threshold, vr.l1_threshold, vr.point_threshold, vr.point_rule) == (
        0.5,
        10.0,
        30.0,
        "nearest",
    )
    assert (sz.iou_threshold, sz.l1_threshold, sz.point_threshold, sz.point_rule) == (
        0.5,
        10.0,
        100.0,
        "pair",
    )
    assert vr.iou_inclusive and sz.iou_inclusive and sz.iou_strict_overlap and not vr.iou_strict_overlap
    assert vr.all_or_nothing and not sz.all_or_nothing and sz.truncate_points and not vr.truncate_points
    assert vr.format_per_object and not sz.format_per_object
    assert vr.non_repeat and not sz.non_repeat and vr.max_objects == 120
    assert vr.reference_frame == sz.reference_frame == 840
    assert sam.tiers == ((0.8, 4.0), (0.7, 3.0), (0.5, 2.0))
    with pytest.raises(ValueError, match="point_rule"):
        RewardSpec(point_rule="far")
    with pytest.raises(ValueError, match="decreasing"):
        RewardSpec(tiers=((0.5, 1.0), (0.7, 2.0)))


def test_training_settings():
    sz, vr, sam = SEG_ZERO.training, VISION_REASONER.training, SAM_R1.training
    for t in (sz, vr):
        assert (t["rollout_n"], t["lr"], t["rollout_batch_size"], t["global_batch_size"]) == (8, 1e-6, 16, 16)
        assert (t["kl_loss_type"], t["weight_decay"], t["temperature"], t["total_episodes"]) == (
            "low_var_kl",
            1e-2,
            1.0,
            1,
        )
        assert t["base_model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and t["clip_ratio"] == 0.2
    assert sz["kl_loss_coef"] == 5e-3 and vr["kl_loss_coef"] == 1e-2
    assert (
        sz["micro_batch_size_per_device_for_update"] == 1
        and vr["micro_batch_size_per_device_for_update"] == 16
    )
    assert (sam["rollout_n"], sam["lr"], sam["epsilon_high"], sam["train_samples"]) == (8, 1e-6, 0.3, 3000)


def test_lookup_by_name_or_checkpoint_and_immutability():
    assert get_family("vision-reasoner") is VISION_REASONER
    assert get_family("Ricky06662/Seg-Zero-7B") is SEG_ZERO
    assert get_family("Ricky06662/VisionReasoner-7B") is VISION_REASONER
    assert set(FAMILIES) == {"seg-zero", "vision-reasoner", "sam-r1"}
    with pytest.raises(ValueError, match="unknown family"):
        get_family("seg-r2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        SEG_ZERO.frame = 768  # type: ignore[misc]
    with pytest.raises(TypeError):
        SEG_ZERO.question(None)  # type: ignore[arg-type]
