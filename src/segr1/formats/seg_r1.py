"""The ``seg-r1`` answer format: Seg-R1's tags, parsed by `segr1.answer.parse_answer` and written by
`segr1.answer.format_answer` (see :mod:`segr1.answer` for the grammar and the bounds on untrusted text)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from segr1.answer import SegPrompt, format_answer, parse_answer
from segr1.geometry import split_by_box

logger = logging.getLogger(__name__)


class SegR1Tags:
    """``<think>…</think> <bbox>[x1,y1,x2,y2]</bbox>, <points>[[x,y],…]</points>, <labels>[1,0,…]</labels>``;
    several ``<bbox>`` tags for several objects, each taking the points inside it."""

    name = "seg-r1"
    multi_object = True

    def parse(self, text: str) -> SegPrompt:
        """`segr1.answer.parse_answer`: model-frame prompt, never raises."""
        return parse_answer(text)

    def objects(self, text: str) -> list[SegPrompt]:
        """One object per ``<bbox>`` with the points inside it (`segr1.geometry.split_by_box`, Seg-R1's rule);
        an answer with points and no box is one object."""
        return split_by_box(parse_answer(text))

    def render(self, prompt: SegPrompt, think: str | None = None, *, decimals: int | None = None) -> str:
        """`segr1.answer.format_answer`."""
        return format_answer(prompt, think, decimals=decimals)

    def render_objects(
        self, objects: Sequence[SegPrompt], think: str | None = None, *, decimals: int | None = None
    ) -> str:
        """Every object's boxes, then every object's points and labels, in object order (one answer)."""
        objs = list(objects)
        if not objs:
            return format_answer(SegPrompt(), think, decimals=decimals)
        union = SegPrompt(
            np.concatenate([o.boxes for o in objs]),
            np.concatenate([o.points for o in objs]),
            np.concatenate([o.labels for o in objs]),
        )
        return format_answer(union, think, decimals=decimals)
