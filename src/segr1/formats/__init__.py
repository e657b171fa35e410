"""Answer formats: how a checkpoint family writes its prompts (boxes, points, labels) in its answer text.

An :class:`AnswerFormat` turns untrusted completion text into a `segr1.answer.SegPrompt` in the model frame
(``parse``: every object's prompts in one, for the union mask; ``objects``: one prompt per object; both bounded,
never evaluating, never raising) and renders prompts back to text (``render`` / ``render_objects``; SFT targets).
``multi_object`` says whether one answer can hold several objects.

Formats (one module each):

* ``seg-r1`` (:mod:`segr1.formats.seg_r1`): Seg-R1's tags, ``<think>…</think> <bbox>[x1,y1,x2,y2]</bbox>,
  <points>[[x,y],…]</points>, <labels>[1,0,…]</labels>``; each ``<bbox>`` is an object with the points inside it;
* ``seg-zero-json`` and ``vision-reasoner-json`` (:mod:`segr1.formats.family_json`): Seg-Zero-7B's one-object
  ``{"bbox", "points_1", "points_2"}`` and VisionReasoner-7B's ``[{"bbox_2d", "point_2d"}, …]`` JSON answers.

A checkpoint records its format in ``segr1_policy.json`` under ``"answer_format"``; one that records none gets
its prompt style's (``seg-r1`` for the segr1 and seg-r1 styles; :func:`format_for`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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
    multi_object: bool

    def parse(self, text: str) -> SegPrompt:
        """The prompts of one answer; never raises (an unusable answer gives an empty prompt whose
        ``validity`` says what was wrong)."""
        ...

    def objects(self, text: str) -> list[SegPrompt]:
        """One prompt per object of the answer (model frame; empty objects left out); never raises."""
        ...

    def render(self, prompt: SegPrompt, think: str | None = None, *, decimals: int | None = None) -> str:
        """``prompt`` written as this format's answer (the inverse of ``parse``)."""
        ...

    def render_objects(
        self, objects: Sequence[SegPrompt], think: str | None = None, *, decimals: int | None = None
    ) -> str:
        """One answer listing ``objects`` (the inverse of ``objects``)."""
        ...


def _registry() -> dict[str, AnswerFormat]:
    from segr1.formats.family_json import FamilyJson
    from segr1.formats.seg_r1 import SegR1Tags

    formats = (
        SegR1Tags(),
        FamilyJson("seg-zero-json", "single"),
        FamilyJson("vision-reasoner-json", "objects"),
    )
    return {fmt.name: fmt for fmt in formats}


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
    metadata: Mapping[str, Any] | None = None,
    override: str | AnswerFormat | None = None,
    style: Any = None,
) -> AnswerFormat:
    """``override`` when given, else the format a checkpoint's ``segr1_policy.json`` records, else the prompt
    ``style``'s (its ``answer_format``: the format its texts ask for), else ``seg-r1``."""
    if override is not None and not (isinstance(override, str) and not override.strip()):
        return get_format(override)
    recorded = (metadata or {}).get(FORMAT_KEY)
    if isinstance(recorded, str) and recorded.strip():
        return get_format(recorded)
    by_style = getattr(style, "answer_format", None)
    if isinstance(by_style, str) and by_style:
        return get_format(by_style)
    return get_format(DEFAULT_FORMAT)


__all__ = ["DEFAULT_FORMAT", "FORMATS", "FORMAT_KEY", "AnswerFormat", "format_for", "get_format"]
