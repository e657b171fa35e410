"""What the Seg-Zero and VisionReasoner prompt styles share: one template, an 840 frame, image then text.

Both projects prompt their checkpoints the same way (`segr1.family` holds the facts and where they were read):

* **eval / demo** (their inference scripts): one user turn, the image resized to 840 x 840 with PIL bilinear
  (no aspect ratio kept) and then the template with the lower-cased, stripped question; **no system turn**
  (Qwen2.5-VL's chat template then inserts its default "You are a helpful assistant."); greedy decoding with
  the script's budget (Seg-Zero 1024, VisionReasoner 2048 new tokens).
* **train / sft** (EasyR1's data loader): the system text "You are a helpful assistant.", then the user turn:
  the image, then the training prefix after EasyR1's ``<image>`` placeholder (VisionReasoner: a newline) and
  the template with the question stripped of '.' only; the budget is the recipe's ``max_response_length``.

The families prompt only with a question (referring expressions and reasoning queries alike, so both
ReasonSeg query kinds take the same template). For the tasks they never had -- ``foreground`` and the
points-only ``prerl`` -- segr1 fills the question with `FOREGROUND_QUESTION` (its own choice, marked as such
in ``docs/family.md``); the answer is still the family's JSON.
"""

from __future__ import annotations

import logging
from typing import Any

from segr1.family import FamilyProtocol
from segr1.styles import TEXT_TASKS, chat_messages, check_task_stage

logger = logging.getLogger(__name__)

#: The question of the tasks the families never prompted for (``foreground``, ``prerl``): segr1's choice.
FOREGROUND_QUESTION = "all the primary objects in the image"
_TRAINING_STAGES = ("train", "sft")


class FamilyStyle:
    """The prompt protocol of one `segr1.family.FamilyProtocol` with a published template (module docstring)."""

    name: str
    description: str
    #: the answer format the family's checkpoints write (`segr1.formats`).
    answer_format: str
    #: the family resizes to the frame with this PIL filter whatever the protocol's ``frame_filter`` says.
    frame_filter: str | None

    def __init__(self, protocol: FamilyProtocol, answer_format: str, description: str) -> None:
        if protocol.template is None or protocol.max_new_tokens is None:
            raise ValueError(f"family {protocol.name!r} has no published prompt; it cannot be a prompt style")
        self.protocol = protocol
        self.name = protocol.name
        self.answer_format = answer_format
        self.description = description
        self.frame_filter = protocol.resample

    def system(self, task: str, stage: str = "eval", user_text: str | None = None) -> str | None:
        """None at eval / demo (the chat template's default system turn), the training system text at train /
        sft (EasyR1's ``system_prompt``)."""
        check_task_stage(task, stage)
        return self.protocol.system if stage in _TRAINING_STAGES else None

    def user(
        self,
        task: str,
        text: str | None = None,
        *,
        frame: int | None = None,
        stage: str = "eval",
        query_kind: str | None = None,
    ) -> str:
        """The template with the question (`FamilyProtocol.user_text`); ``frame`` and ``query_kind`` are not
        part of these protocols (the template never names the frame)."""
        check_task_stage(task, stage)
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text must be a str or None; got {type(text).__name__}")
        if task in TEXT_TASKS:
            if not (text and text.strip()):
                raise ValueError(f"task {task!r} needs text (the expression or query); got {text!r}")
            question = text
        else:
            question = FOREGROUND_QUESTION
        training = stage in _TRAINING_STAGES
        body = self.protocol.user_text(question, training=training)
        return body.removeprefix("<image>") if training else body  # the image block stands for "<image>"

    def messages(
        self, image: Any, user_text: str, system: str | None = None, *, stage: str = "eval"
    ) -> list[dict[str, Any]]:
        """System turn (if any), then one user turn: the image, then the text (every stage)."""
        check_task_stage("foreground", stage)
        return chat_messages(image, user_text, system, image_first=True)

    def frame(self, task: str, stage: str = "eval") -> int:
        check_task_stage(task, stage)
        return self.protocol.frame

    def max_new_tokens(self, task: str, stage: str = "eval") -> int:
        """The inference script's budget at eval / demo, the recipe's ``max_response_length`` at train / sft."""
        check_task_stage(task, stage)
        if stage in _TRAINING_STAGES and self.protocol.max_response_length is not None:
            return self.protocol.max_response_length
        return int(self.protocol.max_new_tokens)  # type: ignore[arg-type]

    def asks_think(self, task: str) -> bool:
        """Always: the template asks for ``<think>`` then ``<answer>``."""
        check_task_stage(task, "eval")
        return True
