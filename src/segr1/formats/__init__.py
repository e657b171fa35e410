"""Answer formats: how a checkpoint family writes its prompts (boxes, points, labels) in its answer text.

An :class:`AnswerFormat` turns untrusted completion text into a `segr1.answer.SegPrompt` in the model frame
(``parse``; bounded, never evaluates, never raises) and renders a prompt back to text (``render``; SFT targets).
A `SegPrompt` may hold several boxes, i.e. several objects; points go with the boxes they fall in (or with every
box, ``point_assignment="all"``), so a format whose answers list objects one by one can return them all.

Formats (one module each): ``seg-r1`` (:mod:`segr1.formats.seg_r1`): Seg-R1's tags,
``<think>…</think> <bbox>[x1,y1,x2,y2]</bbox>, <points>[[x,y],…]</points>, <labels>[1,0,…]</labels>``.

A checkpoint records its format in ``segr1_policy.json`` under ``"answer_format"``; one that records none
gets ``seg-r1`` (:func:`format_for`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from segr1.answer import SegPrompt

logger = logging.getLogger(__name__)

#: ``segr1_policy.json`` key naming a checkpoint's answer format.
FORMAT_KEY = "answer_format"
#: The format of a checkpoint that records none.
DEFAULT_FORMAT = "seg-r1"


@runtime_checkable
class AnswerFormat(Protocol):
    """Completion text <-> `SegPrompt` (model frame) for one checkpoint family."""

    name: str

    def parse(self, text: str) -> SegPrompt:
        """The prompts of one answer; never raises (an unusable answer gives an empty prompt whose
        ``validity`` says what was wrong)."""
        ...

    def render(self, prompt: SegPrompt, think: str | None = None, *, decimals: int | None = None) -> str:
        """``prompt`` written as this format's answer (the inverse of ``parse``)."""
        ...


def _registry() -> dict[str, AnswerFormat]:
    from segr1.formats.seg_r1 import SegR1Tags

    return {fmt.name: fmt for fmt in (SegR1Tags(),)}


FORMATS: dict[str, AnswerFormat] = _registry()


def get_format(name: str | AnswerFormat) -> AnswerFormat:
    """The registered format called ``name`` (a format object is returned as is). ValueError lists the known."""
    if not isinstance(name, str):
        if isinstance(name, AnswerFormat):
            return name
        raise TypeError(f"answer format must be a name or an AnswerFormat; got {type(name).__name__}")
    key = name.strip().lower()
    if key not in FORMATS:
        raise ValueError(f"unknown answer format {name!r}; known formats: {', '.join(FORMATS)}")
    return FORMATS[key]


def format_for(
    metadata: Mapping[str, Any] | None = None, override: str | AnswerFormat | None = None
) -> AnswerFormat:
    """``override`` when given, else the format a checkpoint's ``segr1_policy.json`` records, else ``seg-r1``."""
    if override is not None:
        return get_format(override)
    recorded = (metadata or {}).get(FORMAT_KEY)
    if isinstance(recorded, str) and recorded.strip():
        return get_format(recorded)
    return get_format(DEFAULT_FORMAT)


__all__ = ["DEFAULT_FORMAT", "FORMATS", "FORMAT_KEY", "AnswerFormat", "format_for", "get_format"]
