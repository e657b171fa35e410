"""Seg-Zero / VisionReasoner JSON answers: parse untrusted completion text into per-object prompts, render back.

Two layouts, coordinates in the square *model frame* the LMM saw (840 x 840 for these checkpoints;
`segr1.family`)::

    objects (VisionReasoner-7B; Seg-Zero since its May 2025 update) -- one entry per object:
    <think>...</think><answer>[{"bbox_2d": [x1,y1,x2,y2], "point_2d": [x,y]}, ...]</answer>

    single (Seg-Zero-7B, the March 2025 release) -- one object, one box and two points:
    <think>...</think><answer>{"bbox": [x1,y1,x2,y2], "points_1": [x,y], "points_2": [x,y]}</answer>

An entry may also carry a ``"label"`` string (Qwen2.5-VL's grounding habit); it is kept, at most
`MAX_LABEL_CHARS` characters. Tags are matched case-sensitively, as those projects' parsers and rewards do.

Model output is untrusted input. `parse_json_answer` never raises and never evaluates anything: the answer is
decoded with `json.loads` (a data-only parser) after bounding the work -- at most `MAX_TEXT_CHARS` characters are
scanned with `str.find`, an answer longer than `MAX_ANSWER_CHARS` or holding more than `MAX_BRACKETS` brackets is
refused before decoding (this also bounds the nesting depth), numbers are read from at most `MAX_NUMBER_CHARS`
characters (no huge-integer conversion), NaN / Infinity / ``1e999`` and coordinates above `MAX_ABS_COORD`
invalidate their entry, and at most `MAX_OBJECTS` entries are read. Every step is linear in the text.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from segr1.answer import AnswerValidity, SegPrompt

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 64 * 1024  # characters of completion text scanned
MAX_ANSWER_CHARS = 16 * 1024  # characters of the <answer> block decoded
MAX_OBJECTS = 120  # entries read (VisionReasoner's accuracy reward keeps 120 too)
MAX_BRACKETS = 8 * MAX_OBJECTS + 16  # '[' plus '{' in the answer; also bounds the nesting depth
MAX_NUMBER_CHARS = 40  # a longer number literal invalidates its entry
MAX_ABS_COORD = 1e5  # larger magnitudes are rejected as absurd
MAX_THINK_CHARS = 8192  # characters of the think block kept
MAX_LABEL_CHARS = 200  # characters of an entry's "label" kept
MAX_ERRORS = 16  # error strings kept
LAYOUTS = ("objects", "single")

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"
_BRIDGE_RE = re.compile(r"</think>\s*<answer>")


@dataclass
class JsonValidity:
    """How well formed a JSON answer was (the format rewards read this).

    think: a ``<think>...</think>`` block is present.
    answer: an ``<answer>...</answer>`` block is present.
    structure: the whole text is ``<think>.*</think>\\s*<answer>.*</answer>`` -- Seg-Zero's and VisionReasoner's
        think-format rule (``re.fullmatch`` with DOTALL, nothing before or after), checked in linear time.
    json: the answer block decoded as JSON.
    layout: ``"objects"`` (a JSON list), ``"single"`` (a JSON object) or ``""``.
    entries: entries the JSON holds (list length; 1 for the single layout), even beyond the `MAX_OBJECTS` read.
    box_ok / point_ok: per entry read, whether its box (``bbox_2d`` / ``bbox``: 4 finite numbers) and its
        point(s) (``point_2d``; single layout: both ``points_1`` and ``points_2``; 2 finite numbers each) are valid.
    errors: short notes on what was wrong (at most `MAX_ERRORS`).
    """

    think: bool = False
    answer: bool = False
    structure: bool = False
    json: bool = False
    layout: str = ""
    entries: int = 0
    box_ok: tuple[bool, ...] = ()
    point_ok: tuple[bool, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def all_valid(self) -> bool:
        """Every entry was read and has a valid box and point(s) (at least one entry)."""
        return (
            self.json
            and self.entries > 0
            and len(self.box_ok) == self.entries
            and all(self.box_ok)
            and all(self.point_ok)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "think": self.think,
            "answer": self.answer,
            "structure": self.structure,
            "json": self.json,
            "layout": self.layout,
            "entries": self.entries,
            "box_ok": list(self.box_ok),
            "point_ok": list(self.point_ok),
            "errors": list(self.errors),
        }


@dataclass(eq=False)
class JsonAnswer:
    """A parsed JSON answer, model frame.

    boxes: (M, 4) float64 xyxy, one row per entry read (corners ordered), NaN where ``validity.box_ok`` is False.
    points: (M, K, 2) float64 xy, K = 1 (objects layout: ``point_2d``) or 2 (single layout: ``points_1``,
        ``points_2``), NaN where a point is invalid.
    labels: the entries' ``"label"`` strings (None where absent).
    think: the reasoning text, if any.
    validity: what was well formed.
    objects (property): one `SegPrompt` per entry with its valid box (0 or 1) and valid points, all labelled 1.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 2)))
    labels: list[str | None] = field(default_factory=list)
    think: str | None = None
    validity: JsonValidity = field(default_factory=JsonValidity)

    @cached_property
    def objects(self) -> list[SegPrompt]:
        """One `SegPrompt` per entry read (model frame): boxes (1, 4) when the entry's box is valid else (0, 4);
        its valid points (objects layout: up to 1; single layout: up to 2), labelled 1 (foreground)."""
        out = []
        for box, pts in zip(self.boxes, self.points, strict=True):
            pts = pts[~np.isnan(pts).any(axis=1)]
            boxes = box[None, :] if not np.isnan(box).any() else np.zeros((0, 4))
            out.append(SegPrompt(boxes, pts, np.ones(pts.shape[0], np.int64)))
        return out

    def union(self) -> SegPrompt:
        """Every valid box and point in one `SegPrompt` (model frame), for a union mask; its
        `AnswerValidity` says think / bbox / points / labels (labels are implicit: all foreground)."""
        box_arr = self.boxes[~np.isnan(self.boxes).any(axis=1)] if self.boxes.size else np.zeros((0, 4))
        flat = self.points.reshape(-1, 2)
        point_arr = flat[~np.isnan(flat).any(axis=1)]
        validity = AnswerValidity(
            think=self.validity.think,
            bbox=box_arr.shape[0] > 0,
            points=point_arr.shape[0] > 0,
            labels=point_arr.shape[0] > 0,
            errors=self.validity.errors,
        )
        return SegPrompt(
            box_arr, point_arr, np.ones(point_arr.shape[0], np.int64), think=self.think, validity=validity
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "objects": [
                {"box": o.boxes.tolist(), "points": o.points.tolist(), "label": lab}
                for o, lab in zip(self.objects, self.labels, strict=True)
            ],
            "think": self.think,
            "validity": self.validity.to_dict(),
        }


