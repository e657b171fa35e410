"""Training the families on one stack: reward short names (against hand-computed values), the mask rewards on
JSON answers, GRPO rows with per-instance ground truth, SFT targets in the families' formats, the ``multi``
synthetic source and the style / format a trained checkpoint records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from segr1.answer import SegPrompt
from segr1.answer_json import format_json_answer, parse_json_answer
from segr1.data.synthetic_multi import multi_scene_at, write_multi_scenes
from segr1.formats import get_format
from segr1.train.config import GRPOScriptArguments
from segr1.train.grpo import build_rewards
from segr1.train.named_rewards import NAMED_REWARDS, FormattedSegmentationReward, PublishedReward

FRAME = 840
IMG = Image.new("RGB", (FRAME, FRAME))
GT2 = {
    "boxes": [[0, 0, 99, 99], [400, 400, 499, 499]],
    "points": [[50, 50], [450, 450]],
    "image_size": [840, 840],
}


def vr(objects, think="Two objects."):
    return format_json_answer([SegPrompt([b], [p], [1]) for b, p in objects], think)


class BoxSegmenter:
    """Each prompt set's mask is its boxes filled (image frame)."""

    name = "boxes"

    def segment(self, image, prompts):
        h, w = np.asarray(image).shape[:2]
        out = []
        for p in prompts:
            m = np.zeros((h, w), bool)
            for x1, y1, x2, y2 in p.boxes.round().astype(int):
                m[y1 : y2 + 1, x1 : x2 + 1] = True
            out.append(m)
        return out


def rewards_for(names, **kw):
    args = GRPOScriptArguments(reward_funcs=list(names), task="referring", **{"segmenter": "grabcut", **kw})
    return build_rewards(args, frame=FRAME, style="vision-reasoner")


def test_every_short_name_is_accepted_by_recipes_and_built():
    funcs = rewards_for(NAMED_REWARDS)
    assert [f.__name__ for f in funcs] == list(NAMED_REWARDS)
    with pytest.raises(ValueError, match="vision_reasoner_box_iou"):  # the message lists the short names
        GRPOScriptArguments(reward_funcs=["vision_reasoner_box"])


def test_published_totals_and_terms_by_hand():
    names = ["vision_reasoner", "seg_zero", "vision_reasoner_box_iou", "vision_reasoner_point", "non_repeat",
             "seg_zero_json_format", "seg_zero_accuracy"]  # fmt: skip
    by_name = dict(zip(names, rewards_for(names), strict=True))
    cols = {"image": [IMG], **{k: [v] for k, v in GT2.items()}}
    perfect = vr([([0, 0, 99, 99], [50, 50]), ([400, 400, 499, 499], [450, 450])])
    # object 2 shifted 20 px right: IoU 80*100/12000 = 0.667 hit, L1 = 10 not < 10 miss, point 10 px away hit
    shifted = vr([([0, 0, 99, 99], [50, 50]), ([420, 400, 519, 499], [460, 450])], "A. A. A. A.")
    got = {n: f([perfect, shifted], **{k: v * 2 for k, v in cols.items()}) for n, f in by_name.items()}
    # sentences "<think>A", "A", "A", "A": two repeats void non_repeat
    assert got["vision_reasoner"] == [7.0, 1 + 2 + 1 + 0.5 + 1 + 0]
    assert got["vision_reasoner_box_iou"] == [1.0, 1.0] and got["vision_reasoner_point"] == [1.0, 1.0]
    assert got["non_repeat"] == [1.0, 0.0]
    # Seg-Zero's one-object layout: a list answer is the wrong layout, no JSON format or accuracy reward
    assert got["seg_zero"] == [1.0, 1.0] and got["seg_zero_json_format"] == [0.0, 0.0]
    sz = '<think>x</think><answer>{"bbox": [0,0,99,99], "points_1": [50,50], "points_2": [50,50]}</answer>'
    one = {"image": [IMG], "boxes": [[[0, 0, 99, 99]]], "points": [[[50, 50]]], "image_size": [[840, 840]]}
    assert by_name["seg_zero"]([sz], **one) == [5.0]
    assert by_name["seg_zero_accuracy"]([sz], **one) == [3.0]
    total = by_name["vision_reasoner"]
    assert isinstance(total, PublishedReward) and total.last_stats["mean"] == (7.0 + 5.5) / 2


