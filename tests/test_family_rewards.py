"""segr1.family_rewards / segr1.gt_columns: Seg-Zero and VisionReasoner rewards against hand-computed values."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segr1 import family_rewards as fr
from segr1.answer import SegPrompt
from segr1.answer_json import format_json_answer
from segr1.family_rewards import FamilyReward, box_iou_matrix, non_repeat_score, published_rewards
from segr1.gt_columns import ground_truth

FRAME = 840
IMG = Image.new("RGB", (FRAME, FRAME))  # the image the model saw (GRPO rows hold the frame-sized image)


def vr(objects: list[tuple[list[float], list[float]]], think: str = "Two objects.") -> str:
    """A VisionReasoner answer from (box, point) pairs."""
    objs = [SegPrompt(boxes=[b], points=[p], labels=[1]) for b, p in objects]
    return format_json_answer(objs, think)


def sz(box: list[float], p1: list[float], p2: list[float], think: str = "One object.") -> str:
    return f'<think>{think}</think><answer>{{"bbox": {box}, "points_1": {p1}, "points_2": {p2}}}</answer>'


def terms(family: str, completion: str, **columns) -> dict[str, float]:
    cols = {"image": [IMG], **{k: [v] for k, v in columns.items()}}
    return {r.term: r([completion], **cols)[0] for r in published_rewards(family)} | {
        "accuracy": FamilyReward("accuracy", family)([completion], **cols)[0]
    }


GT2 = {
    "boxes": [[0, 0, 99, 99], [400, 400, 499, 499]],
    "points": [[50, 50], [450, 450]],
    "image_size": [840, 840],
}


# ---------------------------------------------------------------------------------- VisionReasoner terms


def test_vision_reasoner_perfect_answer_scores_the_maximum():
    t = terms("vision-reasoner", vr([([0, 0, 99, 99], [50, 50]), ([400, 400, 499, 499], [450, 450])]), **GT2)
    assert t == {"think_format": 1.0, "json_format": 2.0, "box_iou": 1.0, "box_l1": 1.0, "point": 1.0,
                 "non_repeat": 1.0, "accuracy": 3.0}  # fmt: skip
    assert sum(v for k, v in t.items() if k != "accuracy") == 7.0


def test_vision_reasoner_partial_hits_by_hand():
    # object 1 shifted 20 px right: inclusive IoU = 80*100 / (2*10000 - 8000) = 0.667 > 0.5 (hit); L1 =
    # (20+0+20+0)/4 = 10, not < 10 (miss); point (60,50) is in its box and 10 px from (50,50) (hit).
    # object 2: point (470,450) is 20 px away but outside its own box [400,400,460,499] (miss); IoU =
    # 61*100/(10000) = 0.61 (hit), L1 = 39/4 = 9.75 (hit). Each term / max(2, 2) = 2.
    answer = vr([([20, 0, 119, 99], [60, 50]), ([400, 400, 460, 499], [470, 450])])
    t = terms("vision-reasoner", answer, **GT2)
    assert (t["box_iou"], t["box_l1"], t["point"]) == (1.0, 0.5, 0.5) and t["accuracy"] == 2.0
    assert box_iou_matrix(np.array([[20, 0, 119, 99.0]]), np.array([[0, 0, 99, 99.0]]))[
        0, 0
    ] == pytest.approx(2 / 3)


def test_vision_reasoner_extra_and_missing_objects_divide_by_the_larger_count():
    extra = vr(
        [([0, 0, 99, 99], [50, 50]), ([400, 400, 499, 499], [450, 450]), ([700, 10, 800, 60], [750, 30])]
    )
    assert terms("vision-reasoner", extra, **GT2)["accuracy"] == pytest.approx(6 / 3)
    missing = vr([([400, 400, 499, 499], [450, 450])])
    t = terms("vision-reasoner", missing, **GT2)
    assert (t["box_iou"], t["accuracy"], t["json_format"]) == (0.5, 1.5, 2.0)


def test_hungarian_matching_is_optimal_and_order_free():
    # by hand (inclusive IoU; L1 = mean |corner difference|; point within 30 px and inside its own box):
    #   A=[15,0,114,99] p(50,50): vs GT1 IoU 8500/11500=.74, L1 7.5, dist 0 -> 3 hits; vs GT2 IoU .74, L1 7.5,
    #     dist 30 (not < 30) -> 2 hits.
    #   B=[0,0,99,99] p(50,50): vs GT1 -> 3 hits; vs GT2 IoU 7000/13000=.54, L1 15, dist 30 -> 1 hit.
    # Greedy in answer order gives A->GT1, B->GT2 = 4 hits; the optimum is A->GT2, B->GT1 = 5 hits -> 5 / 2.
    gt = {
        "boxes": [[0, 0, 99, 99], [30, 0, 129, 99]],
        "points": [[50, 50], [80, 50]],
        "image_size": [840, 840],
    }
    a, b = ([15, 0, 114, 99], [50, 50]), ([0, 0, 99, 99], [50, 50])
    for order in ([a, b], [b, a]):
        t = terms("vision-reasoner", vr(order), **gt)
        assert t["accuracy"] == 2.5 and (t["box_iou"], t["box_l1"], t["point"]) == (1.0, 1.0, 0.5)


def test_broken_answers_score_zero_and_one_bad_entry_voids_accuracy():
    for text in ("", "garbage", "<think>x</think><answer>[{'bbox_2d': [0,0,99,99]}]</answer>",
                 "<think>x</think><answer>[]</answer>", '<answer>{"bbox": [0,0,99,99]}</answer>'):  # fmt: skip
        t = terms("vision-reasoner", text, **GT2)
        assert t["accuracy"] == t["json_format"] == t["box_iou"] == 0.0, text
    half = '<think>x</think><answer>[{"bbox_2d": [0,0,99,99], "point_2d": [50,50]}, {"bbox_2d": [400,400,499,499]}]</answer>'
    t = terms("vision-reasoner", half, **GT2)
    assert t["json_format"] == 1.5 and t["accuracy"] == 0.0 and t["think_format"] == 1.0
    assert terms("vision-reasoner", "  " + vr([([0, 0, 99, 99], [50, 50])]), **GT2)["think_format"] == 0.0


def test_non_repeat_by_hand():
    assert non_repeat_score("A cup. A plate. A cup. A fork.") == 1.0  # one repeat is allowed
    assert non_repeat_score("A cup. A cup. A cup.") == 0.0
    assert non_repeat_score("A. B. A. B.") == 0.0
    assert non_repeat_score("....") == 1.0 and non_repeat_score("") == 1.0


# ------------------------------------------------------------------------------------------ Seg-Zero terms

GT1 = {"boxes": [[10, 10, 109, 109]], "points": [[[30, 30], [80, 80]]], "image_size": [840, 840]}


def test_seg_zero_perfect_and_pair_matching():
    t = terms("seg-zero", sz([10, 10, 109, 109], [80, 82], [30, 29]), **GT1)  # points given in swapped order
    assert t == {"think_format": 1.0, "json_format": 1.0, "box_iou": 1.0, "box_l1": 1.0, "point": 1.0,
                 "accuracy": 3.0}  # fmt: skip
    # pair distance = min((|p1-g1| + |p2-g2|), (|p1-g2| + |p2-g1|)) / 2 = (2 + 1) / 2 = 1.5 < 100


def test_seg_zero_point_rules_by_hand():
    # both points must lie in the predicted box; mean matched distance < 100 px
    outside = terms("seg-zero", sz([10, 10, 109, 109], [30, 30], [200, 80]), **GT1)
    assert outside["point"] == 0.0 and outside["box_iou"] == 1.0
    far = terms("seg-zero", sz([10, 10, 609, 609], [300, 300], [500, 500]), **GT1)
    # distances: |(300,300)-(30,30)| = 381.8, |(500,500)-(80,80)| = 594.0 -> mean 488 >= 100
    assert far["point"] == 0.0
    # points are truncated to ints first: 109.9 -> 109 lies in a box ending at 109
    assert terms("seg-zero", sz([10, 10, 109, 109], [30, 30], [109.9, 80]), **GT1)["point"] == 1.0
    # the box terms count without valid points (Seg-Zero scores each term on its own)
    no_points = '<think>x</think><answer>{"bbox": [10,10,109,109], "points_1": [1,2]}</answer>'
    t = terms("seg-zero", no_points, **GT1)
    assert (t["box_iou"], t["box_l1"], t["point"], t["json_format"]) == (1.0, 1.0, 0.0, 0.0)
    # a VisionReasoner list answer is not Seg-Zero's format
    assert terms("seg-zero", vr([([10, 10, 109, 109], [30, 30])]), **GT1)["accuracy"] == 0.0


def test_box_iou_conventions():
    a, b = np.array([[0, 0, 99, 99.0]]), np.array([[99, 0, 198, 99.0]])
    assert box_iou_matrix(a, b)[0, 0] == pytest.approx(
        100 / 19900
    )  # a one-column touch counts (VisionReasoner)
    assert box_iou_matrix(a, b, strict=True)[0, 0] == 0.0  # not for Seg-Zero's scalar IoU
    assert box_iou_matrix(a, a, inclusive=False)[0, 0] == 1.0
    assert (
        box_iou_matrix(np.array([[5, 5, 5, 5.0]]), np.array([[5, 5, 5, 5.0]]), inclusive=False)[0, 0] == 0.0
    )


# ------------------------------------------------------------------------------ an independent reference


def reference_accuracy(pred, gt_boxes, gt_points) -> float:
    """VisionReasoner's accuracy written independently: brute force over all one-to-one assignments."""
    m, n = len(pred), len(gt_boxes)

    def hits(p, j):
        (bx, pt), gb, gp = p, gt_boxes[j], gt_points[j]
        inter = max(0, min(bx[2], gb[2]) - max(bx[0], gb[0]) + 1) * max(
            0, min(bx[3], gb[3]) - max(bx[1], gb[1]) + 1
        )
        union = (bx[2] - bx[0] + 1) * (bx[3] - bx[1] + 1) + (gb[2] - gb[0] + 1) * (gb[3] - gb[1] + 1) - inter
        inside = bx[0] <= pt[0] <= bx[2] and bx[1] <= pt[1] <= bx[3]
        dist = ((pt[0] - gp[0]) ** 2 + (pt[1] - gp[1]) ** 2) ** 0.5
        return (
            (inter / union > 0.5)
            + (sum(abs(u - v) for u, v in zip(bx, gb, strict=True)) / 4 < 10)
            + (inside and dist < 30)
        )

    best = 0.0
    k = min(m, n)
    for rows in itertools.permutations(range(m), k):
        for cols in itertools.permutations(range(n), k):
            best = max(best, sum(hits(pred[r], c) for r, c in zip(rows, cols, strict=True)))
    return best / max(m, n)


