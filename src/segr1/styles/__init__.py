"""Prompt styles: the exact chat input a checkpoint family was trained on, per task and stage.

A :class:`PromptStyle` answers, for a task (``foreground``, ``referring``, ``reasoning``, ``prerl``) and a
stage (``train``: GRPO rollouts; ``eval``: evaluation and ``segr1 segment``; ``demo``: the web demo;
``sft``: supervised warm-up):

* ``system(task, stage, user_text)``: the system turn (None: no system turn);
* ``user(task, text, frame=, stage=, query_kind=)``: the user-turn text; ``text`` is the referring expression or
  the reasoning query, ``query_kind`` ("sentence" / "phrase") says which ReasonSeg template a query takes;
* ``messages(image, user_text, system, stage=)``: the chat messages in the order the family used;
* ``image_first`` (optional attribute, default True): False for a style whose inference messages put the text
  before the image; the pipeline then passes ``image_first=False`` to the policy backends;
* ``frame(task, stage)``: the side of the square model frame; ``max_new_tokens(task, stage)``: the answer budget;
* ``asks_think(task)``: whether the answer it asks for starts with a ``<think>`` block;
* ``answer_format``: the answer format (`segr1.formats`) the style's prompts ask for;
* ``frame_filter``: the PIL filter the family resizes images to the frame with (``"bilinear"``), which wins over
  the protocol's ``frame_filter`` switch; None: the protocol decides (`segr1.protocol.for_style`).

Styles (one module each): ``segr1`` (:mod:`segr1.styles.segr1`, segr1's own wording; the embedded policy was
trained on it) and four layouts of the same lines for the embedded model's grounding experiments
(``segr1-text-first``, ``segr1-phrase-last``, ``segr1-phrase-image``, ``segr1-task-line``: docs/results_multitask.md), ``seg-r1`` (:mod:`segr1.styles.seg_r1`, the Seg-R1 release's strings byte for byte),
``seg-zero`` (:mod:`segr1.styles.seg_zero`) and ``vision-reasoner`` (:mod:`segr1.styles.vision_reasoner`), the
templates of Seg-Zero-7B and VisionReasoner-7B byte for byte (:mod:`segr1.styles._family`).

Which style a checkpoint gets (:func:`style_for`): the one its ``segr1_policy.json`` records under
``"prompt_style"``; ``segr1`` for checkpoints segr1 made before the key existed — its tiny models
(``"format": "segr1-policy"``: the embedded policy, the offline tiny model) and the outputs of an older
``segr1 train`` (``"segr1_args"`` recorded), all trained on segr1's texts; ``seg-r1`` for everything else — a
hub id, a stock Qwen-VL, a folder without the file — since the released checkpoints are what such a model most
likely is. The released checkpoints of the other families (`CHECKPOINT_STYLES`: ``Ricky06662/Seg-Zero-7B``,
``Ricky06662/VisionReasoner-7B``, ...) carry no ``segr1_policy.json``; :func:`checkpoint_style` names their
style from the hub id, and the policy backends record it in their ``metadata`` (`segr1.policies.known_metadata`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("foreground", "referring", "reasoning", "prerl")
STAGES: tuple[str, ...] = ("train", "eval", "demo", "sft")
QUERY_KINDS: tuple[str, ...] = ("sentence", "phrase")
TEXT_TASKS: frozenset[str] = frozenset({"referring", "reasoning"})

#: ``segr1_policy.json`` key naming a checkpoint's prompt style.
STYLE_KEY = "prompt_style"
#: The style of a checkpoint that records none (hub ids, stock Qwen-VL, folders without segr1_policy.json).
UNRECORDED_STYLE = "seg-r1"
#: ``segr1_policy.json`` "format" value of segr1's own tiny checkpoints (embedded policy, offline tiny model).
SEGR1_FOLDER_FORMAT = "segr1-policy"


@runtime_checkable
class PromptStyle(Protocol):
    """The prompt protocol of one checkpoint family (see the module docstring)."""

    name: str
    description: str

    def system(self, task: str, stage: str = "eval", user_text: str | None = None) -> str | None: ...

    def user(
        self,
        task: str,
        text: str | None = None,
        *,
        frame: int | None = None,
        stage: str = "eval",
        query_kind: str | None = None,
    ) -> str: ...

    def messages(
        self, image: Any, user_text: str, system: str | None = None, *, stage: str = "eval"
    ) -> list[dict[str, Any]]: ...

    def frame(self, task: str, stage: str = "eval") -> int: ...

    def max_new_tokens(self, task: str, stage: str = "eval") -> int: ...

    def asks_think(self, task: str) -> bool: ...

    answer_format: str
    frame_filter: str | None


def check_task_stage(task: str, stage: str) -> None:
    """ValueError naming the bad value when ``task`` or ``stage`` is unknown."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")


