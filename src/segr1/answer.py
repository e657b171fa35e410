"""Seg-R1's answer format: parse untrusted completion text into a `SegPrompt`, and render one back.

The format (coordinates in the square *model frame* the LMM saw)::

    <think>...</think> <bbox>[x1,y1,x2,y2]</bbox>, <points>[[x,y],...]</points>, <labels>[1,0,...]</labels>

Several ``<bbox>`` tags are allowed. Tags are matched case-insensitively, any whitespace is accepted, numbers may
be ints or floats (with optional sign and exponent).

Model output is untrusted input. `parse_answer` never evaluates it, never raises, and bounds its work: it scans
at most `MAX_TEXT_CHARS` characters with `str.find` and a flat tokenizer (numbers, brackets, commas), accepts
lists nested at most two deep, keeps at most `MAX_BOXES` boxes and `MAX_POINTS` points, and rejects NaN, inf and
coordinates with magnitude above `MAX_ABS_COORD`. Its running time is linear in the scanned text.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 64 * 1024  # characters of completion text scanned
MAX_BOXES = 16  # boxes kept
MAX_POINTS = 64  # points (and labels) kept
MAX_THINK_CHARS = 8192  # characters of the think block kept
MAX_ABS_COORD = 1e5  # larger magnitudes are rejected as absurd
MAX_TAGS = 64  # tags of one kind inspected
MAX_ERRORS = 16  # error strings kept
POINT_ASSIGNMENTS = ("inside", "all")  # SegPrompt.point_assignment values

# One token per match; every alternative consumes >= 1 char and none can overlap another, so scanning is linear.
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_TOKEN_RE = re.compile(
    rf"(?P<num>{_NUMBER})|(?P<open>\[)|(?P<close>\])|(?P<sep>,)|(?P<ws>\s+)|(?P<bad>.)", re.DOTALL
)
_MAX_DEPTH = 2
_MAX_NUMBER_CHARS = 40


@dataclass
class AnswerValidity:
    """Which parts of a completion were well formed (the format reward reads this).

    think: a ``<think>...</think>`` block is present.
    bbox: at least one ``<bbox>`` tag holds a valid ``[x1,y1,x2,y2]``.
    points: a ``<points>`` tag holds a valid ``[[x,y],...]`` list with at least one point.
    labels: a ``<labels>`` tag holds a list of 0/1 as long as the points list.
    errors: short human-readable notes on what was wrong (at most `MAX_ERRORS`).
    """

    think: bool = False
    bbox: bool = False
    points: bool = False
    labels: bool = False
    errors: tuple[str, ...] = ()

    def is_complete(self, *, points_only: bool = False) -> bool:
        """True when the completion has every part the format asks for.

        Default: think, bbox, points and labels all valid. ``points_only`` (the points-only pre-RL stage):
        think, points and labels valid; a box is not required.
        """
        if points_only:
            return self.think and self.points and self.labels
        return self.think and self.bbox and self.points and self.labels

    def to_dict(self) -> dict[str, Any]:
        return {
            "think": self.think,
            "bbox": self.bbox,
            "points": self.points,
            "labels": self.labels,
            "errors": list(self.errors),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnswerValidity:
        return cls(
            think=bool(d.get("think", False)),
            bbox=bool(d.get("bbox", False)),
            points=bool(d.get("points", False)),
            labels=bool(d.get("labels", False)),
            errors=tuple(str(e) for e in d.get("errors", ())),
        )


def _as_array(value: Any, width: int, name: str) -> np.ndarray:
    try:
        arr = np.array(value if value is not None else [], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers of shape (N, {width}); got {value!r:.200}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got {arr.tolist()!r:.200}")
    if arr.size == 0:
        return np.zeros((0, width), dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == width:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{name} must have shape (N, {width}); got shape {arr.shape}")
    return arr


@dataclass(eq=False)
class SegPrompt:
    """Prompts for a promptable segmenter: boxes, and points with labels. Frame: whichever the producer says
    (`parse_answer` gives the model frame; `segr1.geometry.to_image_frame` gives the image frame).

    boxes: (N, 4) float64 xyxy pixels; shape (0, 4) when none.
    points: (M, 2) float64 xy pixels; shape (0, 2) when none.
    labels: (M,) int64 in {0, 1}; 1 = foreground, 0 = background.
    think: the reasoning text, if any.
    validity: how well formed the text this prompt was parsed from was.
    point_assignment: how a segmenter pairs points with boxes: ``"inside"`` (each box takes the points inside
        it; Seg-R1's rule, the default) or ``"all"`` (every box takes every point, as the release's reasoning
        evaluation did with its single box); see `segr1.geometry.split_by_box`.

    Inputs are coerced to these dtypes/shapes (a single box ``[x1,y1,x2,y2]`` becomes shape (1, 4)); a shape
    that cannot be coerced, or labels whose length differs from the points', raises ValueError.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    think: str | None = None
    validity: AnswerValidity = field(default_factory=AnswerValidity)
    point_assignment: str = "inside"

    def __post_init__(self) -> None:
        if self.point_assignment not in POINT_ASSIGNMENTS:
            raise ValueError(
                f"point_assignment must be one of {POINT_ASSIGNMENTS}; got {self.point_assignment!r}"
            )
        self.boxes = _as_array(self.boxes, 4, "boxes")
        self.points = _as_array(self.points, 2, "points")
        try:
            labels = np.array(self.labels if self.labels is not None else [])
        except (TypeError, ValueError):
            raise ValueError(f"labels must be a list of 0/1; got {self.labels!r:.200}") from None
        if labels.size and not (labels.dtype.kind in "biuf" and np.all(np.isin(labels, (0, 1)))):
            raise ValueError(f"labels must be 0 or 1; got {labels.tolist()!r:.200}")
        self.labels = labels.reshape(-1).astype(np.int64)
        if self.labels.shape[0] != self.points.shape[0]:
            raise ValueError(
                f"labels length {self.labels.shape[0]} != number of points {self.points.shape[0]}"
            )

    @property
    def is_empty(self) -> bool:
        """True when there is neither a box nor a point."""
        return self.boxes.shape[0] == 0 and self.points.shape[0] == 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SegPrompt):
            return NotImplemented
        return (
            np.array_equal(self.boxes, other.boxes)
            and np.array_equal(self.points, other.points)
            and np.array_equal(self.labels, other.labels)
            and self.think == other.think
            and self.validity == other.validity
            and self.point_assignment == other.point_assignment
        )

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: lists of floats/ints, the think text and the validity (and
        ``point_assignment`` when it is not the default ``"inside"``)."""
        out = {
            "boxes": self.boxes.tolist(),
            "points": self.points.tolist(),
            "labels": self.labels.tolist(),
            "think": self.think,
            "validity": self.validity.to_dict(),
        }
        if self.point_assignment != "inside":
            out["point_assignment"] = self.point_assignment
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegPrompt:
        """Inverse of `to_dict`; missing keys mean empty. Raises ValueError on bad shapes or labels."""
        if not isinstance(d, dict):
            raise TypeError(f"SegPrompt.from_dict expects a dict; got {type(d).__name__}")
        validity = d.get("validity")
        return cls(
            boxes=d.get("boxes") or [],
            points=d.get("points") or [],
            labels=d.get("labels") or [],
            think=d.get("think"),
            validity=AnswerValidity.from_dict(validity) if isinstance(validity, dict) else AnswerValidity(),
            point_assignment=d.get("point_assignment") or "inside",
        )

    @classmethod
    def empty(cls) -> SegPrompt:
        """A prompt with no boxes and no points (all validity flags False)."""
        return cls()


# ----------------------------------------------------------------------------------------------- parsing


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, msg: str) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append(msg)


def _tag_blocks(text: str, lower: str, tag: str, limit: int) -> list[str]:
    """Contents of up to `limit` ``<tag>...</tag>`` blocks, in order. Linear time (`str.find` only)."""
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    out: list[str] = []
    pos = 0
    while len(out) < limit:
        start = lower.find(open_tag, pos)
        if start < 0:
            break
        start += len(open_tag)
        end = lower.find(close_tag, start)
        if end < 0:
            break
        # "<tag><tag>[...]</tag>": read from the last opening tag before the close.
        inner = lower.rfind(open_tag, start, end)
        if inner >= 0:
            start = inner + len(open_tag)
        out.append(text[start:end])
        pos = end + len(close_tag)
    return out


def _parse_list(content: str, max_numbers: int) -> tuple[list[Any] | None, str | None]:
    """Parse ``[...]`` nested at most `_MAX_DEPTH` deep, at most ``max_numbers`` numbers, into lists of floats.

    Returns (value, None) or (None, error). Stops at the first problem, so deep or long garbage costs little.
    """
    n_numbers = 0
    stack: list[list[Any]] = []
    result: list[Any] | None = None
    expect_item = True  # after '[' or ',' an item is expected; after an item, ',' or ']'
    for m in _TOKEN_RE.finditer(content):
        kind = m.lastgroup
        if kind == "ws":
            continue
        if result is not None:
            return None, "text after the closing bracket"
        if kind == "open":
            if not expect_item:
                return None, "missing comma"
            if len(stack) >= _MAX_DEPTH:
                return None, f"lists nested deeper than {_MAX_DEPTH}"
            new: list[Any] = []
            if stack:
                stack[-1].append(new)
            stack.append(new)
            expect_item = True
        elif kind == "close":
            if not stack:
                return None, "unbalanced ']'"
            if expect_item and stack[-1]:
                return None, "trailing comma"
            done = stack.pop()
            if not stack:
                result = done
            expect_item = False
        elif kind == "sep":
            if expect_item or not stack:
                return None, "misplaced comma"
            expect_item = True
        elif kind == "num":
            if not stack:
                return None, "number outside brackets"
            if not expect_item:
                return None, "missing comma"
            n_numbers += 1
            if n_numbers > max_numbers:
                return None, f"more than {max_numbers} numbers"
            token = m.group()
            if len(token) > _MAX_NUMBER_CHARS:
                return None, f"number longer than {_MAX_NUMBER_CHARS} characters"
            value = float(token)
            if not math.isfinite(value) or abs(value) > MAX_ABS_COORD:
                return None, f"non-finite or absurd number {token[:24]}"
            stack[-1].append(value)
            expect_item = False
        else:
            return None, f"unexpected character {m.group()!r}"
    if result is None:
        return None, "no complete [...] list"
    return result, None


def _flat_numbers(value: list[Any], n: int) -> bool:
    return len(value) == n and all(isinstance(v, float) for v in value)


def _parse_boxes(blocks: list[str], errors: _Errors) -> list[list[float]]:
    boxes: list[list[float]] = []
    for content in blocks:
        value, err = _parse_list(content, 4 * MAX_BOXES)
        if value is None:
            errors.add(f"bbox: {err}")
            continue
        # One box [x1,y1,x2,y2] per tag; also accept a list of boxes [[...],[...]] in one tag.
        candidates = [value] if _flat_numbers(value, 4) else value
        if not candidates or not all(isinstance(c, list) and _flat_numbers(c, 4) for c in candidates):
            errors.add("bbox: expected [x1,y1,x2,y2]")
            continue
        for x1, y1, x2, y2 in candidates:
            if len(boxes) >= MAX_BOXES:
                errors.add(f"bbox: more than {MAX_BOXES} boxes; extra ignored")
                return boxes
            boxes.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
    return boxes


def _parse_points(content: str, errors: _Errors) -> list[list[float]] | None:
    value, err = _parse_list(content, 2 * MAX_POINTS)
    if value is None:
        errors.add(f"points: {err}")
        return None
    if _flat_numbers(value, 2):  # a single point written [x,y]
        value = [value]
    if not value or not all(isinstance(p, list) and _flat_numbers(p, 2) for p in value):
        errors.add("points: expected [[x,y],...] with at least one point")
        return None
    return value


def _parse_labels(content: str, errors: _Errors) -> list[int] | None:
    value, err = _parse_list(content, MAX_POINTS)
    if value is None:
        errors.add(f"labels: {err}")
        return None
    if not all(isinstance(v, float) and v in (0.0, 1.0) for v in value):
        errors.add("labels: expected a flat list of 0/1")
        return None
    return [int(v) for v in value]


def parse_answer(text: str) -> SegPrompt:
    """Parse a completion in Seg-R1's tag format into a `SegPrompt` in the model frame.

    Never raises: a non-``str`` input or unparsable text yields an empty prompt whose ``validity`` says what
    was wrong. Boxes have their corners ordered (x1 <= x2, y1 <= y2). Only the first ``<points>`` and
    ``<labels>`` tags are read. Points whose labels are missing, invalid or of the wrong length are kept with
    all labels 1 (foreground) and ``validity.labels`` False.
    """
    try:
        return _parse_answer(text)
    except Exception as exc:  # pragma: no cover - defensive: parsing untrusted text must never raise
        logger.warning("parse_answer failed unexpectedly: %r", exc)
        return SegPrompt(validity=AnswerValidity(errors=(f"internal error: {type(exc).__name__}",)))


def _parse_answer(text: Any) -> SegPrompt:
    if not isinstance(text, str):
        return SegPrompt(validity=AnswerValidity(errors=(f"not a string: {type(text).__name__}",)))
    errors = _Errors()
    if len(text) > MAX_TEXT_CHARS:
        errors.add(f"text longer than {MAX_TEXT_CHARS} characters; the rest ignored")
        text = text[:MAX_TEXT_CHARS]
    lower = text.lower()
    if len(lower) != len(text):  # a few characters change length when lowered; keep indices aligned
        lower = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)

    validity = AnswerValidity()
    think: str | None = None
    think_blocks = _tag_blocks(text, lower, "think", 1)
    if think_blocks:
        validity.think = True
        think = think_blocks[0].strip()[:MAX_THINK_CHARS]
    else:
        errors.add("think: no <think>...</think> block")

    box_blocks = _tag_blocks(text, lower, "bbox", MAX_TAGS)
    boxes = _parse_boxes(box_blocks, errors) if box_blocks else []
    validity.bbox = bool(boxes)
    if not box_blocks:
        errors.add("bbox: no <bbox>...</bbox> tag")

    points: list[list[float]] = []
    point_blocks = _tag_blocks(text, lower, "points", 1)
    if point_blocks:
        parsed = _parse_points(point_blocks[0], errors)
        if parsed is not None:
            points = parsed
            validity.points = True
    else:
        errors.add("points: no <points>...</points> tag")

    labels: list[int] | None = None
    label_blocks = _tag_blocks(text, lower, "labels", 1)
    if label_blocks:
        labels = _parse_labels(label_blocks[0], errors)
    else:
        errors.add("labels: no <labels>...</labels> tag")
    if labels is not None and len(labels) == len(points):
        validity.labels = True
    else:
        if labels is not None:
            errors.add(f"labels: {len(labels)} labels for {len(points)} points")
        labels = [1] * len(points)

    validity.errors = tuple(errors.items)
    return SegPrompt(
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        points=np.asarray(points, dtype=np.float64).reshape(-1, 2),
        labels=np.asarray(labels, dtype=np.int64),
        think=think,
        validity=validity,
    )


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


def format_answer(prompt: SegPrompt, think: str | None = None, *, decimals: int | None = None) -> str:
    """Render a prompt in Seg-R1's format (the inverse of `parse_answer`; used for SFT targets).

    ``think`` overrides ``prompt.think``; with neither, no think block is written (the think text is written
    as given, so it should not itself contain ``</think>``). One ``<bbox>`` tag per box; ``<points>`` and
    ``<labels>`` only when there are points. Coordinates are written as ints when integral, else exactly;
    ``decimals`` rounds them first (``decimals=0``: integer pixels, as Seg-R1's model writes). Example::

        <think>a cat</think> <bbox>[10,20,110,220]</bbox>, <points>[[50,60],[5,5]]</points>, <labels>[1,0]</labels>
    """
    if not isinstance(prompt, SegPrompt):
        raise TypeError(f"format_answer expects a SegPrompt; got {type(prompt).__name__}")
    parts: list[str] = []
    for box in prompt.boxes:
        parts.append("<bbox>[" + ",".join(_num(v, decimals) for v in box) + "]</bbox>")
    if prompt.points.shape[0]:
        pts = ",".join(f"[{_num(x, decimals)},{_num(y, decimals)}]" for x, y in prompt.points)
        labels = ",".join(str(int(v)) for v in prompt.labels)
        parts.append(f"<points>[{pts}]</points>")
        parts.append(f"<labels>[{labels}]</labels>")
    body = ", ".join(parts)
    think_text = think if think is not None else prompt.think
    if think_text is None:
        return body
    return f"<think>{think_text}</think> {body}".rstrip()