_c = st.integers(0, 200)


@st.composite
def scene(draw):
    def obj():
        x, y, w, h = draw(_c), draw(_c), draw(st.integers(5, 60)), draw(st.integers(5, 60))
        return [x, y, x + w, y + h], [x + draw(st.integers(-10, w + 10)), y + draw(st.integers(-10, h + 10))]

    gts = [obj() for _ in range(draw(st.integers(1, 4)))]
    preds = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):  # near a ground-truth object
            (gx1, gy1, gx2, gy2), gp = draw(st.sampled_from(gts))
            d = [draw(st.integers(-12, 12)) for _ in range(6)]
            box = [gx1 + d[0], gy1 + d[1], max(gx1 + d[0], gx2 + d[2]), max(gy1 + d[1], gy2 + d[3])]
            preds.append((box, [gp[0] + d[4], gp[1] + d[5]]))
        else:
            preds.append(obj())
    return preds, gts


@settings(max_examples=150, deadline=None)
@given(scene())
def test_accuracy_equals_a_brute_force_reference(data):
    preds, gts = data
    cols = {"boxes": [[b for b, _ in gts]], "points": [[p for _, p in gts]], "image_size": [[840, 840]]}
    got = fr.vision_reasoner_accuracy([vr(preds)], image=[IMG], **cols)[0]
    parts = sum(FamilyReward(t)([vr(preds)], image=[IMG], **cols)[0] for t in ("box_iou", "box_l1", "point"))
    want = reference_accuracy(preds, [b for b, _ in gts], [p for _, p in gts])
    assert got == pytest.approx(want) and parts == pytest.approx(got)