# ----------------------------------------------------------------------------------------------- parsing


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, msg: str) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append(msg)


def _number(token: str) -> float:
    """json's parse_int / parse_float hook: a bounded float; NaN (an invalid coordinate) when absurd."""
    if len(token) > MAX_NUMBER_CHARS:
        return math.nan
    return float(token)


def _constant(name: str) -> float:
    return math.nan  # NaN, Infinity, -Infinity: invalid coordinates


def structure_ok(text: str) -> bool:
    """Seg-Zero's think-format rule, ``re.fullmatch(r"<think>.*?</think>\\s*<answer>.*?</answer>", text, DOTALL)``,
    decided in linear time: the text starts with ``<think>``, ends with ``</answer>``, and some ``</think>``
    after the opening tag is followed by whitespace and an ``<answer>`` that ends before the closing tag."""
    if not (text.startswith(_THINK_OPEN) and text.endswith(_ANSWER_CLOSE)):
        return False
    last = len(text) - len(_ANSWER_CLOSE)
    for m in _BRIDGE_RE.finditer(text, len(_THINK_OPEN)):
        if m.end() <= last:
            return True
        break  # later bridges end later still
    return False


def _block(text: str, open_tag: str, close_tag: str) -> str | None:
    """Content of the first ``open_tag ... close_tag`` (``str.find`` only)."""
    start = text.find(open_tag)
    if start < 0:
        return None
    start += len(open_tag)
    end = text.find(close_tag, start)
    return None if end < 0 else text[start:end]


def _coords(value: Any, n: int) -> list[float] | None:
    """``value`` as n finite, bounded numbers, or None. (`_decode` turns every JSON number into a float, so
    ints, bools and strings are told apart by type; NaN fails the range test.)"""
    if type(value) is not list or len(value) != n or not all(type(v) is float for v in value):
        return None
    if not all(-MAX_ABS_COORD <= v <= MAX_ABS_COORD for v in value):
        return None
    return value


def _label(entry: dict[str, Any]) -> str | None:
    value = entry.get("label")
    return value[:MAX_LABEL_CHARS] if isinstance(value, str) else None


