"""Tests for segr1.prompts: instruction templates and chat messages."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from segr1.answer import parse_answer
from segr1.prompts import (
    BOX_FORMAT,
    DEFAULT_FRAME,
    POINTS_FORMAT,
    SYSTEM_PROMPT,
    TASKS,
    build_instruction,
    build_messages,
    system_prompt,
)


def _example_answer(fmt: str) -> str:
    """The format line with its placeholders filled in: x1 -> 11, y3 -> 23, '...' dropped."""
    text = fmt.replace(",...", "")
    return re.sub(r"([xy])(\d)", lambda m: str((10 if m.group(1) == "x" else 20) + int(m.group(2))), text)


def test_tasks_and_frames():
    assert TASKS == ("foreground", "referring", "reasoning", "prerl")
    assert DEFAULT_FRAME == {"foreground": 768, "prerl": 768, "referring": 1024, "reasoning": 1024}


@pytest.mark.parametrize("task", TASKS)
def test_instruction_states_frame_and_exact_format(task):
    text = "the red car" if task in ("referring", "reasoning") else None
    default = build_instruction(task, text)
    assert f"{DEFAULT_FRAME[task]}x{DEFAULT_FRAME[task]}" in default
    custom = build_instruction(task, text, frame=448)
    assert "448x448" in custom and str(DEFAULT_FRAME[task]) not in custom
    fmt = POINTS_FORMAT if task == "prerl" else BOX_FORMAT
    assert fmt in default
    if task == "prerl":
        assert "<bbox>" not in default
    if text:
        assert text in default


@pytest.mark.parametrize("fmt,points_only", [(BOX_FORMAT, False), (POINTS_FORMAT, True)])
def test_format_examples_parse_as_complete_answers(fmt, points_only):
    p = parse_answer(_example_answer(fmt))
    assert p.validity.is_complete(points_only=points_only), p.validity.errors
    assert p.labels.tolist() == [1, 0]
    assert (p.boxes.shape[0] == 1) != points_only


def test_system_prompt_spells_out_the_format():
    assert BOX_FORMAT in SYSTEM_PROMPT
    assert parse_answer(_example_answer(BOX_FORMAT)).validity.is_complete()
    for task in ("foreground", "referring", "reasoning"):
        assert system_prompt(task) == SYSTEM_PROMPT
    assert system_prompt("prerl") is None
    with pytest.raises(ValueError):
        system_prompt("detect")


def test_task_texts():
    assert build_instruction("referring", "  the dog\n on the left. ").startswith(
        "Identify and segment the dog on the left."
    )
    q = "What in this picture keeps food cold?"
    assert build_instruction("reasoning", q).startswith(q + "\n")
    fg = build_instruction("foreground")
    assert fg.startswith("Identify and segment all the primary objects in the image.")
    assert build_instruction("foreground", "A camouflaged animal.").startswith(
        "A camouflaged animal.\nIdentify"
    )
    assert "background points" in build_instruction("prerl")


@pytest.mark.parametrize(
    "args,exc",
    [
        (("segment",), ValueError),
        (("referring",), ValueError),
        (("reasoning", "   "), ValueError),
        (("foreground", None, 0), ValueError),
        (("foreground", None, 76.8), ValueError),
        (("foreground", None, True), ValueError),
        (("foreground", 3), TypeError),
    ],
)
def test_build_instruction_errors(args, exc):
    with pytest.raises(exc):
        build_instruction(*args)


def test_build_messages_shape():
    img = Image.new("RGB", (8, 8))
    msgs = build_messages(img, "hello")
    assert msgs == [
        {"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "hello"}]}
    ]
    msgs = build_messages(img, "hello", system="sys")
    assert msgs[0] == {"role": "system", "content": [{"type": "text", "text": "sys"}]}
    assert msgs[1]["role"] == "user" and len(msgs) == 2
    with pytest.raises(TypeError):
        build_messages(img, None)  # type: ignore[arg-type]


def test_messages_work_with_a_qwen_vl_processor():
    tiny = pytest.importorskip("segr1.policies.tiny")
    transformers = pytest.importorskip("transformers")
    processor = transformers.AutoProcessor.from_pretrained(tiny.tiny_model_dir())
    image = Image.new("RGB", (224, 224), (30, 60, 90))
    instruction = build_instruction("referring", "the cat", frame=224)
    messages = build_messages(image, instruction, system_prompt("referring"))
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert SYSTEM_PROMPT in text and instruction in text
    assert text.count("<|image_pad|>") == 1 and text.index("<|image_pad|>") < text.index(instruction)
    batch = processor.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    assert batch["input_ids"].shape[0] == 1 and batch["pixel_values"].shape[0] > 0