# --------------------------------------------------------------------------- frames and ground-truth columns


def test_frame_from_image_column_and_threshold_scaling():
    # GT in an 840 x 840 image; the model saw 420 x 420, so GT boxes halve and the 10 px L1 threshold becomes 5
    gt = {"boxes": [[[0, 0, 100, 100]]], "image_size": [[840, 840]]}
    small = [Image.new("RGB", (420, 420))]
    exact = vr([([0, 0, 50, 50], [25, 25])])
    shifted = vr([([6, 6, 56, 56], [31, 31])])  # L1 = 6 model-frame pixels
    assert FamilyReward("box_l1")([exact], image=small, **gt) == [1.0]
    assert FamilyReward("box_l1")([shifted], image=small, **gt) == [0.0]
    assert FamilyReward("box_l1", scale_thresholds=False)([shifted], image=small, **gt) == [1.0]
    assert FamilyReward("box_l1", frame=420)([shifted], **gt) == [0.0]  # explicit frame, no image column
    assert fr.vision_reasoner_point([exact], image=small, **gt) == [1.0]  # default points: box centres


def test_ground_truth_from_masks_instances_and_strings():
    h, w = 120, 200
    inst = np.zeros((h, w), np.uint8)
    inst[10:50, 10:60], inst[60:110, 120:190] = 1, 2
    union = inst > 0
    gt = ground_truth({"instances": [inst]}, 0)
    np.testing.assert_array_equal(gt.boxes, [[10, 10, 59, 49], [120, 60, 189, 109]])
    assert gt.size == (w, h) and gt.points.shape == (2, 1, 2)
    assert ground_truth({"mask": [union]}, 0).boxes.shape == (1, 4)  # union: one object
    comps = ground_truth({"mask": [union]}, 0, from_mask="components")
    assert comps.boxes.shape == (2, 4) and ground_truth(
        {"mask": [union]}, 0, points_per_object=2
    ).points.shape == (1, 2, 2)
    as_text = ground_truth({"boxes": [json.dumps([[1, 2, 3, 4]])], "image_size": ["[10, 20]"]}, 0)
    np.testing.assert_array_equal(as_text.boxes, [[1, 2, 3, 4]])
    assert as_text.size == (10, 20)
    sized_by_mask = ground_truth({"boxes": [[[3, 4, 1, 2]]], "mask": [union]}, 0)
    np.testing.assert_array_equal(sized_by_mask.boxes, [[1, 2, 3, 4]])
    assert sized_by_mask.size == (w, h)
    # the rewards read them the same way: a two-object answer in the 200 x 120 frame itself
    frame_img = [Image.new("RGB", (w, h))]
    pts = gt.points[:, 0]
    answer = vr([(list(gt.boxes[0]), list(pts[0])), (list(gt.boxes[1]), list(pts[1]))])
    assert fr.vision_reasoner_accuracy([answer], image=frame_img, instances=[inst]) == [3.0]
    assert FamilyReward("accuracy", gt_from_mask="components")([answer], image=frame_img, mask=[union]) == [
        3.0
    ]
    assert fr.vision_reasoner_accuracy([answer], image=frame_img, mask=[union])[0] < 3.0


