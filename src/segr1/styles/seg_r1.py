"""The ``seg-r1`` prompt style: the Seg-R1 release's input protocol, byte for byte, per task and stage.

These strings are facts about the released checkpoints (``geshang/Seg-R1-7B``, ...), like a tokenizer's special
tokens: the models were trained and evaluated on exactly these texts, so segr1 reproduces them exactly
(tests compare each one with the release's files). Where the release used them (paths in the release tree):

* **train** (``seg-r1/src/open_r1/grpo.py``, ``create_conversation``; the RL stage on COD and the SOD
  fine-tune): `SYSTEM_TRAIN` + `USER_FOREGROUND_TRAIN`; 768 x 768 frame; completions up to 400 tokens
  (``scripts/run_grpo.sh``, ``run_grpo_sod.sh``).
* **pre-RL** (``grpo_prerl.py``): no system turn, `USER_PRERL` only (points + labels, no ``<think>``); 768
  frame; completions up to 256 tokens (``scripts/run_prerl.sh``).
* **eval** — COD/SOD (``eval/eval_foreground_segmentation.py``): `SYSTEM_EVAL` + `USER_FOREGROUND_EVAL`, 768
  frame, 1024 new tokens; referring (``eval_referring_segmentation.py``): `SYSTEM_EVAL` + ``"Identify and
  segment " + sentence``, 1024 frame, 512 tokens; reasoning (``eval_reasoning_segmentation.py`` with
  ``eval/datasets/ReasonSeg_Dataset.py``): `SYSTEM_EVAL` + the query through `REASONING_SENTENCE` (long
  queries, ``is_sentence``) or `REASONING_PHRASE` (short phrases, lower-cased), 1024 frame, 512 tokens.
* **demo** (``demo/seg_r1_web_demo.py``): the typed prompt verbatim; `SYSTEM_EVAL` when it contains
  "segment" or "mask", else `SYSTEM_DEMO_PLAIN`; 1024 frame, 1024 tokens.
* **sft** (``seg-r1/src/open_r1/sft.py`` + ``configs/qwen2vl_sft_config.yaml``, FCoT): the record's
  ``system`` when it has one, else `SYSTEM_SFT`; the record's ``problem`` as the user text; content order
  TEXT then IMAGE (every other stage: image then text); target ``"{thinking} {solution}"``.

The release never trained or evaluated referring/reasoning outside those scripts; for the stages it has no
text for (referring/reasoning at train/sft, foreground at sft without a record) this style uses the nearest
release text (the eval template; the RL foreground text) and says so in ``docs/fidelity.md``.
"""

from __future__ import annotations

import logging
from typing import Any

from segr1.styles import QUERY_KINDS, TEXT_TASKS, chat_messages, check_task_stage

logger = logging.getLogger(__name__)

_SYSTEM_HEAD = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant "
    "first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning "
    "process should enclosed within <think> </think> tags, and the bounding box, points and points labels should be "
    "enclosed within <bbox></bbox>, <points></points>, and <labels></labels>, respectively. i.e., "
)
_LABELS_NOTE = "Where 1 indicates a foreground (object) point, and 0 indicates a background point."

