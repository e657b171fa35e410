"""segr1.answer_json: parsing untrusted Seg-Zero / VisionReasoner JSON answers, rendering, fuzzing."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segr1.answer import SegPrompt
from segr1.answer_json import (
    MAX_ABS_COORD,
    MAX_ANSWER_CHARS,
    MAX_ERRORS,
    MAX_LABEL_CHARS,
    MAX_OBJECTS,
    MAX_TEXT_CHARS,
    MAX_THINK_CHARS,
    JsonAnswer,
    format_json_answer,
    parse_json_answer,
    structure_ok,
)

VR = (
    '<think>Two glasses hold drinks.</think>\n<answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, '
    '{"bbox_2d": [225,296,706,786], "point_2d": [302,410], "label": "glass"}]</answer>'
)
SZ = '<think>the odd one</think><answer>{"bbox": [20,30,10,40], "points_1": [12,35], "points_2": [18.5,33]}</answer>'
FULLMATCH = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def check_invariants(a: JsonAnswer) -> None:
    assert isinstance(a, JsonAnswer)
    v = a.validity
    assert len(a.objects) == len(a.labels) == len(v.box_ok) == len(v.point_ok) <= MAX_OBJECTS
    k = 2 if v.layout == "single" else 1
    assert a.boxes.shape == (len(v.box_ok), 4) and a.points.shape == (len(v.box_ok), k, 2)
    assert np.array_equal(~np.isnan(a.boxes).any(axis=1), np.array(v.box_ok, dtype=bool).reshape(-1))
    assert v.entries >= len(a.objects)
    for obj, box_ok in zip(a.objects, v.box_ok, strict=True):
        assert isinstance(obj, SegPrompt)
        assert obj.boxes.shape == ((1, 4) if box_ok else (0, 4))
        assert obj.points.shape[0] <= 2 and np.all(obj.labels == 1)
        assert np.all(np.isfinite(obj.boxes)) and np.all(np.isfinite(obj.points))
        assert np.all(np.abs(obj.boxes) <= MAX_ABS_COORD) and np.all(np.abs(obj.points) <= MAX_ABS_COORD)
        assert np.all(obj.boxes[:, 0] <= obj.boxes[:, 2]) and np.all(obj.boxes[:, 1] <= obj.boxes[:, 3])
    assert all(lab is None or (isinstance(lab, str) and len(lab) <= MAX_LABEL_CHARS) for lab in a.labels)
    assert a.think is None or len(a.think) <= MAX_THINK_CHARS
    assert v.think == (a.think is not None)
    assert len(v.errors) <= MAX_ERRORS and all(isinstance(e, str) and len(e) < 200 for e in v.errors)
    assert v.layout in ("", "objects", "single") and (v.json or not v.layout)
    json.dumps(a.to_dict())
    u = a.union()
    assert u.boxes.shape[0] == sum(v.box_ok)
    assert u.points.shape[0] == sum(o.points.shape[0] for o in a.objects)


# ------------------------------------------------------------------------------------------------ parse


def test_parse_vision_reasoner_answer():
    a = parse_json_answer(VR)
    check_invariants(a)
    v = a.validity
    assert (v.think, v.answer, v.structure, v.json, v.layout, v.entries) == (
        True,
        True,
        True,
        True,
        "objects",
        2,
    )
    assert v.box_ok == (True, True) and v.point_ok == (True, True) and v.all_valid
    np.testing.assert_array_equal(a.objects[1].boxes, [[225, 296, 706, 786]])
    np.testing.assert_array_equal(a.objects[1].points, [[302, 410]])
    assert a.labels == [None, "glass"] and a.think == "Two glasses hold drinks."
    u = a.union()
    np.testing.assert_array_equal(u.boxes, [[10, 100, 200, 210], [225, 296, 706, 786]])
    assert u.validity.think and u.validity.bbox and u.validity.points


def test_parse_seg_zero_single_answer_orders_corners():
    a = parse_json_answer(SZ)
    check_invariants(a)
    assert a.validity.layout == "single" and a.validity.all_valid and a.validity.structure
    np.testing.assert_array_equal(a.objects[0].boxes, [[10, 30, 20, 40]])
    np.testing.assert_array_equal(a.objects[0].points, [[12, 35], [18.5, 33]])


@pytest.mark.parametrize(
    ("text", "box_ok", "point_ok", "error"),
    [
        ('<answer>[{"bbox_2d": [1,2,3], "point_2d": [1,2]}]</answer>', False, True, "bbox_2d"),
        ('<answer>[{"bbox_2d": [1,2,3,4], "point_2d": [1,2,3]}]</answer>', True, False, "point_2d"),
        ('<answer>[{"bbox_2d": ["1",2,3,4], "point_2d": [true,2]}]</answer>', False, False, "bbox_2d"),
        ('<answer>[{"bbox_2d": [1,2,3,NaN], "point_2d": [Infinity,2]}]</answer>', False, False, "bbox_2d"),
        ('<answer>[{"bbox_2d": [1,2,3,1e999], "point_2d": [1e6,2]}]</answer>', False, False, "bbox_2d"),
        ('<answer>[{"bbox_2d": [1,2,3,' + "9" * 500 + '], "point_2d": [1,2]}]</answer>', False, True, "bbox"),
        (
            '<answer>[7, {"bbox_2d": [1,2,3,4], "point_2d": [1,2]}]</answer>',
            False,
            False,
            "not a JSON object",
        ),
        ('<answer>{"bbox": [1,2,3,4], "points_1": [1,2]}</answer>', True, False, "points_1"),
        ('<answer>{"bbox_2d": [1,2,3,4], "point_2d": [1,2]}</answer>', False, False, "bbox"),
    ],
)
def test_invalid_entries_are_recorded(text, box_ok, point_ok, error):
    a = parse_json_answer(text)
    check_invariants(a)
    assert a.validity.json and a.validity.box_ok[0] == box_ok and a.validity.point_ok[0] == point_ok
    assert any(error in e for e in a.validity.errors)
    assert not a.validity.all_valid and not a.validity.structure


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no tags at all",
        "<answer>[{'bbox_2d': [1,2,3,4]}]</answer>",  # Python, not JSON: never evaluated
        "<answer>[{\"bbox_2d\": __import__('os').system('ls')}]</answer>",
        '<answer>[{"bbox_2d": [1,2,3,4]}] trailing</answer>',
        "<answer>42</answer>",
        "<answer>[1,2,3",
        "<think>unclosed",
        "<answer>" + "[" * 10_000 + "]" * 10_000 + "</answer>",
        "<answer>" + "{" * 500 + "</answer>",
    ],
)
def test_broken_answers_give_no_objects_and_never_raise(text):
    a = parse_json_answer(text)
    check_invariants(a)
    assert a.objects == [] and not a.validity.all_valid
    assert a.validity.errors


def test_non_strings_and_bounds():
    for value in (None, 12, b"<answer>[]</answer>", ["<answer>"]):
        a = parse_json_answer(value)  # type: ignore[arg-type]
        check_invariants(a)
        assert a.validity.errors[0].startswith("not a string")
    many = (
        "<answer>["
        + ", ".join(['{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}'] * (MAX_OBJECTS + 5))
        + "]</answer>"
    )
    a = parse_json_answer(many)
    check_invariants(a)
    assert (
        len(a.objects) == MAX_OBJECTS and a.validity.entries == MAX_OBJECTS + 5 and not a.validity.all_valid
    )
    long_answer = "<answer>[" + " " * MAX_ANSWER_CHARS + "]</answer>"
    assert any("longer than" in e for e in parse_json_answer(long_answer).validity.errors)
    long_text = VR + "x" * MAX_TEXT_CHARS
    a = parse_json_answer(long_text)
    assert a.validity.all_valid and not a.validity.structure  # scanned prefix; the tail is cut
    assert (
        parse_json_answer("<think>" + "t" * (3 * MAX_THINK_CHARS) + "</think>").think == "t" * MAX_THINK_CHARS
    )
    label = '<answer>[{"bbox_2d": [1,2,3,4], "point_2d": [2,3], "label": "' + "z" * 999 + '"}]</answer>'
    assert parse_json_answer(label).labels == ["z" * MAX_LABEL_CHARS]


def test_adversarial_inputs_are_fast():
    texts = [
        "<think>" + "</think><answer></answer>x" * 2500,  # quadratic for a backtracking fullmatch
        "<answer>" + '{"bbox_2d": ' * 3000 + "</answer>",
        "<answer>[" + "1," * 5000 + "1]</answer>",
        "<think>" * 20_000 + "</answer>" * 20_000,
        ("<answer>[" + "9" * 4000 + "]</answer>") * 10,
    ]
    start = time.perf_counter()
    for t in texts:
        check_invariants(parse_json_answer(t))
    assert time.perf_counter() - start < 2.0


# ------------------------------------------------------------------------------------- structure rule


@pytest.mark.parametrize(
    "text",
    [
        VR.replace("\n", ""),
        VR,
        "<think></think><answer></answer>",
        "<think>a</think>  \n\t<answer>b</answer>",
        "<think></think><answer></answer>x",
        " <think></think><answer></answer>",
        "<think>a</think>x<answer>b</answer>",
        "<think>a</think><answer>b</answer></answer>",
        "<think></think></think><answer></answer>",
        "<think></answer>",
        "<think>x</think>\u2003<answer>y</answer>",
    ],
)
def test_structure_rule_matches_the_published_regex(text):
    assert structure_ok(text) == (FULLMATCH.fullmatch(text) is not None)


_soup = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "x", "<", ">", "/"])


@settings(max_examples=500, deadline=None)
@given(st.lists(_soup, max_size=30).map("".join))
def test_structure_rule_equals_fullmatch_on_tag_soup(text):
    assert structure_ok(text) == (FULLMATCH.fullmatch(text) is not None)


# ------------------------------------------------------------------------------------------- fuzzing

_json_alphabet = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        " ",
        '"bbox_2d"',
        '"point_2d"',
    ]
    + ['"bbox"', '"points_1"', '"label"', '"x"', "1", "-3", "2.5", "1e3", "1e999", "NaN", "Infinity", "null"]
    + ["true", '"', "\\", "9" * 60, "eval(", "__import__('os')", "İ"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_never_raises_on_arbitrary_text(text):
    check_invariants(parse_json_answer(text))


@settings(max_examples=500, deadline=None)
@given(st.lists(_json_alphabet, max_size=60).map("".join))
def test_never_raises_on_json_soup(text):
    check_invariants(parse_json_answer(text))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VR) - 1), st.integers(1, 8), st.text(max_size=6))
def test_mutated_valid_answers_never_raise(at, cut, insert):
    check_invariants(parse_json_answer(VR[:at] + insert + VR[at + cut :]))
    check_invariants(parse_json_answer(SZ[: at % len(SZ)] + insert + SZ[at % len(SZ) + cut :]))


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                        st.sampled_from(["bbox_2d", "point_2d", "bbox", "points_1", "points_2", "label", "k"]),
                        kids, max_size=4), max_leaves=30))  # fmt: skip
def test_any_json_value_never_raises(value):
    text = "<think>t</think><answer>" + json.dumps(value) + "</answer>"
    a = parse_json_answer(text)
    check_invariants(a)
    assert a.validity.json and a.validity.structure


# ------------------------------------------------------------------------------------------- rendering

coord = st.one_of(
    st.integers(-2000, 2000).map(float), st.floats(-MAX_ABS_COORD, MAX_ABS_COORD, allow_nan=False)
)


@st.composite
def objects(draw) -> list[SegPrompt]:
    out = []
    for _ in range(draw(st.integers(1, 12))):
        x1, x2 = sorted([draw(coord), draw(coord)])
        y1, y2 = sorted([draw(coord), draw(coord)])
        out.append(SegPrompt(boxes=[[x1, y1, x2, y2]], points=[[draw(coord), draw(coord)]], labels=[1]))
    return out


_think = st.text(st.characters(blacklist_characters="<>", blacklist_categories=["Cs"]), max_size=40).map(
    str.strip
)


@settings(max_examples=200, deadline=None)
@given(objects(), _think, st.lists(st.one_of(st.none(), st.text(max_size=10)), min_size=12, max_size=12))
def test_format_parse_round_trip(objs, think, names):
    labels = names[: len(objs)]
    text = format_json_answer(objs, think, labels=labels)
    a = parse_json_answer(text)
    check_invariants(a)
    assert a.validity.all_valid and a.validity.structure and a.think == think and a.labels == labels
    for got, want in zip(a.objects, objs, strict=True):
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.points, want.points)
    assert format_json_answer(a.objects, a.think, labels=a.labels) == text


@settings(max_examples=100, deadline=None)
@given(objects(), _think)
def test_single_layout_round_trip(objs, think):
    obj = SegPrompt(
        boxes=objs[0].boxes, points=np.concatenate([objs[0].points, objs[-1].points]), labels=[1, 1]
    )
    a = parse_json_answer(format_json_answer(obj, think, layout="single"))
    check_invariants(a)
    assert a.validity.layout == "single" and a.validity.all_valid
    np.testing.assert_array_equal(a.objects[0].points, obj.points)


def test_format_json_answer_shape_and_errors():
    objs = [
        SegPrompt(boxes=[[10, 100, 200, 210]], points=[[5, 5], [30, 110]], labels=[0, 1]),
        SegPrompt(boxes=[[225, 296, 706, 786.5]]),
    ]
    assert format_json_answer(objs, "two") == (
        '<think>two</think><answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, '
        '{"bbox_2d": [225,296,706,786.5], "point_2d": [465.5,541.25]}]</answer>'
    )
    assert format_json_answer(objs[1], decimals=0) == (
        '<answer>[{"bbox_2d": [225,296,706,786], "point_2d": [466,541]}]</answer>'
    )
    assert format_json_answer(objs[0], layout="single") == (
        '<answer>{"bbox": [10,100,200,210], "points_1": [30,110], "points_2": [30,110]}</answer>'
    )
    assert '"label": "a \\"q\\""' in format_json_answer(objs[:1], labels=['a "q"'])
    with pytest.raises(ValueError, match="exactly one box"):
        format_json_answer(SegPrompt(points=[[1, 2]], labels=[1]))
    with pytest.raises(ValueError, match="single layout"):
        format_json_answer(objs, layout="single")
    with pytest.raises(ValueError, match="layout"):
        format_json_answer(objs, layout="tags")
    with pytest.raises(ValueError, match="labels"):
        format_json_answer(objs, labels=["one"])
    with pytest.raises(TypeError):
        format_json_answer([{"bbox_2d": [1, 2, 3, 4]}])  # type: ignore[list-item]
