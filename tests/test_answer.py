"""Tests for segr1.answer: parsing untrusted completions, rendering, SegPrompt."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segr1.answer import (
    MAX_ABS_COORD,
    MAX_BOXES,
    MAX_ERRORS,
    MAX_POINTS,
    MAX_TEXT_CHARS,
    MAX_THINK_CHARS,
    AnswerValidity,
    SegPrompt,
    format_answer,
    parse_answer,
)

FULL = (
    "<think>The cat sits on the left.</think> <bbox>[10,20,110,220]</bbox>, "
    "<points>[[50,60],[5,5]]</points>, <labels>[1,0]</labels>"
)


def check_invariants(p: SegPrompt) -> None:
    assert isinstance(p, SegPrompt)
    assert p.boxes.dtype == np.float64 and p.boxes.ndim == 2 and p.boxes.shape[1] == 4
    assert p.points.dtype == np.float64 and p.points.ndim == 2 and p.points.shape[1] == 2
    assert p.labels.dtype == np.int64 and p.labels.shape == (p.points.shape[0],)
    assert p.boxes.shape[0] <= MAX_BOXES and p.points.shape[0] <= MAX_POINTS
    assert np.all(np.isfinite(p.boxes)) and np.all(np.isfinite(p.points))
    assert np.all(np.abs(p.boxes) <= MAX_ABS_COORD) and np.all(np.abs(p.points) <= MAX_ABS_COORD)
    assert np.all(p.boxes[:, 0] <= p.boxes[:, 2]) and np.all(p.boxes[:, 1] <= p.boxes[:, 3])
    assert set(p.labels.tolist()) <= {0, 1}
    assert p.think is None or len(p.think) <= MAX_THINK_CHARS
    assert len(p.validity.errors) <= MAX_ERRORS
    assert all(isinstance(e, str) and len(e) < 200 for e in p.validity.errors)
    assert p.validity.bbox == (p.boxes.shape[0] > 0)
    assert p.validity.points == (p.points.shape[0] > 0)
    json.dumps(p.to_dict())


# ------------------------------------------------------------------------------------------------ parse


def test_parse_full_answer():
    p = parse_answer(FULL)
    np.testing.assert_array_equal(p.boxes, [[10, 20, 110, 220]])
    np.testing.assert_array_equal(p.points, [[50, 60], [5, 5]])
    np.testing.assert_array_equal(p.labels, [1, 0])
    assert p.think == "The cat sits on the left."
    v = p.validity
    assert (v.think, v.bbox, v.points, v.labels) == (True, True, True, True)
    assert v.errors == ()
    assert v.is_complete() and v.is_complete(points_only=True)
    assert not p.is_empty


def test_parse_several_boxes_whitespace_case_floats():
    text = (
        "<THINK>\n two birds \n</Think>\n<bbox> [ 1.5 , 2 ,\n 30.25, 40 ] </bbox>\n"
        "<BBox>[100,-5,+120,1e2]</bbox> <points> [ [ 2 , 3 ] ,[110.5,50] ] </points>\t<labels>[ 1 ,1 ]</labels>"
    )
    p = parse_answer(text)
    np.testing.assert_array_equal(p.boxes, [[1.5, 2, 30.25, 40], [100, -5, 120, 100]])
    np.testing.assert_array_equal(p.points, [[2, 3], [110.5, 50]])
    np.testing.assert_array_equal(p.labels, [1, 1])
    assert p.think == "two birds"
    assert p.validity.is_complete()


def test_parse_without_think_and_without_box():
    p = parse_answer("<points>[[1,2]]</points> <labels>[1]</labels>")
    assert not p.validity.think and not p.validity.bbox
    assert p.validity.points and p.validity.labels
    assert not p.validity.is_complete() and not p.validity.is_complete(points_only=True)
    assert p.think is None
    assert any("think" in e for e in p.validity.errors)
    p2 = parse_answer("<think></think><points>[[1,2]]</points> <labels>[1]</labels>")
    assert p2.think == "" and p2.validity.is_complete(points_only=True)


def test_parse_box_only():
    p = parse_answer("<think>x</think> <bbox>[0,0,5,5]</bbox>")
    assert p.validity.bbox and not p.validity.points and not p.validity.labels
    assert p.points.shape == (0, 2) and p.labels.shape == (0,)
    assert not p.validity.is_complete()


def test_swapped_corners_are_ordered():
    p = parse_answer("<bbox>[50,60,10,20]</bbox>")
    np.testing.assert_array_equal(p.boxes, [[10, 20, 50, 60]])
    assert p.validity.bbox


def test_box_list_in_one_tag():
    p = parse_answer("<bbox>[[0,0,1,1],[2,2,3,3]]</bbox>")
    assert p.boxes.shape == (2, 4) and p.validity.bbox


def test_single_point_without_outer_list():
    p = parse_answer("<points>[4,5]</points><labels>[0]</labels>")
    np.testing.assert_array_equal(p.points, [[4, 5]])
    np.testing.assert_array_equal(p.labels, [0])
    assert p.validity.points and p.validity.labels


@pytest.mark.parametrize(
    "labels_tag",
    [
        "",
        "<labels>[1]</labels>",
        "<labels>[1,0,1]</labels>",
        "<labels>[2,0]</labels>",
        "<labels>[1,x]</labels>",
    ],
)
def test_bad_labels_keep_points_as_foreground(labels_tag):
    p = parse_answer(f"<points>[[1,2],[3,4]]</points>{labels_tag}")
    np.testing.assert_array_equal(p.points, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(p.labels, [1, 1])
    assert p.validity.points and not p.validity.labels
    assert any(e.startswith("labels") for e in p.validity.errors)


def test_float_labels_accepted():
    p = parse_answer("<points>[[1,2],[3,4]]</points><labels>[1.0, 0.]</labels>")
    np.testing.assert_array_equal(p.labels, [1, 0])
    assert p.validity.labels


@pytest.mark.parametrize(
    "bad",
    [
        "<bbox>[1,2,3]</bbox>",
        "<bbox>[1,2,3,4,5]</bbox>",
        "<bbox>[1,2,3,nan]</bbox>",
        "<bbox>[1,2,3,inf]</bbox>",
        "<bbox>[1,2,3,1e400]</bbox>",
        f"<bbox>[1,2,3,{MAX_ABS_COORD * 10:.0f}]</bbox>",
        "<bbox>[1,2,3,-200000]</bbox>",
        "<bbox>(1,2,3,4)</bbox>",
        "<bbox>[1,2,3,4</bbox>",
        "<bbox>[1,2,3,4]]</bbox>",
        "<bbox>[1 2 3 4]</bbox>",
        "<bbox>[1,2,3,4,]</bbox>",
        "<bbox>[,1,2,3,4]</bbox>",
        "<bbox>[[[1,2,3,4]]]</bbox>",
        "<bbox>[1,2,3,4] extra</bbox>",
        "<bbox>[]</bbox>",
        "<bbox>[1,2,3,__import__('os')]</bbox>",
        "<bbox>[0x10,2,3,4]</bbox>",
        "<bbox>[1_0,2,3,4]</bbox>",
        "<bbox>[١,2,3,4]</bbox>",  # non-ASCII digit
        "<bbox>[1,2,3,4]",  # unclosed tag
        "<bbox>[0." + "0" * 100 + "1,1,2,3]</bbox>",  # absurdly long number
    ],
)
def test_invalid_boxes_rejected(bad):
    p = parse_answer("<think>t</think>" + bad)
    assert p.boxes.shape == (0, 4)
    assert not p.validity.bbox
    assert p.validity.errors
    check_invariants(p)


def test_one_bad_box_does_not_spoil_the_others():
    p = parse_answer("<bbox>[1,2]</bbox><bbox>[1,2,3,4]</bbox>")
    np.testing.assert_array_equal(p.boxes, [[1, 2, 3, 4]])
    assert p.validity.bbox and p.validity.errors


@pytest.mark.parametrize(
    "bad",
    [
        "[]",
        "[[1,2,3]]",
        "[[1,2],[3]]",
        "[[1,2],3]",
        "[[nan,2]]",
        "[[1,2]",
        "[[1,2]][[3,4]]",
        "[[1,2],[3,4],]",
    ],
)
def test_invalid_points_rejected(bad):
    p = parse_answer(f"<points>{bad}</points><labels>[1]</labels>")
    assert p.points.shape == (0, 2) and p.labels.shape == (0,)
    assert not p.validity.points
    check_invariants(p)


def test_limits_on_boxes_and_points():
    boxes = "".join(f"<bbox>[{i},{i},{i + 1},{i + 1}]</bbox>" for i in range(MAX_BOXES + 5))
    p = parse_answer(boxes)
    assert p.boxes.shape == (MAX_BOXES, 4) and p.validity.bbox
    assert any("boxes" in e for e in p.validity.errors)

    n = MAX_POINTS + 1
    pts = ",".join(f"[{i},{i}]" for i in range(n))
    p = parse_answer(f"<points>[{pts}]</points><labels>[{','.join(['1'] * n)}]</labels>")
    assert p.points.shape == (0, 2) and not p.validity.points and not p.validity.labels
    pts = ",".join(f"[{i},{i}]" for i in range(MAX_POINTS))
    p = parse_answer(f"<points>[{pts}]</points><labels>[{','.join(['0'] * MAX_POINTS)}]</labels>")
    assert p.points.shape == (MAX_POINTS, 2) and p.validity.labels


def test_think_is_truncated():
    p = parse_answer("<think>" + "a" * (MAX_THINK_CHARS * 2) + "</think>")
    assert p.validity.think and len(p.think) == MAX_THINK_CHARS


def test_only_first_points_and_labels_tags_are_read():
    p = parse_answer("<points>[[1,1]]</points><labels>[0]</labels><points>[[2,2],[3,3]]</points>")
    np.testing.assert_array_equal(p.points, [[1, 1]])
    np.testing.assert_array_equal(p.labels, [0])


def test_nested_open_tags_read_innermost():
    p = parse_answer("<bbox><bbox>[1,2,3,4]</bbox>")
    np.testing.assert_array_equal(p.boxes, [[1, 2, 3, 4]])


def test_text_beyond_scan_limit_is_ignored():
    text = "x" * MAX_TEXT_CHARS + "<bbox>[1,2,3,4]</bbox>"
    p = parse_answer(text)
    assert p.is_empty and any("longer" in e for e in p.validity.errors)


@pytest.mark.parametrize("obj", [None, 3, b"<bbox>[1,2,3,4]</bbox>", ["<bbox>"], {"a": 1}, object()])
def test_non_string_gives_empty_invalid_prompt(obj):
    p = parse_answer(obj)  # type: ignore[arg-type]
    assert p.is_empty and not p.validity.is_complete() and p.validity.errors
    check_invariants(p)


def test_lowercasing_that_changes_length_keeps_alignment():
    # "İ".lower() is two code points; tag offsets must still line up with the original text.
    p = parse_answer("İİİ<think>İ ok</think><bbox>[1,2,3,4]</bbox>")
    assert p.think == "İ ok"
    np.testing.assert_array_equal(p.boxes, [[1, 2, 3, 4]])


# --------------------------------------------------------------------------------- hostile / huge input


HUGE = [
    "[" * 1_000_000,
    "<bbox>" + "[" * 1_000_000 + "</bbox>",
    "<points>" + "[" * 1_000_000,
    "<points>" + "[[1,2]," * 200_000 + "</points>",
    "<bbox>" * 300_000,
    "<think>" * 300_000 + "</think>",
    "<bbox>[1,2,3,4]</bbox>" * 100_000,
    "<labels>[" + "1," * 500_000 + "1]</labels>",
    "1" * 2_000_000,
    "<bbox>[" + "9" * 500_000 + ",1,2,3]</bbox>",
    "<bbox>[1" + " " * 1_000_000 + ",2,3,4]</bbox>",
    "<" * 1_000_000,
    "\x00\udcff" * 500_000,
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", HUGE, ids=range(len(HUGE)))
def test_huge_and_deeply_nested_inputs_return(text):
    p = parse_answer(text)
    check_invariants(p)


@pytest.mark.timeout(10)
def test_many_huge_inputs_stay_linear():
    # 50 x 1 MB of adversarial text must still return promptly.
    for i in range(50):
        check_invariants(parse_answer(("<bbox>[" + "1," * 7) * (1_000_000 // 16) + str(i)))


# ------------------------------------------------------------------------------------------- properties

_tag_alphabet = st.sampled_from(
    ["<think>", "</think>", "<bbox>", "</bbox>", "<points>", "</points>", "<labels>", "</labels>"]
    + ["[", "]", ",", " ", "\n", "1", "0", "-3", "2.5", "1e3", "nan", "inf", "1e9", ".", "+", "e", "x", "İ"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_never_raises_on_arbitrary_text(text):
    check_invariants(parse_answer(text))


@settings(max_examples=400, deadline=None)
@given(st.lists(_tag_alphabet, max_size=80).map("".join))
def test_never_raises_on_tag_soup(text):
    check_invariants(parse_answer(text))


coord = st.one_of(
    st.integers(-2000, 2000).map(float),
    st.floats(-MAX_ABS_COORD, MAX_ABS_COORD, allow_nan=False, allow_infinity=False),
)


@st.composite
def prompts(draw) -> SegPrompt:
    n_boxes = draw(st.integers(0, MAX_BOXES))
    boxes = []
    for _ in range(n_boxes):
        x1, x2 = sorted([draw(coord), draw(coord)])
        y1, y2 = sorted([draw(coord), draw(coord)])
        boxes.append([x1, y1, x2, y2])
    n_points = draw(st.integers(0, MAX_POINTS))
    points = [[draw(coord), draw(coord)] for _ in range(n_points)]
    labels = [draw(st.integers(0, 1)) for _ in range(n_points)]
    think = draw(
        st.one_of(
            st.none(),
            st.text(st.characters(blacklist_characters="<>", blacklist_categories=["Cs"]), max_size=40).map(
                str.strip
            ),
        )
    )
    return SegPrompt(boxes=boxes, points=points, labels=labels, think=think)


@settings(max_examples=200, deadline=None)
@given(prompts())
def test_format_parse_round_trip(prompt):
    text = format_answer(prompt)
    parsed = parse_answer(text)
    check_invariants(parsed)
    np.testing.assert_array_equal(parsed.boxes, prompt.boxes)
    np.testing.assert_array_equal(parsed.points, prompt.points)
    np.testing.assert_array_equal(parsed.labels, prompt.labels)
    assert parsed.think == prompt.think
    v = parsed.validity
    assert v.think == (prompt.think is not None)
    assert v.bbox == (prompt.boxes.shape[0] > 0)
    assert v.points == v.labels == (prompt.points.shape[0] > 0)
    assert format_answer(parsed) == text


@settings(max_examples=100, deadline=None)
@given(prompts())
def test_dict_round_trip(prompt):
    d = json.loads(json.dumps(prompt.to_dict()))
    assert SegPrompt.from_dict(d) == prompt


# ------------------------------------------------------------------------------------------- rendering


def test_format_answer_shape():
    p = SegPrompt(boxes=[[10, 20, 110, 220], [1, 2, 3.5, 4]], points=[[50, 60], [5, 5]], labels=[1, 0])
    assert format_answer(p, think="a cat") == (
        "<think>a cat</think> <bbox>[10,20,110,220]</bbox>, <bbox>[1,2,3.5,4]</bbox>, "
        "<points>[[50,60],[5,5]]</points>, <labels>[1,0]</labels>"
    )
    assert format_answer(p).startswith("<bbox>")
    assert format_answer(SegPrompt(points=[[1.26, 2.74]], labels=[0]), decimals=0) == (
        "<points>[[1,3]]</points>, <labels>[0]</labels>"
    )
    assert format_answer(SegPrompt(points=[[1.26, 2]], labels=[0]), decimals=1).startswith(
        "<points>[[1.3,2]]"
    )
    assert format_answer(SegPrompt.empty()) == ""
    assert format_answer(SegPrompt.empty(), think="t") == "<think>t</think>"


def test_format_answer_rejects_non_prompt():
    with pytest.raises(TypeError):
        format_answer({"boxes": []})  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------- SegPrompt


def test_segprompt_coercion_and_validation():
    p = SegPrompt(boxes=[1, 2, 3, 4], points=[[1, 2]], labels=[True])
    assert p.boxes.shape == (1, 4) and p.labels.tolist() == [1] and p.labels.dtype == np.int64
    e = SegPrompt.empty()
    assert e.is_empty and e.boxes.shape == (0, 4) and e.points.shape == (0, 2) and e.labels.shape == (0,)
    assert SegPrompt(boxes=None, points=None, labels=None).is_empty
    for kwargs in [
        {"boxes": [[1, 2, 3]]},
        {"boxes": [[1, 2, 3, 4], [1, 2]]},
        {"points": [[1, 2]], "labels": []},
        {"points": [[1, 2]], "labels": [2]},
        {"points": [[1, 2]], "labels": ["a"]},
        {"points": [[1, math.nan]], "labels": [1]},
        {"boxes": [[0, 0, math.inf, 1]]},
        {"points": [[1, 2, 3]], "labels": [1]},
    ]:
        with pytest.raises(ValueError):
            SegPrompt(**kwargs)


def test_segprompt_equality_and_dict():
    a = SegPrompt(boxes=[[1, 2, 3, 4]], think="x")
    b = SegPrompt.from_dict(a.to_dict())
    assert a == b and a != SegPrompt(boxes=[[1, 2, 3, 5]], think="x") and a != "x"
    assert SegPrompt.from_dict({}) == SegPrompt.empty()
    v = AnswerValidity(think=True, errors=("e",))
    assert AnswerValidity.from_dict(v.to_dict()) == v
    with pytest.raises(TypeError):
        SegPrompt.from_dict([1, 2])  # type: ignore[arg-type]


def test_is_complete_truth_table():
    assert AnswerValidity(True, True, True, True).is_complete()
    assert not AnswerValidity(False, True, True, True).is_complete()
    assert not AnswerValidity(True, False, True, True).is_complete()
    assert AnswerValidity(True, False, True, True).is_complete(points_only=True)
    assert not AnswerValidity(True, True, True, False).is_complete(points_only=True)
    assert not AnswerValidity(True, True, False, True).is_complete(points_only=True)