def test_sam_r1_tiered_and_segmentation_read_the_recipe_format():
    mask = np.zeros((FRAME, FRAME), bool)
    mask[0:100, 0:100] = True  # the ground truth: box 0..99
    half = vr([([0, 0, 49, 99], [20, 50])])  # IoU 0.5: below every tier
    exact = vr([([0, 0, 99, 99], [50, 50])])
    near = vr([([0, 0, 99, 89], [50, 50])])  # IoU 0.9 -> 4
    boxes = BoxSegmenter()  # stands in for GrabCut / SAM2
    tiered, seg = rewards_for(
        ["sam_r1_tiered", "segmentation"], answer_format="vision-reasoner-json", segmenter=boxes
    )
    cols = {"image": [IMG] * 3, "mask": [mask] * 3}
    assert tiered([half, exact, near], **cols) == [0.0, 4.0, 4.0]
    assert isinstance(seg, FormattedSegmentationReward)
    got = seg([half, exact, near], **cols)
    sod = pytest.importorskip("py_sod_metrics")
    expected = []
    for iou, rows in ((0.5, (slice(0, 100), slice(0, 50))), (1.0, (slice(0, 100), slice(0, 100))),
                      (0.9, (slice(0, 90), slice(0, 100)))):  # fmt: skip
        pred = np.zeros((FRAME, FRAME), np.uint8)
        pred[rows] = 255
        sm = sod.Smeasure()
        sm.step(pred=pred, gt=mask.astype(np.uint8) * 255)
        expected.append(0.7 * iou + 0.3 * sm.get_results()["sm"])
    assert got == pytest.approx(expected, abs=1e-6)  # 0.7 IoU + 0.3 S-measure of the JSON answer's mask
    tags = rewards_for(["segmentation"], segmenter=boxes, answer_format="seg-r1")[0]
    assert type(tags).__name__ == "SegmentationReward"  # Seg-R1's tags: Seg-R1's own reward class
    assert tags([exact], **{k: v[:1] for k, v in cols.items()}) == [0.0]  # JSON is not Seg-R1's format


def test_grpo_rows_carry_the_per_instance_columns(tmp_path):
    from segr1.data.trl import to_grpo_dataset
    from segr1.family_rewards import FamilyReward
    from segr1.train.data import load_train_samples

    samples = load_train_samples([{"synthetic": {"kind": "multi", "n": 3, "seed": 2, "size": 120}}],
                                 cache_dir=tmp_path)  # fmt: skip
    assert all(s.task == "referring" and (tmp_path / s.meta["instances"]).is_file() for s in samples)
    from segr1.data.records import Sample

    many = next(s for s in samples if len(s.meta["boxes"]) >= 2)
    plain = Sample("plain", many.image, many.mask, "x", "referring", {})
    ds = to_grpo_dataset([*samples, plain], frame=112, style="vision-reasoner")
    rows = [ds[i] for i in range(4)]
    for row, s in zip(rows, samples, strict=False):
        assert json.loads(row["boxes"]) == s.meta["boxes"] and json.loads(row["points"]) == s.meta["points"]
        assert row["instances"] == s.meta["instances"] and row["image"].size == (112, 112)
    assert rows[3]["boxes"] is None and rows[3]["instances"] is None  # a sample without them
    # the rewards read them: a perfect answer scaled to the 112 frame scores its boxes
    k = samples.index(many)
    boxes = np.array(many.meta["boxes"]) * 112 / 120
    answer = vr([(list(b), [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]) for b in boxes])
    cols = {c: [rows[k][c]] for c in ("boxes", "points", "instances", "mask", "image")}
    assert FamilyReward("box_iou", "vision-reasoner")([answer], **cols) == [1.0]
    cols = {c: [rows[3][c]] for c in ("boxes", "points", "instances", "mask", "image")}
    assert FamilyReward("box_iou", "vision-reasoner")([answer], **cols)[0] < 1.0  # the union is one object
    plain_ds = to_grpo_dataset([plain], frame=112)
    assert "boxes" not in plain_ds[0]  # no per-instance columns when no sample has them


