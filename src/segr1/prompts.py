"""segr1's own instruction templates and the chat messages Qwen-VL processors take (the ``segr1`` style).

Tasks: ``foreground`` (camouflaged / salient object, COD/SOD), ``referring`` (a referring expression, RefCOCO),
``reasoning`` (an implicit query, ReasonSeg) and ``prerl`` (the points-only pre-RL stage).

These functions are thin wrappers over the ``segr1`` prompt style (:mod:`segr1.styles.segr1`, where the texts
live and are explained). They are kept for code written before prompt styles existed; new code asks a style
(:func:`segr1.styles.style_for` / :func:`segr1.styles.get_style`), which also knows the Seg-R1 release's own
texts (``seg-r1``).
"""

from __future__ import annotations

import logging
from typing import Any

from segr1.styles import TASKS, chat_messages, check_task_stage
from segr1.styles.segr1 import (
    BOX_FORMAT,
    DEFAULT_FRAME,
    POINTS_FORMAT,
    SYSTEM_PROMPT,
)
from segr1.styles.segr1 import build_instruction as _build_instruction

logger = logging.getLogger(__name__)

__all__ = [
    "BOX_FORMAT",
    "DEFAULT_FRAME",
    "POINTS_FORMAT",
    "SYSTEM_PROMPT",
    "TASKS",
    "build_instruction",
    "build_messages",
    "system_prompt",
]


def build_instruction(task: str, text: str | None = None, frame: int | None = None) -> str:
    """The user-turn instruction for ``task`` in the ``segr1`` style.

    ``text``: the referring expression (``referring``) or the query (``reasoning``) — required there; for
    ``foreground``/``prerl`` it is optional extra context placed before the instruction. ``frame``: side in
    pixels of the square model frame the image is shown in (default ``DEFAULT_FRAME[task]``); the instruction
    tells the model this size, and coordinates in its answer are in that frame. The instruction always ends
    with the exact answer format (boxes + points + labels; points + labels for ``prerl``).
    """
    return _build_instruction(task, text, frame)


def system_prompt(task: str) -> str | None:
    """The system prompt to pair with ``task``'s instruction: `SYSTEM_PROMPT` for the box tasks, None for
    ``prerl`` (the original pre-RL stage used a user turn only)."""
    check_task_stage(task, "eval")
    return None if task == "prerl" else SYSTEM_PROMPT


def build_messages(
    image: Any, instruction: str, system: str | None = None, *, image_first: bool = True
) -> list[dict[str, Any]]:
    """Chat messages for a Qwen-VL processor's ``apply_chat_template``.

    ``image``: the PIL.Image already resized to the model frame (or anything the processor accepts as an image,
    e.g. a path or URL). Returns an optional system turn followed by one user turn whose content is the image and
    then the instruction text::

        [{"role": "system", "content": [{"type": "text", "text": system}]},   # only when system is given
         {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": instruction}]}]

    ``image_first=False`` puts the instruction before the image (the ``segr1-text-first``,
    ``segr1-phrase-image`` and ``segr1-task-line`` styles, whose ``image_first`` attribute is False); every other style puts the image
    first at inference (``eval`` and ``demo`` stages). The policy backends build their messages with this function; the pipeline passes
    ``image_first=False`` to ``generate`` only for a text-first style.
    """
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a str; got {type(instruction).__name__}")
    return chat_messages(image, instruction, system, image_first=image_first)