def test_columns_are_validated_and_broken_rows_counted(caplog):
    good = vr([([0, 0, 99, 99], [50, 50])])
    with pytest.raises(ValueError, match="'boxes', 'instances' or 'mask'"):
        fr.vision_reasoner_box_iou([good], image=[IMG])
    with pytest.raises(ValueError, match="image"):
        fr.vision_reasoner_box_iou([good], boxes=[[[0, 0, 99, 99]]], image_size=[[840, 840]])
    with pytest.raises(ValueError, match="entries"):
        fr.vision_reasoner_box_iou([good, good], image=[IMG, IMG], boxes=[[[0, 0, 99, 99]]])
    r = FamilyReward("box_iou")
    rows = {"image": [IMG, IMG, IMG], "image_size": [[840, 840]] * 3,
            "boxes": [[[0, 0, 99, 99]], [[0, 0, "x", 9]], [[0, float("nan"), 1, 1]]]}  # fmt: skip
    assert r([good, good, good], **rows) == [1.0, 0.0, 0.0]
    assert r.last_stats == {"mean": pytest.approx(1 / 3), "errors": 2.0}
    assert FamilyReward("box_iou")([good], image=[IMG], boxes=[[]], image_size=[[840, 840]]) == [
        0.0
    ]  # no GT objects
    conversational = [{"role": "assistant", "content": good}]
    assert fr.vision_reasoner_box_iou(
        [conversational], image=[IMG], boxes=[[[0, 0, 99, 99]]], image_size=[[840, 840]]
    ) == [1.0]


