"""The ``seg-r1`` answer format: Seg-R1's tags, parsed by `segr1.answer.parse_answer` and written by
`segr1.answer.format_answer` (see :mod:`segr1.answer` for the grammar and the bounds on untrusted text)."""

from __future__ import annotations

import logging

from segr1.answer import SegPrompt, format_answer, parse_answer

logger = logging.getLogger(__name__)


class SegR1Tags:
    """``<think>…</think> <bbox>[x1,y1,x2,y2]</bbox>, <points>[[x,y],…]</points>, <labels>[1,0,…]</labels>``;
    several ``<bbox>`` tags for several objects, each taking the points inside it."""

    name = "seg-r1"

    def parse(self, text: str) -> SegPrompt:
        """`segr1.answer.parse_answer`: model-frame prompt, never raises."""
        return parse_answer(text)

    def render(self, prompt: SegPrompt, think: str | None = None, *, decimals: int | None = None) -> str:
        """`segr1.answer.format_answer`."""
        return format_answer(prompt, think, decimals=decimals)