def test_sft_targets_in_the_families_formats(tmp_path):
    from segr1.data.trl import to_sft_dataset
    from segr1.instances import inscribed_point

    samples = write_multi_scenes(4, tmp_path / "m", seed=3, size=140)
    vr_ds = to_sft_dataset(samples, frame=140, style="vision-reasoner", think="none")
    sz_ds = to_sft_dataset(samples, frame=140, style="seg-zero")
    tags_ds = to_sft_dataset(samples, frame=140, style="segr1")
    for i, s in enumerate(samples):
        scene = multi_scene_at(3, i, size=140)
        target = vr_ds[i]["completion"][0]["content"]
        answer = parse_json_answer(target)
        assert answer.validity.all_valid and answer.validity.structure and answer.think == ""
        np.testing.assert_array_equal(answer.boxes, np.array(s.meta["boxes"]))  # frame = image: exact boxes
        expected_points = np.stack([inscribed_point(m) for m in scene.target_masks])
        np.testing.assert_array_equal(answer.points[:, 0], expected_points)  # Seg-Zero's ground-truth point
        (one,) = get_format("seg-zero-json").objects(sz_ds[i]["completion"][0]["content"])
        union = np.logical_or.reduce(scene.target_masks)
        ys, xs = np.nonzero(union)
        assert one.boxes.tolist() == [[xs.min(), ys.min(), xs.max(), ys.max()]]  # one object: the union
        tags = get_format("seg-r1").objects(tags_ds[i]["completion"][0]["content"])
        assert len(tags) == scene.n_targets  # one <bbox> per instance in Seg-R1's tags too
    assert vr_ds[0]["prompt"][-1]["content"][1]["text"].startswith("\nPlease find")


def test_a_trained_checkpoint_records_the_recipe_style_and_format(tmp_path):
    from segr1.formats import format_for
    from segr1.policies import read_policy_metadata
    from segr1.styles import style_for
    from segr1.train.common import resolve_format, write_provenance

    args = GRPOScriptArguments(
        task="referring", prompt_style="vision-reasoner", reward_funcs=["vision_reasoner"]
    )
    assert resolve_format(args, "tiny-does-not-exist").name == "vision-reasoner-json"
    assert (
        resolve_format(args, "Ricky06662/Seg-Zero-7B").name == "vision-reasoner-json"
    )  # the recipe's style wins
    hub = GRPOScriptArguments(task="referring", reward_funcs=["seg_zero"])
    assert resolve_format(hub, "Ricky06662/Seg-Zero-7B").name == "seg-zero-json"  # fine-tuning the release
    write_provenance(
        str(tmp_path), stage="grpo", frame=224, script_args=args, model="tiny", model_path="tiny"
    )
    meta = read_policy_metadata(tmp_path)
    assert (meta["prompt_style"], meta["answer_format"]) == ("vision-reasoner", "vision-reasoner-json")
    assert style_for(meta).name == "vision-reasoner" and format_for(meta).name == "vision-reasoner-json"
    with pytest.raises(ValueError, match="known formats"):
        GRPOScriptArguments(answer_format="json")


def test_mask_rewards_segment_each_object_with_its_own_point():
    """A point outside its own box still seeds that object, as at inference (the pipeline), not dropped by
    Seg-R1's point-to-box rule; several objects: one prompt set each, their masks united."""
    from segr1.tiered_rewards import ObjectsPrompt, objects_prompt

    class Recording(BoxSegmenter):
        def __init__(self):
            self.sets = []

        def segment(self, image, prompts):
            self.sets.append([(p.boxes.tolist(), p.points.tolist()) for p in prompts])
            return super().segment(image, prompts)

    seg = Recording()
    (reward,) = rewards_for(["segmentation"], answer_format="vision-reasoner-json", segmenter=seg)
    mask = np.zeros((FRAME, FRAME), bool)
    mask[0:100, 0:100] = mask[400:500, 400:500] = True
    text = vr([([0, 0, 99, 99], [150, 50]), ([400, 400, 499, 499], [450, 450])])
    assert reward([text], image=[IMG], mask=[mask]) == [pytest.approx(1.0)]  # the union of the two boxes
    assert seg.sets == [[([[0, 0, 99, 99]], [[150, 50]]), ([[400, 400, 499, 499]], [[450, 450]])]]
    parsed = objects_prompt(text, get_format("vision-reasoner-json"))
    assert isinstance(parsed, ObjectsPrompt) and len(parsed.objects) == 2 and parsed.boxes.shape == (2, 4)
