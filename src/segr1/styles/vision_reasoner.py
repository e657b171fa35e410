"""The ``vision-reasoner`` prompt style: VisionReasoner-7B's template, 840 frame and budgets.

``Please find "{Question}" with bboxs and points. ... Output the bbox(es) and point(s) inside the interested
object(s) in JSON format. ...`` (`segr1.family.VISION_REASONER_TEMPLATE`, byte for byte), the question
lower-cased and stripped of '."?!' at inference ('.' in training, after a newline); the answer lists one
``{"bbox_2d": [...], "point_2d": [...]}`` per object (answer format ``vision-reasoner-json``). Inference: no
system turn, image then text, 2048 new tokens, greedy; training: "You are a helpful assistant." and 2000
tokens. See :mod:`segr1.styles._family`.
"""

from __future__ import annotations

import logging

from segr1.family import VISION_REASONER
from segr1.styles._family import FamilyStyle

logger = logging.getLogger(__name__)


class VisionReasonerStyle(FamilyStyle):
    """VisionReasoner's prompt protocol (module docstring)."""

    def __init__(self) -> None:
        super().__init__(
            VISION_REASONER,
            answer_format="vision-reasoner-json",
            description=(
                "VisionReasoner-7B's template byte for byte (one box and point per object in JSON), 840 x 840 "
                "bilinear frame, no system turn at inference, 2048 new tokens"
            ),
        )
