"""The embedded policy's answers on examples/*.png are bit-identical to the recorded ones.

The golden file (tests/data/embedded_answers.json, written by scripts/record_embedded_answers.py) holds the
answers `segr1 segment` gave with the default options before segr1 learnt prompt styles, answer formats and
release-protocol switches. The embedded policy records the segr1 prompt style, so none of that may change
what it sees: same instruction, same system turn (none), same image, same budget, hence the same answers.
When the shipped weights change (a retrained policy) the file must be re-recorded with that script. The default
runs on the native backend (segr1's own forward pass); ``hf:default`` on transformers: both must match.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fakedata as fd
from segr1.policies import shipped_policy_available

pytestmark = pytest.mark.skipif(
    not shipped_policy_available(), reason="no trained policy shipped in segr1/assets/tiny-policy"
)

REPO = Path(__file__).resolve().parents[1]


def _recorder():
    return fd.load_script("record_embedded_answers")


@pytest.fixture(scope="module")
def recorder():
    return _recorder()


@pytest.fixture(scope="module")
def golden(recorder):
    return json.loads(recorder.GOLDEN.read_text(encoding="utf-8"))


def test_golden_file_is_for_the_shipped_weights(recorder, golden):
    assert golden["weights_sha256"] == recorder.weights_sha256(), (
        "the shipped weights changed: re-record the answers with `python scripts/record_embedded_answers.py`"
    )


@pytest.mark.parametrize("model", [None, "hf:default"], ids=["default (native backend)", "hf backend"])
def test_embedded_answers_are_bit_identical(recorder, golden, model):
    """The default (segr1's own forward pass, segr1.policies.native) and transformers both give the answers
    recorded with transformers."""
    got = recorder.record(model)
    assert set(got["runs"]) == {name for name, _ in recorder.RUNS}
    for name, answers in golden["runs"].items():
        assert got["runs"][name] == answers, f"{name}: the embedded policy's answers changed"
    assert len(golden["runs"]["foreground"]) == len(list((REPO / "examples").glob("*.png")))
