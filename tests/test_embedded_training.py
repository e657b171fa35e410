"""The pieces the embedded multi-task policy is trained with: hard synthetic families, interior SFT points,
prompt-shaping rewards, ``task: auto`` recipes that record every task they trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segr1.answer import SegPrompt, format_answer
from segr1.data.synthetic import KINDS, scene_at
from segr1.data.synthetic_hard import HARD_KINDS, HELD_OUT_PAIRS, task_of_kind
from segr1.geometry import interior_point, mask_to_box
from segr1.shaping_rewards import PromptShapingReward, box_iou, point_correctness

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- families


def test_cli_kind_choices_mirror_the_generator():
    from segr1.commands.data import KINDS as CLI_KINDS

    assert tuple(CLI_KINDS) == tuple(KINDS)
    assert set(HARD_KINDS) <= set(KINDS)


@pytest.mark.parametrize("kind", ["salient-hard", "camouflaged-hard"])
def test_hard_foreground_targets_are_small_off_centre_and_among_distractors(kind):
    areas, off_centre, with_distractors = [], 0, 0
    for i in range(40):
        s = scene_at(kind, 300, i, min_size=160, max_size=320)
        h, w = s.mask.shape
        objects = s.meta["objects"]
        assert objects[0]["box"] == s.meta["box"] and objects[0]["area"] == int(s.mask.sum())
        areas.append(s.mask.mean())
        cx, cy = objects[0]["centre"]
        off_centre += abs(cx / w - 0.5) >= 0.15 or abs(cy / h - 0.5) >= 0.15
        with_distractors += len(objects) >= 2
        # distractors are smaller than the target and never part of its mask
        assert all(o["radius"] < objects[0]["radius"] for o in objects[1:])
    assert off_centre == 40 and with_distractors >= 36
    assert np.median(areas) < 0.08  # small: a fixed, image-independent box cannot be tight


def test_referring_splits_hold_out_colour_shape_pairs():
    held = set(HELD_OUT_PAIRS)
    for i in range(60):
        seen = scene_at("referring-seen", 100, i, size=200)
        novel = scene_at("referring-novel", 5000, i, size=200)
        assert tuple(seen.meta["pair"]) not in held
        assert tuple(novel.meta["pair"]) in held
        colour, shape = novel.meta["pair"]
        assert f"{colour} {shape}" in novel.text  # the novel phrase always names the held-out pair
        for s in (seen, novel):
            assert s.mask.sum() == s.meta["objects"][0]["area"] > 0
    assert task_of_kind("referring-novel") == "referring"


def test_reasoning_questions_have_the_answer_they_ask_for():
    seen, size_questions, area_agrees = set(), 0, 0
    for i in range(80):
        s = scene_at("reasoning", 300, i, size=240)
        objs, query = s.meta["objects"], s.meta["query"]
        seen.add(query)
        areas = [o["area"] for o in objs]
        radii = [o["radius"] for o in objs]
        if query == "largest":  # size = the shape's radius; its area agrees almost always (shapes differ)
            assert radii[0] >= 1.44 * max(radii[1:])
            size_questions += 1
            area_agrees += areas[0] == max(areas)
        elif query == "smallest":
            assert radii[0] <= 0.66 * min(radii[1:])
            size_questions += 1
            area_agrees += areas[0] == min(areas)
        elif query == "odd colour":
            assert all(o["colour"] == objs[1]["colour"] != objs[0]["colour"] for o in objs[1:])
        else:
            assert all(o["shape"] == objs[1]["shape"] != objs[0]["shape"] for o in objs[1:])
        assert s.text.endswith("?") or s.text.endswith(".")
    assert seen == {"largest", "smallest", "odd colour", "odd shape"}
    assert area_agrees >= 0.95 * size_questions
    assert task_of_kind("reasoning") == "reasoning"


def test_data_synth_writes_the_task_and_refs_of_text_kinds(tmp_path):
    from segr1.cli import main
    from segr1.data.folders import read_manifest

    for kind, task in (
        ("referring-seen", "referring"),
        ("reasoning", "reasoning"),
        ("salient-hard", "foreground"),
    ):
        out = tmp_path / kind
        assert (
            main(
                [
                    "data",
                    "synth",
                    "--kind",
                    kind,
                    "--n",
                    "3",
                    "--size",
                    "96",
                    "--out",
                    str(out),
                    "--no-progress",
                ]
            )
            == 0
        )
        samples = read_manifest(out / "manifest.jsonl")
        assert {s.task for s in samples} == {task}
        assert (out / "refs.jsonl").is_file() == (task == "referring")
        assert all((s.text is not None) == (task != "foreground") for s in samples)


# ------------------------------------------------------------------------------------------ SFT targets


def test_interior_point_is_inside_even_for_a_ring():
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(xx - 32, yy - 32)
    ring = (r > 12) & (r < 22)
    x, y = interior_point(ring)
    assert ring[int(y), int(x)]
    assert 12 < np.hypot(x - 32, y - 32) < 22
    square = np.zeros((40, 40), bool)
    square[10:31, 5:26] = True
    assert tuple(interior_point(square)) == (15.0, 20.0)
    assert interior_point(np.zeros((5, 5), bool)) is None


def test_sft_interior_point_mode_puts_the_positive_point_on_the_object():
    from segr1.answer import parse_answer
    from segr1.data.trl import sft_target

    inside = {"random": 0, "interior": 0}
    for i in range(30):
        s = scene_at("referring-seen", 1, i, size=224)
        for mode in inside:
            text = sft_target(s.mask, frame=224, rng=i, n_pos=1, n_neg=0, think="object", point_mode=mode)
            p = parse_answer(text)
            x, y = np.rint(p.points[0]).astype(int)
            inside[mode] += bool(s.mask[y, x])
    assert inside["interior"] == 30
    with pytest.raises(ValueError, match="point_mode"):
        sft_target(s.mask, frame=224, point_mode="centre")


# -------------------------------------------------------------------------------------- shaping rewards


def _answer(box, points, labels) -> str:
    p = SegPrompt(boxes=np.array([box], float), points=np.array(points, float), labels=np.array(labels))
    return format_answer(p, think="object")


def test_box_iou_and_point_correctness():
    assert box_iou(np.array([0, 0, 9, 9.0]), np.array([0, 0, 9, 9.0])) == 1.0
    assert box_iou(np.array([0, 0, 9, 9.0]), np.array([10, 10, 19, 19.0])) == 0.0
    assert box_iou(np.array([0, 0, 9, 9.0]), np.array([0, 0, 19, 9.0])) == pytest.approx(0.5)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    p = SegPrompt(
        boxes=np.zeros((0, 4)), points=np.array([[8.0, 8], [1, 1], [2, 2]]), labels=np.array([1, 0, 1])
    )
    assert point_correctness(p, mask) == pytest.approx(2 / 3)


def test_shaping_rewards_score_answers_in_the_image_frame():
    mask = np.zeros((100, 200), bool)  # an image twice as wide as tall; model frame 224 squashes it
    mask[20:60, 100:180] = True
    box = mask_to_box(mask)
    to_frame = np.array([224 / 200, 224 / 100, 224 / 200, 224 / 100])
    tight = _answer(box * to_frame, [[140 * 224 / 200, 40 * 224 / 100]], [1])
    loose = _answer([0, 0, 223, 223], [[10, 10]], [1])
    completions = [[{"role": "assistant", "content": c}] for c in (tight, loose, "no answer")]
    masks = [mask] * 3
    iou = PromptShapingReward("box_iou", frame=224)(completions, mask=masks)
    pts = PromptShapingReward("points", frame=224)(completions, mask=masks)
    assert iou[0] > 0.9 and iou[1] < 0.2 and iou[2] == 0.0
    assert pts == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="mask"):
        PromptShapingReward("points", frame=224)(completions)


# ------------------------------------------------------------------------------------------ task: auto


def test_task_auto_needs_a_frame_and_is_accepted_by_the_embedded_recipes():
    from segr1.train.common import parse_recipe

    names = ("embedded_multitask_sft", "embedded_multitask_grpo", "embedded_multitask_grounded_sft")
    for name in (*names, "embedded_multitask_vispre_sft", "embedded_multitask_vispre_grpo"):
        stage = "sft" if "sft" in name else "grpo"
        script, _, _ = parse_recipe(stage, ["--config", str(ROOT / f"recipes/tiny/{name}.yaml")])
        assert script.task == "auto" and script.frame == 224
    script, _, _ = parse_recipe("grpo", ["--config", str(ROOT / "recipes/tiny/embedded_multitask_grpo.yaml")])
    assert {"box_iou", "points", "segmentation"} <= set(script.reward_funcs)
    from segr1.train.config import SFTScriptArguments

    with pytest.raises(ValueError, match="frame"):
        SFTScriptArguments(task="auto")
    with pytest.raises(ValueError, match="auto"):
        SFTScriptArguments(task="everything", frame=224)


def test_task_auto_trains_on_every_task_and_records_them(tmp_path):
    from segr1.cli import main

    data = [{"synthetic": {"kind": kind, "n": 2, "seed": 0, "size": 96}}
            for kind in ("salient-hard", "referring-seen", "reasoning")]  # fmt: skip
    out = tmp_path / "sft"
    args = ["train", "sft", "--config", str(ROOT / "recipes/tiny/sft.yaml"), "--task", "auto", "--frame", "112",
            "--train_data", json.dumps(data), "--data_cache_dir", str(tmp_path / "synth"), "--output_dir", str(out),
            "--max_steps", "1", "--per_device_train_batch_size", "2", "--sft_points_mode", "interior",
            "--bf16", "false"]  # fmt: skip
    assert main(args) == 0
    meta = json.loads((out / "segr1_policy.json").read_text())
    assert meta["task"] == "auto"
    assert meta["tasks"] == ["foreground", "reasoning", "referring"]
    from segr1.policies import trained_tasks

    assert trained_tasks(meta) == ("foreground", "reasoning", "referring")
