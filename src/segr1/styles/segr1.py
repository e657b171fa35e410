"""The ``segr1`` prompt style: segr1's own instruction and system texts (the embedded policy was trained on them).

What follows the original Seg-R1 code (its ``grpo.py``, ``grpo_prerl.py`` and ``eval/eval_*_segmentation.py``),
reworded but with the same content:

* the system prompt: a User/Assistant conversation in which the assistant reasons inside ``<think> </think>``
  and then gives the box, points and labels in ``<bbox>``, ``<points>``, ``<labels>``, with the format spelled
  out and "1 = foreground (object) point, 0 = background point", and "only a moderate number of points";
* foreground: "identify and segment all the primary objects in the image", then the exact output format;
* referring: "identify and segment <expression>";
* reasoning: the query itself;
* pre-RL: a user-only instruction asking for a sparse, informative set of foreground and background points
  (no box) in the exact ``<points>``/``<labels>`` format.

Our additions: every instruction states the frame size (the original never did; its model learnt the 768/1024
frame from the reward alone), every instruction repeats the exact answer format (the original relied on the
system prompt for referring/reasoning), and the pre-RL instruction also asks for a ``<think>`` block, because our
format predicate (`segr1.answer.AnswerValidity.is_complete` with ``points_only=True``) requires one.

The texts are the same at every stage; the answer budget is 256 tokens (the embedded policy answers in about 45)
and the frames are 768 (foreground, pre-RL) and 1024 (referring, reasoning). Messages: image, then text.
These strings must not change by one character: the embedded policy's answers depend on them (tests pin them).
"""

from __future__ import annotations

import logging
from typing import Any

from segr1.styles import TEXT_TASKS, chat_messages, check_task_stage

logger = logging.getLogger(__name__)

DEFAULT_FRAME = {"foreground": 768, "prerl": 768, "referring": 1024, "reasoning": 1024}
MAX_NEW_TOKENS = 256

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


def build_instruction(
    task: str,
    text: str | None = None,
    frame: int | None = None,
    *,
    task_line_last: bool = False,
    task_line_only: bool = False,
) -> str:
    """The user-turn instruction for ``task`` (see :func:`segr1.prompts.build_instruction`).

    ``task_line_last``: the same lines with the task line ("Identify and segment <expression>.") moved after
    the format rules, so that it ends the prompt (the ``segr1-phrase-last`` style). ``task_line_only``: the
    lines before the frame note alone (the ``segr1-task-line`` style)."""
    check_task_stage(task, "eval")
    if frame is None:
        frame = DEFAULT_FRAME[task]
    if not isinstance(frame, int) or isinstance(frame, bool) or frame <= 0:
        raise ValueError(f"frame must be a positive int (e.g. 768 or 1024); got {frame!r}")
    if text is not None and not isinstance(text, str):
        raise TypeError(f"text must be a str or None; got {type(text).__name__}")
    text = " ".join((text or "").split())  # one line: no stray newlines or double spaces from datasets
    if task in TEXT_TASKS and not text:
        raise ValueError(f"task {task!r} needs text (the expression or query); got {text!r}")
    if task == "referring":
        text = text.rstrip(".")
    lines = []
    if text and task not in TEXT_TASKS:
        lines.append(text)
    task_line = _TASK_LINES[task].format(text=text)
    if not task_line_last:
        lines.append(task_line)
    if task_line_only:
        return "\n".join(lines)
    lines.append(_FRAME_NOTE.format(frame=frame))
    lines.append(_POINTS_RULES if task == "prerl" else _BOX_RULES)
    if task_line_last:
        lines.append(task_line)
    return "\n".join(lines)


class Segr1Style:
    """segr1's own prompt style (module docstring); the same texts at every stage."""

    name = "segr1"
    answer_format = "seg-r1"
    task_line_last = False  # build_instruction's layout switches, set by the layout subclasses
    task_line_only = False
    frame_filter: str | None = None  # the protocol's frame_filter decides
    description = (
        "segr1's own wording: the Seg-R1 content reworded, plus the frame size and the exact answer format in "
        "every instruction (the embedded tiny policy was trained on it)"
    )

    def system(self, task: str, stage: str = "eval", user_text: str | None = None) -> str | None:
        """`SYSTEM_PROMPT` for the box tasks, None for ``prerl`` (a user turn only, as the original pre-RL)."""
        check_task_stage(task, stage)
        return None if task == "prerl" else SYSTEM_PROMPT

    def user(
        self,
        task: str,
        text: str | None = None,
        *,
        frame: int | None = None,
        stage: str = "eval",
        query_kind: str | None = None,
    ) -> str:
        """:func:`build_instruction` with the class's layout switches (``stage`` and ``query_kind`` change
        nothing in these styles)."""
        check_task_stage(task, stage)
        return build_instruction(
            task, text, frame, task_line_last=self.task_line_last, task_line_only=self.task_line_only
        )

    def messages(
        self, image: Any, user_text: str, system: str | None = None, *, stage: str = "eval"
    ) -> list[dict[str, Any]]:
        """System turn (if any), then one user turn: the image, then the text."""
        return chat_messages(image, user_text, system, image_first=True)

    def frame(self, task: str, stage: str = "eval") -> int:
        check_task_stage(task, stage)
        return DEFAULT_FRAME[task]

    def max_new_tokens(self, task: str, stage: str = "eval") -> int:
        check_task_stage(task, stage)
        return MAX_NEW_TOKENS

    def asks_think(self, task: str) -> bool:
        """Every instruction of this style asks for a ``<think>`` block (pre-RL included)."""
        check_task_stage(task, "eval")
        return True