#: grpo.py (RL, SOD fine-tune): points written [[x1,y1],[x2,y2],...], plus the "moderate number" sentence.
SYSTEM_TRAIN = (
    _SYSTEM_HEAD
    + "<think> reasoning process here </think> <bbox>[x1,y1,x2,y2]</bbox>, <points>[[x1,y1],[x2,y2],...]</points>, "
    "<labels>[1,0,...]</labels>"
    + _LABELS_NOTE
    + " Only generate a moderate number of points, enough to clearly "
    "outline the object without overloading the system."
)
#: eval_*_segmentation.py and the demo's "segment"/"mask" branch: points written [[x3,y3],[x4,y4],...].
SYSTEM_EVAL = (
    _SYSTEM_HEAD
    + "<think> reasoning process here </think> <bbox>[x1,y1,x2,y2]</bbox>, <points>[[x3,y3],[x4,y4],...]</points>, "
    "<labels>[1,0,...]</labels>" + _LABELS_NOTE
)
#: sft.py, for FCoT records without a "system" field (the "think prompt"; no labels sentence).
SYSTEM_SFT = (
    _SYSTEM_HEAD
    + "<think> reasoning process here </think> <bbox>[x1,y1,x2,y2]</bbox>, <points>[[x1,y1],[x2,y2],...]</points>, "
    "<labels>[1,0,...]</labels>"
)
#: the demo's system turn when the prompt contains neither "segment" nor "mask".
SYSTEM_DEMO_PLAIN = "You're a helpful visual assistant."
#: words whose presence in the demo prompt selects `SYSTEM_EVAL`.
DEMO_SEGMENT_WORDS = ("segment", "mask")

_FOREGROUND_BODY = (
    "\nIdentify and segment all the primary objects in the image.\n\nOutput the result using the exact format:\n"
    "<think> reasoning process here </think> <bbox>[x1,y1,x2,y2]</bbox>, <points>[[x3,y3],[x4,y4],...]</points>, "
    "<labels>[1,0,...]</labels>\n"
)
#: grpo.py's user text (a triple-quoted string: starts and ends with a newline).
USER_FOREGROUND_TRAIN = _FOREGROUND_BODY
#: eval_foreground_segmentation.py's user text: the same, its closing quotes indented by four spaces.
USER_FOREGROUND_EVAL = _FOREGROUND_BODY + "    "
#: grpo_prerl.py's user text (the whole user turn; no system turn).
USER_PRERL = (
    "\nYou are given an image. Your task is to generate a sparse set of point prompts to help segment the most "
    "salient object in the image.\n\nThe points should be informative: include both foreground points (on the "
    "object) and background points (off the object) to help define the object boundary.\n\nOnly generate a "
    "moderate number of points, enough to clearly outline the object without overloading the system.\n\nOutput "
    "the result using the exact format:\n<points>[[x1,y1],[x2,y2],...]</points> <labels>[1,0,...]</labels>\n"
    "Where 1 indicates a foreground (object) point, and 0 indicates a background point.\n\n"
)
#: eval_referring_segmentation.py: this prefix + the sentence, as it is in the refs file.
REFERRING_PREFIX = "Identify and segment "
#: ReasonSeg_Dataset.py LONG_QUESTION_LIST (queries with is_sentence true).
REASONING_SENTENCE = "{sent} Identify and segment it."
#: ReasonSeg_Dataset.py SHORT_QUESTION_LIST (short phrases; the phrase is lower-cased; note the leading space).
REASONING_PHRASE = " Identify and segment {class_name}."

FRAMES = {"foreground": 768, "prerl": 768, "referring": 1024, "reasoning": 1024}
DEMO_FRAME = 1024
#: eval budgets (max_new_tokens of the eval scripts); the demo's is DEMO_MAX_NEW_TOKENS.
EVAL_MAX_NEW_TOKENS = {"foreground": 1024, "referring": 512, "reasoning": 512, "prerl": 256}
DEMO_MAX_NEW_TOKENS = 1024
#: training budgets (max_completion_length of run_grpo.sh / run_grpo_sod.sh and run_prerl.sh).
TRAIN_MAX_NEW_TOKENS = {"foreground": 400, "referring": 400, "reasoning": 400, "prerl": 256}


def _needs_text(task: str, text: str | None) -> str:
    if text is not None and not isinstance(text, str):
        raise TypeError(f"text must be a str or None; got {type(text).__name__}")
    if task in TEXT_TASKS and not (text and text.strip()):
        raise ValueError(f"task {task!r} needs text (the expression or query); got {text!r}")
    return text or ""