_NAN2 = [math.nan, math.nan]
_NAN4 = [math.nan] * 4


def _ordered(box: list[float] | None) -> list[float]:
    if box is None:
        return _NAN4
    x1, y1, x2, y2 = box
    return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]


_Rows = tuple[list[list[float]], list[list[list[float]]], list[str | None], list[bool], list[bool]]


def _read_objects(data: list[Any], errors: _Errors) -> _Rows:
    boxes, points, labels, box_ok, point_ok = [], [], [], [], []
    if len(data) > MAX_OBJECTS:
        errors.add(f"more than {MAX_OBJECTS} objects; the rest ignored")
    for i, entry in enumerate(data[:MAX_OBJECTS]):
        if not isinstance(entry, dict):
            errors.add(f"object {i}: not a JSON object")
            box = point = None
            labels.append(None)
        else:
            box, point = _coords(entry.get("bbox_2d"), 4), _coords(entry.get("point_2d"), 2)
            if box is None:
                errors.add(f"object {i}: bbox_2d is not [x1,y1,x2,y2]")
            if point is None:
                errors.add(f"object {i}: point_2d is not [x,y]")
            labels.append(_label(entry))
        boxes.append(_ordered(box))
        points.append([_NAN2 if point is None else point])
        box_ok.append(box is not None)
        point_ok.append(point is not None)
    return boxes, points, labels, box_ok, point_ok


def _read_single(data: dict[str, Any], errors: _Errors) -> _Rows:
    box = _coords(data.get("bbox"), 4)
    if box is None:
        errors.add("bbox is not [x1,y1,x2,y2]")
    p1, p2 = _coords(data.get("points_1"), 2), _coords(data.get("points_2"), 2)
    if p1 is None or p2 is None:
        errors.add("points_1 and points_2 must both be [x,y]")
    pts = [_NAN2 if p is None else p for p in (p1, p2)]
    return [_ordered(box)], [pts], [_label(data)], [box is not None], [p1 is not None and p2 is not None]


def parse_json_answer(text: str) -> JsonAnswer:
    """Parse a completion in Seg-Zero's / VisionReasoner's JSON format into a `JsonAnswer` (model frame).

    Never raises: a non-``str`` input or unparsable text gives an answer with no objects whose ``validity`` says
    what was wrong. Box corners are ordered (x1 <= x2, y1 <= y2). Only the first ``<think>`` and ``<answer>``
    blocks are read; the answer block (whitespace stripped) must be exactly one JSON value.
    """
    try:
        return _parse(text)
    except Exception as exc:  # pragma: no cover - defensive: parsing untrusted text must never raise
        logger.warning("parse_json_answer failed unexpectedly: %r", exc)
        return JsonAnswer(validity=JsonValidity(errors=(f"internal error: {type(exc).__name__}",)))


def _parse(text: Any) -> JsonAnswer:
    if not isinstance(text, str):
        return JsonAnswer(validity=JsonValidity(errors=(f"not a string: {type(text).__name__}",)))
    errors = _Errors()
    if len(text) > MAX_TEXT_CHARS:
        errors.add(f"text longer than {MAX_TEXT_CHARS} characters; the rest ignored")
        text = text[:MAX_TEXT_CHARS]
    v = JsonValidity(structure=structure_ok(text))
    think_text = _block(text, _THINK_OPEN, _THINK_CLOSE)
    think = None
    if think_text is None:
        errors.add("think: no <think>...</think> block")
    else:
        v.think, think = True, think_text.strip()[:MAX_THINK_CHARS]
    content = _block(text, _ANSWER_OPEN, _ANSWER_CLOSE)
    rows: _Rows = ([], [], [], [], [])
    if content is None:
        errors.add("answer: no <answer>...</answer> block")
    else:
        v.answer = True
        content = content.strip()
        data, err = _decode(content)
        if err is not None:
            errors.add(f"answer: {err}")
        else:
            v.json = True
            if isinstance(data, list):
                v.layout, v.entries = "objects", len(data)
                rows = _read_objects(data, errors)
            elif isinstance(data, dict):
                v.layout, v.entries = "single", 1
                rows = _read_single(data, errors)
            else:
                errors.add(f"answer: expected a JSON list or object, got {type(data).__name__}")
            v.box_ok, v.point_ok = tuple(rows[3]), tuple(rows[4])
    v.errors = tuple(errors.items)
    boxes, points, labels = rows[0], rows[1], rows[2]
    k = 2 if v.layout == "single" else 1
    return JsonAnswer(
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        points=np.array(points, dtype=np.float64).reshape(-1, k, 2),
        labels=labels,
        think=think,
        validity=v,
    )