class Segr1TextFirstStyle(Segr1Style):
    """segr1's texts with the instruction *before* the image in the user turn (``segr1-text-first``).

    In a causal LM, tokens attend only to what precedes them. With the image first (every other style), the image
    tokens cannot see the phrase, so grounding "the red one" has to happen in the answer tokens: they must read
    the word and then find the region it names, two hops the embedded miniature does not learn by SFT
    (docs/results_multitask.md, "Is it capacity?"). With the text first, every image token can attend to the
    phrase and mark itself as named or not, and the answer only has to localise marked tokens, which the
    foreground policy already does. The strings are :class:`Segr1Style`'s, character for character; only the
    order of the two content blocks differs, at every stage. Any Qwen2.5-VL accepts either order.
    """

    name = "segr1-text-first"
    image_first = False
    description = (
        "segr1's wording with the instruction before the image, so that the image tokens can attend to the "
        "phrase (the embedded multitask policy)"
    )

    def messages(
        self, image: Any, user_text: str, system: str | None = None, *, stage: str = "eval"
    ) -> list[dict[str, Any]]:
        """System turn (if any), then one user turn: the text, then the image."""
        return chat_messages(image, user_text, system, image_first=False)


class Segr1PhraseLastStyle(Segr1Style):
    """segr1's lines with the task line, and so the referring phrase, at the *end* of the instruction
    (``segr1-phrase-last``); the image first, as in ``segr1``.

    The embedded tiny model uses ``rope_theta`` 10 so that its answer can read image rows and columns
    (docs/results.md): every rotary frequency is then fast, and attention over a long distance depends on the
    exact distance rather than on content. In the ``segr1`` order the phrase sits about 100 tokens before the
    answer, behind the frame note and the format rules, and the miniature never reads it
    (docs/results_multitask.md). Here it is the last line, a few tokens before the answer. The lines are
    :class:`Segr1Style`'s, character for character, in another order.
    """

    name = "segr1-phrase-last"
    description = (
        "segr1's wording with the task line (the referring phrase, the question) last, just before the "
        "answer (the embedded multitask policy)"
    )
    task_line_last = True


class Segr1PhraseImageStyle(Segr1PhraseLastStyle):
    """``segr1-phrase-image``: the ``segr1-phrase-last`` instruction (task line last), then the image, then the
    answer: the phrase, the image and the answer are all a few positions apart.

    Qwen2.5-VL's multimodal rotary positions give the image tokens one temporal position and rows / columns on
    top of it, so the whole image spans only ``max(rows, cols)`` positions (8 for the embedded 224 frame). With
    this order every image token is 3-11 positions after the phrase, and the answer about 13 after the image,
    short enough for the embedded model's fast rotary frequencies (``rope_theta`` 10) to keep attention
    content-based. Same lines as :class:`Segr1Style`, character for character.
    """

    name = "segr1-phrase-image"
    image_first = False
    description = (
        "segr1's wording with the task line last and the image after the text, so that phrase, image and "
        "answer are a few positions apart (the embedded multitask policy)"
    )

    def messages(
        self, image: Any, user_text: str, system: str | None = None, *, stage: str = "eval"
    ) -> list[dict[str, Any]]:
        """System turn (if any), then one user turn: the text, then the image."""
        return chat_messages(image, user_text, system, image_first=False)


class Segr1TaskLineStyle(Segr1TextFirstStyle):
    """``segr1-task-line``: only the task line of :class:`Segr1Style`'s instruction ("Identify and segment the
    red shape."), then the image; no frame note and no format rules.

    The embedded model reads a phrase only when little lies between it and the image (docs/results_multitask.md,
    "The short prompt with the image"): here the phrase is a few positions before the first image token, and
    the answer format is learnt from the SFT targets instead of from the rules. The line is
    :class:`Segr1Style`'s, character for character (the reasoning query keeps its own line before it)."""

    name = "segr1-task-line"
    description = (
        "segr1's task line alone, before the image: the phrase a few positions from the image tokens (the "
        "embedded grounding experiments; the format comes from training, not from the prompt)"
    )
    task_line_only = True  # the frame is checked but not written