def reasoning_query(text: str, query_kind: str | None = None) -> str:
    """A ReasonSeg query as the release's evaluation wrote it: `REASONING_SENTENCE` for a sentence (also when
    the kind is unknown), `REASONING_PHRASE` with the lower-cased phrase for a phrase."""
    if query_kind not in (None, *QUERY_KINDS):
        raise ValueError(f"query_kind must be one of {QUERY_KINDS} or None; got {query_kind!r}")
    if query_kind == "phrase":
        return REASONING_PHRASE.format(class_name=text.lower())
    return REASONING_SENTENCE.format(sent=text)


def demo_system(prompt: str | None) -> str:
    """The release demo's system turn for a typed prompt: `SYSTEM_EVAL` when it contains "segment" or "mask"
    (case-sensitive, as the release tests it), else `SYSTEM_DEMO_PLAIN`. No prompt: `SYSTEM_EVAL`."""
    if prompt is None or any(word in prompt for word in DEMO_SEGMENT_WORDS):
        return SYSTEM_EVAL
    return SYSTEM_DEMO_PLAIN


class SegR1Style:
    """The Seg-R1 release's prompt protocol (module docstring)."""

    name = "seg-r1"
    answer_format = "seg-r1"
    frame_filter: str | None = None  # the protocol's frame_filter decides
    description = (
        "the Seg-R1 release's system prompts and user texts byte for byte, per task and stage (train, eval, demo, "
        "sft), its message order and its frames and budgets (geshang/Seg-R1-* were trained and evaluated on it)"
    )

    def system(self, task: str, stage: str = "eval", user_text: str | None = None) -> str | None:
        """None for ``prerl``; the demo picks by the prompt (`demo_system`); train `SYSTEM_TRAIN`; sft
        `SYSTEM_SFT` (FCoT records that carry a system turn use theirs); eval `SYSTEM_EVAL`."""
        check_task_stage(task, stage)
        if task == "prerl":
            return None
        if stage == "demo":
            return demo_system(user_text)
        return {"train": SYSTEM_TRAIN, "sft": SYSTEM_SFT}.get(stage, SYSTEM_EVAL)

    def user(
        self,
        task: str,
        text: str | None = None,
        *,
        frame: int | None = None,
        stage: str = "eval",
        query_kind: str | None = None,
    ) -> str:
        """The user text (module docstring). ``frame`` is not part of this protocol (the release never told the
        model its frame); the demo uses ``text`` verbatim when there is one."""
        check_task_stage(task, stage)
        text = _needs_text(task, text)
        if task == "prerl":
            return USER_PRERL
        if stage == "demo" and text:
            return text
        if task == "foreground":
            return USER_FOREGROUND_EVAL if stage in ("eval", "demo") else USER_FOREGROUND_TRAIN
        if task == "referring":
            return REFERRING_PREFIX + text
        return reasoning_query(text, query_kind)

    def messages(
        self, image: Any, user_text: str, system: str | None = None, *, stage: str = "eval"
    ) -> list[dict[str, Any]]:
        """System turn (if any), then the user turn: image then text; text then image at the ``sft`` stage."""
        check_task_stage("foreground", stage)
        return chat_messages(image, user_text, system, image_first=stage != "sft")

    def frame(self, task: str, stage: str = "eval") -> int:
        check_task_stage(task, stage)
        return DEMO_FRAME if stage == "demo" else FRAMES[task]

    def max_new_tokens(self, task: str, stage: str = "eval") -> int:
        check_task_stage(task, stage)
        if stage == "demo":
            return DEMO_MAX_NEW_TOKENS
        return (TRAIN_MAX_NEW_TOKENS if stage == "train" else EVAL_MAX_NEW_TOKENS)[task]

    def asks_think(self, task: str) -> bool:
        """False for ``prerl`` (the release's pre-RL text asks for points and labels only)."""
        check_task_stage(task, "eval")
        return task != "prerl"