def chat_messages(
    image: Any, user_text: str, system: str | None, *, image_first: bool
) -> list[dict[str, Any]]:
    """An optional system turn and one user turn holding the image and the text, in the given order.

    ``image``: the PIL image in the model frame, or None for a bare ``{"type": "image"}`` placeholder (what TRL
    fills from a dataset's ``image`` column). Content blocks follow Qwen-VL processors'
    ``apply_chat_template``: ``{"type": "image", "image": image}`` and ``{"type": "text", "text": ...}``.
    """
    if not isinstance(user_text, str):
        raise TypeError(f"user text must be a str; got {type(user_text).__name__}")
    image_block: dict[str, Any] = {"type": "image"} if image is None else {"type": "image", "image": image}
    text_block = {"type": "text", "text": user_text}
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    content = [image_block, text_block] if image_first else [text_block, image_block]
    messages.append({"role": "user", "content": content})
    return messages


def _registry() -> dict[str, PromptStyle]:
    from segr1.styles.seg_r1 import SegR1Style
    from segr1.styles.seg_zero import SegZeroStyle
    from segr1.styles.segr1 import (
        Segr1PhraseImageStyle,
        Segr1PhraseLastStyle,
        Segr1Style,
        Segr1TaskLineStyle,
        Segr1TextFirstStyle,
    )
    from segr1.styles.vision_reasoner import VisionReasonerStyle

    styles = (
        Segr1Style(),
        Segr1TextFirstStyle(),
        Segr1PhraseLastStyle(),
        Segr1PhraseImageStyle(),
        Segr1TaskLineStyle(),
        SegR1Style(),
        SegZeroStyle(),
        VisionReasonerStyle(),
    )
    return {style.name: style for style in styles}


STYLES: dict[str, PromptStyle] = _registry()


def _checkpoint_styles() -> dict[str, str]:
    from segr1.family import FAMILIES

    return {
        hub_id.lower(): family.name
        for family in FAMILIES.values()
        if family.name in STYLES
        for hub_id in family.checkpoints
    }


#: Released checkpoints of the other families, by lower-cased hub id -> their prompt style.
CHECKPOINT_STYLES: dict[str, str] = _checkpoint_styles()


def checkpoint_style(source: str | None) -> str | None:
    """The style of a released checkpoint named by its hub id (``Ricky06662/Seg-Zero-7B`` -> ``seg-zero``;
    case-insensitive; a ``hf:`` / ``vllm:`` backend prefix is allowed), else None (any other source, which
    `style_for` gives its default)."""
    if not isinstance(source, str):
        return None
    key = source.strip()
    head, sep, rest = key.partition(":")
    if sep and head in ("hf", "vllm"):
        key = rest.strip()
    return CHECKPOINT_STYLES.get(key.lower())


def get_style(name: str | PromptStyle) -> PromptStyle:
    """The registered style called ``name`` (a style object is returned as is). ValueError lists the known ones."""
    if isinstance(name, PromptStyle) and not isinstance(name, str):
        return name
    if not isinstance(name, str):
        raise TypeError(f"prompt style must be a name or a PromptStyle; got {type(name).__name__}")
    key = name.strip().lower()
    if key not in STYLES:
        raise ValueError(f"unknown prompt style {name!r}; known styles: {', '.join(STYLES)}")
    return STYLES[key]


def recorded_style_name(metadata: Mapping[str, Any] | None) -> str | None:
    """The style a checkpoint's ``segr1_policy.json`` content records (``"prompt_style"``), else None."""
    value = (metadata or {}).get(STYLE_KEY)
    return value if isinstance(value, str) and value.strip() else None


def style_for(
    metadata: Mapping[str, Any] | None = None, override: str | PromptStyle | None = None
) -> PromptStyle:
    """The prompt style to use with a checkpoint: ``override`` when given, else the recorded style, else
    ``segr1`` for checkpoints segr1 made before styles were recorded (its tiny models, older ``segr1 train``
    outputs) and :data:`UNRECORDED_STYLE` (``seg-r1``) for any other.

    Raises ValueError for an unknown override or recorded name.
    """
    if override is not None and not (isinstance(override, str) and not override.strip()):
        return get_style(override)
    metadata = metadata or {}
    recorded = recorded_style_name(metadata)
    if recorded is not None:
        return get_style(recorded)
    if metadata.get("format") == SEGR1_FOLDER_FORMAT or "segr1_args" in metadata:
        return get_style("segr1")  # made by segr1 before styles were recorded: trained on segr1's texts
    return get_style(UNRECORDED_STYLE)


__all__ = [
    "CHECKPOINT_STYLES",
    "QUERY_KINDS",
    "STAGES",
    "STYLES",
    "STYLE_KEY",
    "TASKS",
    "UNRECORDED_STYLE",
    "PromptStyle",
    "chat_messages",
    "check_task_stage",
    "checkpoint_style",
    "get_style",
    "recorded_style_name",
    "style_for",
]
