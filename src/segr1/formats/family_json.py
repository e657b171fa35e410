"""The ``seg-zero-json`` and ``vision-reasoner-json`` answer formats: Seg-Zero's / VisionReasoner's JSON answers.

``<think>…</think><answer>{"bbox": […], "points_1": […], "points_2": […]}</answer>`` (Seg-Zero-7B, one object)
and ``<think>…</think><answer>[{"bbox_2d": […], "point_2d": […]}, …]</answer>`` (VisionReasoner-7B, one entry
per object), parsed by `segr1.answer_json.parse_json_answer` (bounded, ``json.loads`` only, never raises).
Both formats read either layout -- a model prompted for one sometimes writes the other, and the objects are
the same -- and write their own. Coordinates are in the model frame; every point is a foreground point.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from segr1.answer import SegPrompt
from segr1.answer_json import format_json_answer, parse_json_answer
from segr1.geometry import split_by_box

logger = logging.getLogger(__name__)


class FamilyJson:
    """One JSON layout (`segr1.answer_json.LAYOUTS`) as an answer format."""

    def __init__(self, name: str, layout: str) -> None:
        self.name = name
        self.layout = layout
        self.multi_object = layout == "objects"

    def __repr__(self) -> str:
        return f"FamilyJson(name={self.name!r}, layout={self.layout!r})"

    def parse(self, text: str) -> SegPrompt:
        """Every valid box and point of every entry in one prompt (`segr1.answer_json.JsonAnswer.union`)."""
        return parse_json_answer(text).union()

    def objects(self, text: str) -> list[SegPrompt]:
        """One prompt per entry (its box and its own point(s), whatever box they fall in); entries with
        neither a valid box nor a valid point are left out."""
        return [o for o in parse_json_answer(text).objects if not o.is_empty]

    def render(self, prompt: SegPrompt, think: str | None = None, *, decimals: int | None = None) -> str:
        """``prompt``'s boxes as entries, each with the foreground points inside it (`render_objects`)."""
        if prompt.boxes.shape[0] == 0:
            raise ValueError(f"the {self.name} format needs a box per object; got a prompt without boxes")
        return self.render_objects(split_by_box(prompt), think, decimals=decimals)

    def render_objects(
        self, objects: Sequence[SegPrompt], think: str | None = None, *, decimals: int | None = None
    ) -> str:
        """One entry per object (each a prompt with exactly one box); the single layout takes one object.
        See `segr1.answer_json.format_json_answer`."""
        return format_json_answer(list(objects), think, layout=self.layout, decimals=decimals)
