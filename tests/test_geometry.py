"""Tests for segr1.geometry: frames, clipping, splitting by box, masks -> boxes and points."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segr1.answer import AnswerValidity, SegPrompt, parse_answer
from segr1.geometry import (
    clip_prompt,
    mask_to_box,
    resize_to_frame,
    sample_points,
    split_by_box,
    to_image_frame,
    to_model_frame,
)

# ------------------------------------------------------------------------------------------ resize


def test_resize_pil_and_arrays():
    rgb = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    out = resize_to_frame(Image.fromarray(rgb), 64)
    assert isinstance(out, Image.Image) and out.size == (64, 64) and out.mode == "RGB"
    arr = resize_to_frame(rgb, 64)
    assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, np.asarray(out))  # same filter for both input types
    assert resize_to_frame(rgb[:, :, 0], 16).shape == (16, 16)
    assert resize_to_frame(rgb[:, :, :1], 16).shape == (16, 16, 1)
    f = resize_to_frame(rgb.astype(np.float32) / 255, 16)
    assert f.shape == (16, 16, 3) and f.dtype == np.float32
    assert resize_to_frame(np.ones((5, 7, 1), np.float64), 9).shape == (9, 9, 1)


def test_resize_masks_stay_binary():
    mask = np.zeros((20, 40), bool)
    mask[5:15, 10:30] = True
    out = resize_to_frame(mask, 80)
    assert out.dtype == bool and out.shape == (80, 80)
    assert out[40, 40] and not out[0, 0]
    pal = Image.fromarray(mask.astype(np.uint8) * 3).convert("P")
    assert set(np.unique(np.asarray(resize_to_frame(pal, 33)))) <= {0, 3}


@pytest.mark.parametrize("frame", [0, -1, 1.5, True, "768", None])
def test_resize_rejects_bad_frame(frame):
    with pytest.raises(ValueError, match="frame"):
        resize_to_frame(np.zeros((4, 4, 3), np.uint8), frame)


def test_resize_rejects_bad_image():
    with pytest.raises(TypeError):
        resize_to_frame([[1, 2]], 8)  # type: ignore[type-var]
    with pytest.raises(ValueError):
        resize_to_frame(np.zeros((0, 4, 3), np.uint8), 8)
    with pytest.raises(ValueError):
        resize_to_frame(np.zeros((4,), np.uint8), 8)


# ---------------------------------------------------------------------------------------- frames


def test_to_image_frame_scales_and_clips():
    p = SegPrompt(
        boxes=[[768, 768, 0, 0], [384, 384, 400, 400]],
        points=[[384, 384], [-10, 1000], [0, 0]],
        labels=[1, 0, 1],
        think="t",
    )
    q = to_image_frame(p, (384, 200), 768)
    np.testing.assert_allclose(q.boxes, [[0, 0, 383, 199], [192, 100, 200, 104.16666666666667]])
    np.testing.assert_allclose(q.points, [[192, 100], [0, 199], [0, 0]])
    np.testing.assert_array_equal(q.labels, [1, 0, 1])
    assert q.think == "t"
    # the input is untouched
    np.testing.assert_array_equal(p.boxes, [[768, 768, 0, 0], [384, 384, 400, 400]])


def test_to_model_frame():
    p = SegPrompt(boxes=[[0, 0, 99, 49]], points=[[50, 25]], labels=[1])
    q = to_model_frame(p, (100, 50), 1024)
    np.testing.assert_allclose(q.boxes, [[0, 0, 1013.76, 1003.52]])
    np.testing.assert_allclose(q.points, [[512, 512]])
    r = to_model_frame(SegPrompt(points=[[100, 50]], labels=[0]), (100, 50), 1024)
    np.testing.assert_allclose(r.points, [[1023, 1023]])  # clipped to the frame


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 4000),
    st.integers(1, 4000),
    st.sampled_from([768, 1024, 336]),
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=10),
)
def test_frame_round_trip(w, h, frame, rel):
    pts = np.array([[x * (w - 1), y * (h - 1)] for x, y in rel])
    p = SegPrompt(points=pts, labels=[1] * len(pts))
    m = to_model_frame(p, (w, h), frame)
    assert np.all(m.points >= 0) and np.all(m.points <= frame - 1)
    back = to_image_frame(m, (w, h), frame)
    assert (
        np.all(back.points >= 0) and np.all(back.points[:, 0] <= w - 1) and np.all(back.points[:, 1] <= h - 1)
    )
    # exact except where the model frame is smaller than the image and clipping at frame-1 bites
    tol = np.array([max(w / frame, 1.0), max(h / frame, 1.0)]) + 1e-6
    assert np.all(np.abs(back.points - pts) <= tol)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.integers(1, 3000), st.integers(1, 3000))
def test_parsed_answers_always_map_into_the_image(text, w, h):
    q = to_image_frame(
        parse_answer("<bbox>[-5,3,900,2]</bbox><points>[[1e5,-1e5]]</points>" + text), (w, h), 768
    )
    assert (
        np.all(q.boxes[:, [0, 2]] <= w - 1) and np.all(q.boxes[:, [1, 3]] <= h - 1) and np.all(q.boxes >= 0)
    )
    assert np.all(q.boxes[:, 0] <= q.boxes[:, 2]) and np.all(q.boxes[:, 1] <= q.boxes[:, 3])
    assert np.all(q.points[:, 0] <= w - 1) and np.all(q.points[:, 1] <= h - 1) and np.all(q.points >= 0)


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (10,), "ab", None])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="image_size"):
        to_image_frame(SegPrompt.empty(), size, 768)  # type: ignore[arg-type]


def test_clip_prompt_copies_and_keeps_validity():
    v = AnswerValidity(think=True, bbox=True, errors=("x",))
    p = SegPrompt(boxes=[[5, -2, -3, 40]], points=[[10, 10]], labels=[0], validity=v)
    q = clip_prompt(p, (8, 30))
    np.testing.assert_array_equal(q.boxes, [[0, 0, 5, 29]])
    np.testing.assert_array_equal(q.points, [[7, 10]])
    assert q.validity == v and q.validity is not v
    q.points[0, 0] = 99
    assert p.points[0, 0] == 10
    assert clip_prompt(SegPrompt.empty(), (3, 3)).is_empty


# ------------------------------------------------------------------------------------------ split


def test_split_by_box_seg_r1_rule():
    p = SegPrompt(
        boxes=[[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 25, 25]],
        points=[[1, 1], [10, 10], [25, 25], [50, 50], [7, 7]],
        labels=[1, 0, 1, 1, 0],
        think="t",
    )
    subs = split_by_box(p)
    assert len(subs) == 3
    assert all(s.boxes.shape == (1, 4) and s.think == "t" for s in subs)
    np.testing.assert_array_equal(subs[0].points, [[1, 1], [10, 10], [7, 7]])  # border point included
    np.testing.assert_array_equal(subs[0].labels, [1, 0, 0])
    np.testing.assert_array_equal(subs[1].points, [[25, 25]])
    np.testing.assert_array_equal(subs[2].points, [[10, 10], [25, 25], [7, 7]])  # overlapping box shares
    assert not any(np.any(np.all(s.points == [50, 50], axis=1)) for s in subs)  # outside all boxes: dropped


def test_split_by_box_edge_cases():
    assert split_by_box(SegPrompt.empty()) == []
    pts = SegPrompt(points=[[1, 2], [3, 4]], labels=[1, 0])
    (only,) = split_by_box(pts)
    assert only.boxes.shape == (0, 4)
    np.testing.assert_array_equal(only.points, pts.points)
    (box_only,) = split_by_box(SegPrompt(boxes=[[9, 9, 1, 1]], points=[[5, 5]], labels=[1]))
    np.testing.assert_array_equal(box_only.boxes, [[1, 1, 9, 9]])  # corners ordered
    np.testing.assert_array_equal(box_only.points, [[5, 5]])
    (lonely,) = split_by_box(SegPrompt(boxes=[[0, 0, 1, 1]], points=[[5, 5]], labels=[1]))
    assert lonely.points.shape == (0, 2) and lonely.labels.shape == (0,)


# ------------------------------------------------------------------------------------ mask -> box


def test_mask_to_box():
    assert mask_to_box(np.zeros((5, 6), bool)) is None
    m = np.zeros((5, 6), np.uint8)
    m[2, 3] = 255
    np.testing.assert_array_equal(mask_to_box(m), [3, 2, 3, 2])
    with pytest.raises(ValueError):
        mask_to_box(np.zeros((2, 2, 2), bool))
    rng = np.random.default_rng(1)
    for _ in range(50):
        m = rng.random((rng.integers(1, 30), rng.integers(1, 30))) > rng.uniform(0.5, 1.0)
        box = mask_to_box(m)
        if not m.any():
            assert box is None
            continue
        ys, xs = np.nonzero(m)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max(), ys.max()])
        assert box.dtype == np.float64


# --------------------------------------------------------------------------------- sample_points


def _mask(h=60, w=80):
    m = np.zeros((h, w), bool)
    m[20:40, 30:50] = True
    return m


def test_sample_points_inside_and_outside():
    m = _mask()
    pts, labels = sample_points(m, 5, 7, 0)
    assert pts.shape == (12, 2) and labels.shape == (12,) and pts.dtype == np.float64
    np.testing.assert_array_equal(labels, [1] * 5 + [0] * 7)
    xs, ys = pts[:, 0].astype(int), pts[:, 1].astype(int)
    assert np.all(m[ys[:5], xs[:5]]) and not np.any(m[ys[5:], xs[5:]])
    assert len({tuple(p) for p in pts}) == 12  # without replacement
    # negatives come from near the object (box grown by 10% = 2 px) while there are enough of them
    assert np.all((xs[5:] >= 28) & (xs[5:] <= 51) & (ys[5:] >= 18) & (ys[5:] <= 41))


def test_sample_points_is_seeded():
    m = _mask()
    a = sample_points(m, 4, 4, 123)
    b = sample_points(m, 4, 4, np.random.default_rng(123))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], sample_points(m, 4, 4, 124)[0])


def test_sample_points_degenerate_masks():
    empty = np.zeros((10, 10), bool)
    pts, labels = sample_points(empty, 3, 4, 0)
    assert labels.tolist() == [0] * 4 and pts.shape == (4, 2)
    full = np.ones((10, 10), bool)
    pts, labels = sample_points(full, 3, 4, 0)
    assert labels.tolist() == [1] * 3
    tiny = np.zeros((3, 3), bool)
    tiny[1, 1] = True
    pts, labels = sample_points(tiny, 5, 20, 0)
    assert labels.tolist() == [1] + [0] * 8
    np.testing.assert_array_equal(pts[0], [1, 1])
    pts, labels = sample_points(_mask(), 0, 0, 0)
    assert pts.shape == (0, 2) and labels.shape == (0,)
    # negatives near the box run out -> the rest come from further away
    pts, labels = sample_points(_mask(), 0, 1000, 0)
    assert len(pts) == 1000 and not np.any(_mask()[pts[:, 1].astype(int), pts[:, 0].astype(int)])


def test_sample_points_errors():
    with pytest.raises(ValueError):
        sample_points(np.zeros((2, 2, 1), bool), 1, 1, 0)
    with pytest.raises(ValueError):
        sample_points(_mask(), -1, 1, 0)
    with pytest.raises(TypeError):
        sample_points(_mask(), 1.5, 1, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sample_points(_mask(), 1, 1, 0, margin=-0.1)


def test_sampled_points_make_a_valid_prompt():
    m = _mask()
    pts, labels = sample_points(m, 3, 3, 0)
    p = SegPrompt(boxes=mask_to_box(m), points=pts, labels=labels)
    (sub,) = split_by_box(p)
    assert sub.points.shape[0] >= 3  # all positives lie inside the tight box


def test_box_iou():
    from segr1.geometry import box_iou

    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert box_iou(np.array([0.0, 0, 4, 4]), np.array([2.0, 2, 6, 6])) == pytest.approx(4 / 28)
    assert box_iou(None, [0, 0, 1, 1]) == 0.0
    assert box_iou([3, 3, 3, 3], [3, 3, 3, 3]) == 0.0