def test_reward_objects_names_and_options():
    assert fr.vision_reasoner_box_iou.__name__ == "vision_reasoner_box_iou"
    assert fr.seg_zero_point.__name__ == "seg_zero_point"
    assert [r.term for r in published_rewards("seg-zero")] == [
        "think_format",
        "json_format",
        "box_iou",
        "box_l1",
        "point",
    ]
    assert published_rewards("vision-reasoner")[-1].term == "non_repeat"
    assert fr.vision_reasoner_point_in_box([vr([([0, 0, 9, 9], [5, 5]), ([0, 0, 9, 9], [50, 5])])]) == [0.5]
    for bad, match in ((dict(term="nope"), "unknown term"), (dict(term="box_iou", family="sam-r1"), "no JSON"),
                       (dict(term="box_iou", frame=0), "frame"), (dict(term="box_iou", gt_from_mask="x"), "gt_from_mask")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            FamilyReward(**bad)
    import pickle

    assert pickle.loads(pickle.dumps(fr.vision_reasoner_accuracy)).term == "accuracy"


@settings(max_examples=150, deadline=None)
@given(scene(), scene())
def test_single_pair_fast_path_agrees_with_the_matrix_path(first, second):
    # two scenes' first pairs, the second moved 5000 px away: the 2 x 2 matching pairs them up, so its terms
    # are the mean of the two 1 x 1 results (the scalar fast path)
    (pa, ga), (pb, gb) = ([first[0][0]], [first[1][0]]), ([second[0][0]], [second[1][0]])
    far = lambda o: ([v + 5000 for v in o[0]], [v + 5000 for v in o[1]])  # noqa: E731
    pb, gb = [far(pb[0])], [far(gb[0])]

    def acc(preds, gts, family="vision-reasoner"):
        cols = {"boxes": [[b for b, _ in gts]], "points": [[p for _, p in gts]], "image_size": [[840, 840]]}
        text = vr(preds) if family == "vision-reasoner" else sz(preds[0][0], preds[0][1], preds[0][1])
        fr.clear_caches()
        return [
            FamilyReward(t, family)([text], image=[IMG], **cols)[0] for t in ("box_iou", "box_l1", "point")
        ]

    two = acc(pa + pb, ga + gb)
    ones = np.add(acc(pa, ga), acc(pb, gb)) / 2
    np.testing.assert_allclose(two, ones)
    # Seg-Zero: one predicted object against two ground-truth objects (matrix path) = half the 1 x 1 result
    np.testing.assert_allclose(acc(pa, ga + gb, "seg-zero"), np.divide(acc(pa, ga, "seg-zero"), 2))
