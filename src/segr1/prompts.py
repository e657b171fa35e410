"""Instruction templates per task and the chat messages Qwen-VL processors take.

Tasks: ``foreground`` (camouflaged / salient object, COD/SOD), ``referring`` (a referring expression, RefCOCO),
``reasoning`` (an implicit query, ReasonSeg) and ``prerl`` (the points-only pre-RL stage).

What follows the original Seg-R1 code (its ``grpo.py``, ``grpo_prerl.py`` and ``eval/eval_*_segmentation.py``),
reworded but with the same content:

* the system prompt: a User/Assistant conversation in which the assistant reasons inside ``<think> </think>``
  and then gives the box, points and labels in ``<bbox>``, ``<points>``, ``<labels>``, with the format spelled
  out and "1 = foreground (object) point, 0 = background point"; the training variant adds "only a moderate
  number of points";
* foreground: "identify and segment all the primary objects in the image", then the exact output format;
* referring: "identify and segment <expression>";
* reasoning: the query itself;
* pre-RL: a user-only instruction asking for a sparse, informative set of foreground and background points
  (no box) in the exact ``<points>``/``<labels>`` format.

Our additions: every instruction states the frame size (the original never did; its model learnt the 768/1024
frame from the reward alone), every instruction repeats the exact answer format (the original relied on the
system prompt for referring/reasoning), and the pre-RL instruction also asks for a ``<think>`` block, because our
format predicate (`segr1.answer.AnswerValidity.is_complete` with ``points_only=True``) requires one.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

TASKS = ("foreground", "referring", "reasoning", "prerl")
DEFAULT_FRAME = {"foreground": 768, "prerl": 768, "referring": 1024, "reasoning": 1024}

BOX_FORMAT = (
    "<think> reasoning process here </think> <bbox>[x1,y1,x2,y2]</bbox>, "
    "<points>[[x3,y3],[x4,y4],...]</points>, <labels>[1,0,...]</labels>"
)
POINTS_FORMAT = "<think> reasoning process here </think> <points>[[x1,y1],[x2,y2],...]</points>, <labels>[1,0,...]</labels>"

SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The User asks a question and the Assistant solves it. The "
    "Assistant first thinks through the reasoning process and then gives the User the answer. The reasoning goes "
    "inside <think> </think> tags; the bounding box, the points and the point labels go inside <bbox></bbox>, "
    "<points></points> and <labels></labels> tags respectively, i.e. " + BOX_FORMAT + ". "
    "Label 1 marks a foreground (object) point and 0 a background point. Produce only a moderate number of "
    "points: enough to outline the object clearly without overloading the system."
)

_FRAME_NOTE = (
    "The image is {frame}x{frame} pixels; give all coordinates as integer pixels in that image "
    "(x from the left edge, y from the top edge)."
)
_BOX_RULES = (
    "Output the result using exactly this format:\n" + BOX_FORMAT + "\n"
    "Use one <bbox> tag per object if there are several; points inside a box refine that object. "
    "1 indicates a foreground (object) point and 0 a background point."
)
_POINTS_RULES = (
    "Output the result using exactly this format:\n" + POINTS_FORMAT + "\n"
    "1 indicates a foreground (object) point and 0 a background point."
)

_TASK_LINES = {
    "foreground": "Identify and segment all the primary objects in the image.",
    "referring": "Identify and segment {text}.",
    "reasoning": "{text}\nIdentify and segment the object that answers this.",
    "prerl": (
        "Generate a sparse set of point prompts that help segment the most salient object in the image. Make the "
        "points informative: include foreground points (on the object) and background points (off the object) "
        "that together pin down the object's boundary. Generate only a moderate number of points, enough to "
        "outline the object clearly without overloading the system."
    ),
}
_NEEDS_TEXT = frozenset({"referring", "reasoning"})


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def build_instruction(task: str, text: str | None = None, frame: int | None = None) -> str:
    """The user-turn instruction for ``task``.

    ``text``: the referring expression (``referring``) or the query (``reasoning``) — required there; for
    ``foreground``/``prerl`` it is optional extra context placed before the instruction. ``frame``: side in
    pixels of the square model frame the image is shown in (default ``DEFAULT_FRAME[task]``); the instruction
    tells the model this size, and coordinates in its answer are in that frame. The instruction always ends
    with the exact answer format (boxes + points + labels; points + labels for ``prerl``).
    """
    _check_task(task)
    if frame is None:
        frame = DEFAULT_FRAME[task]
    if not isinstance(frame, int) or isinstance(frame, bool) or frame <= 0:
        raise ValueError(f"frame must be a positive int (e.g. 768 or 1024); got {frame!r}")
    if text is not None and not isinstance(text, str):
        raise TypeError(f"text must be a str or None; got {type(text).__name__}")
    text = " ".join((text or "").split())  # one line: no stray newlines or double spaces from datasets
    if task in _NEEDS_TEXT and not text:
        raise ValueError(f"task {task!r} needs text (the expression or query); got {text!r}")
    if task == "referring":
        text = text.rstrip(".")
    lines = []
    if text and task not in _NEEDS_TEXT:
        lines.append(text)
    lines.append(_TASK_LINES[task].format(text=text))
    lines.append(_FRAME_NOTE.format(frame=frame))
    lines.append(_POINTS_RULES if task == "prerl" else _BOX_RULES)
    return "\n".join(lines)


def system_prompt(task: str) -> str | None:
    """The system prompt to pair with ``task``'s instruction: `SYSTEM_PROMPT` for the box tasks, None for
    ``prerl`` (the original pre-RL stage used a user turn only)."""
    _check_task(task)
    return None if task == "prerl" else SYSTEM_PROMPT


def build_messages(image: Any, instruction: str, system: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for a Qwen-VL processor's ``apply_chat_template``.

    ``image``: the PIL.Image already resized to the model frame (or anything the processor accepts as an image,
    e.g. a path or URL). Returns an optional system turn followed by one user turn whose content is the image and
    then the instruction text::

        [{"role": "system", "content": [{"type": "text", "text": system}]},   # only when system is given
         {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": instruction}]}]
    """
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a str; got {type(instruction).__name__}")
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": instruction}],
        }
    )
    return messages
