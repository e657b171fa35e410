"""The ``seg-zero`` prompt style: Seg-Zero-7B's (March 2025 release) template, 840 frame and budgets.

``Please find '{Question}' with bbox and points. ... Output the one bbox and points of two largest inscribed
circles inside the interested object in JSON format. ...`` (`segr1.family.SEG_ZERO_TEMPLATE`, byte for byte),
the question lower-cased and stripped of '.'; the answer is one object, ``{"bbox": [...], "points_1": [...],
"points_2": [...]}`` (answer format ``seg-zero-json``). Inference: no system turn, image then text, 1024 new
tokens, greedy; training: "You are a helpful assistant." and 1300 tokens. See :mod:`segr1.styles._family`.
"""

from __future__ import annotations

import logging

from segr1.family import SEG_ZERO
from segr1.styles._family import FamilyStyle

logger = logging.getLogger(__name__)


class SegZeroStyle(FamilyStyle):
    """Seg-Zero's prompt protocol (module docstring)."""

    def __init__(self) -> None:
        super().__init__(
            SEG_ZERO,
            answer_format="seg-zero-json",
            description=(
                "Seg-Zero-7B's template byte for byte (one object: a box and two inscribed-circle points in "
                "JSON), 840 x 840 bilinear frame, no system turn at inference, 1024 new tokens"
            ),
        )
