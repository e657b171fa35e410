"""A policy used for a task its segr1_policy.json does not list gets one warning line; hub ids get none."""

from __future__ import annotations

import logging

import pytest

from segr1.pipeline import SegR1Pipeline
from segr1.policies import task_warning, trained_tasks
from segr1.segmenters import load_segmenter


class FakePolicy:
    name = "hf:fake"

    def __init__(self, metadata):
        self.metadata = metadata
        self.frame = 64

    def generate(self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None):
        return [[""] * num_samples for _ in images]


@pytest.mark.parametrize(
    ("metadata", "tasks"),
    [
        ({}, None),
        (None, None),
        ({"frame": 224}, None),
        ({"task": "foreground"}, ("foreground",)),
        ({"tasks": ["foreground", "referring"], "task": "foreground"}, ("foreground", "referring")),
        ({"segr1_args": {"task": "prerl"}}, ("prerl",)),
        ({"tasks": "referring"}, None),  # not a list: ignored
        ({"tasks": [], "task": "reasoning"}, ("reasoning",)),
    ],
)
def test_trained_tasks_reads_both_keys(metadata, tasks):
    assert trained_tasks(metadata) == tasks


def test_task_warning_names_the_policy_the_tasks_and_the_fix():
    text = task_warning({"task": "foreground"}, "referring", "hf:x")
    assert text is not None and "\n" not in text
    assert "hf:x" in text and "foreground" in text and "referring" in text and "--model" in text
    assert task_warning({"tasks": ["foreground", "referring"]}, "referring") is None
    assert task_warning({}, "referring") is None


@pytest.mark.parametrize(
    ("metadata", "task", "warned"),
    [
        ({"task": "foreground"}, "referring", True),
        ({"task": "foreground"}, "foreground", False),
        ({"tasks": ["foreground", "referring"]}, "referring", False),
        ({"tasks": ["foreground", "referring"]}, "reasoning", True),
        ({}, "referring", False),  # a hub checkpoint: nothing recorded, nothing said
    ],
)
def test_pipeline_warns_once_for_an_unlisted_task(caplog, metadata, task, warned):
    with caplog.at_level(logging.WARNING, logger="segr1.pipeline"):
        SegR1Pipeline(FakePolicy(metadata), load_segmenter("grabcut"), task=task)
    lines = [r.getMessage() for r in caplog.records if "was trained for" in r.getMessage()]
    assert len(lines) == (1 if warned else 0)