def _decode(content: str) -> tuple[Any, str | None]:
    """``json.loads`` of a bounded answer with bounded numbers, or (None, error)."""
    if len(content) > MAX_ANSWER_CHARS:
        return None, f"longer than {MAX_ANSWER_CHARS} characters"
    if content.count("[") + content.count("{") > MAX_BRACKETS:
        return None, f"more than {MAX_BRACKETS} brackets"
    try:
        return json.loads(content, parse_int=_number, parse_float=_number, parse_constant=_constant), None
    except (ValueError, RecursionError) as exc:
        return None, f"not JSON ({str(exc)[:80]})"


# --------------------------------------------------------------------------------------------- rendering


def _num(v: float, decimals: int | None) -> str:
    """Integral values as ints (``12``), others in the shortest exact form (``12.5``)."""
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"cannot render non-finite coordinate {v}")
    if decimals is not None:
        v = round(v, decimals)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _nums(values: Sequence[float], decimals: int | None) -> str:
    return "[" + ",".join(_num(x, decimals) for x in values) + "]"


def _positive_points(obj: SegPrompt) -> np.ndarray:
    """The object's foreground points; its box centre when it has none."""
    pts = obj.points[obj.labels == 1]
    if pts.shape[0]:
        return pts
    x1, y1, x2, y2 = obj.boxes[0]
    return np.array([[(x1 + x2) / 2, (y1 + y2) / 2]])


def format_json_answer(
    objects: SegPrompt | Sequence[SegPrompt],
    think: str | None = None,
    *,
    layout: str = "objects",
    labels: Sequence[str | None] | None = None,
    decimals: int | None = None,
) -> str:
    """Render per-object prompts (model frame) as a JSON answer -- the inverse of `parse_json_answer` (SFT targets).

    Every object is a `SegPrompt` holding exactly one box; its point is its first foreground point (the box
    centre when it has none). ``layout="objects"`` writes one ``{"bbox_2d": ..., "point_2d": ...}`` entry per
    object in the spacing of the published prompt example; ``layout="single"`` takes exactly one object and
    writes ``{"bbox": ..., "points_1": ..., "points_2": ...}`` with its first two foreground points (the first
    repeated when it has one). ``labels`` adds a ``"label"`` per entry; ``decimals`` rounds coordinates
    (``0``: integer pixels). The think block is written when ``think`` is given (it should not contain
    ``</think>``). Example::

        <think>two red shapes</think><answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}]</answer>
    """
    objs = [objects] if isinstance(objects, SegPrompt) else list(objects)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    for i, o in enumerate(objs):
        if not isinstance(o, SegPrompt):
            raise TypeError(f"object {i} must be a SegPrompt; got {type(o).__name__}")
        if o.boxes.shape[0] != 1:
            raise ValueError(f"object {i} must hold exactly one box; got {o.boxes.shape[0]}")
    if labels is not None and len(labels) != len(objs):
        raise ValueError(f"got {len(labels)} labels for {len(objs)} objects")

    def label_part(i: int) -> str:
        lab = None if labels is None else labels[i]
        return "" if lab is None else f', "label": {json.dumps(str(lab), ensure_ascii=False)}'

    if layout == "single":
        if len(objs) != 1:
            raise ValueError(f"the single layout takes exactly one object; got {len(objs)}")
        pts = _positive_points(objs[0])
        p1, p2 = pts[0], pts[1] if pts.shape[0] > 1 else pts[0]
        body = (
            f'{{"bbox": {_nums(objs[0].boxes[0], decimals)}, "points_1": {_nums(p1, decimals)}, '
            f'"points_2": {_nums(p2, decimals)}{label_part(0)}}}'
        )
    else:
        entries = [
            f'{{"bbox_2d": {_nums(o.boxes[0], decimals)}, "point_2d": {_nums(_positive_points(o)[0], decimals)}'
            f"{label_part(i)}}}"
            for i, o in enumerate(objs)
        ]
        body = "[" + ", ".join(entries) + "]"
    answer = f"{_ANSWER_OPEN}{body}{_ANSWER_CLOSE}"
    return answer if think is None else f"{_THINK_OPEN}{think}{_THINK_CLOSE}{answer}"
