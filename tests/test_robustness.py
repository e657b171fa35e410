"""benchmarks/robustness.py: a small parser fuzz and the malicious pickles in the default run; the demo and the
kill-and-resume checks (tens of seconds) with -m slow. The full figures are in docs/benchmarks.md."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def robustness():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("robustness")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_parser_fuzz_raises_evaluates_and_breaks_nothing(robustness):
    r = robustness.fuzz_parser(n=3000, seed=1)
    assert r["strings"] == 3000 and all(v > 0 for v in r["by kind"].values())
    assert (r["exceptions"], r["internal errors"], r["evaluations"], r["malformed results"]) == (0, 0, 0, 0)
    assert not r["code ran"] and r["max ms"] < 2000
    assert robustness._passed("parser", r)


def test_the_fuzz_would_see_an_evaluation(robustness, monkeypatch):
    import segr1.answer as answer

    real = answer.parse_answer
    monkeypatch.setattr(answer, "parse_answer", lambda text: (eval("1"), real(text))[1])
    r = robustness.fuzz_parser(n=50, seed=2)
    assert r["evaluations"] >= 50 and not robustness._passed("parser", r)


def test_malicious_pickles_are_all_refused(robustness):
    r = robustness.pickle_check()
    assert r["malicious pickles"] >= 19 and r["refused"] == r["malicious pickles"]
    assert not r["code executed"] and robustness._passed("pickle", r)
    assert not robustness._passed("pickle", {**r, "not refused": ["x: loaded"]})


@pytest.mark.slow
def test_demo_survives_hostile_uploads(robustness):
    r = robustness.demo_hostile(n_concurrent=8, workers=4)
    assert robustness._passed("demo", r), r


@pytest.mark.slow
def test_killed_eval_resumes_to_identical_metrics(robustness):
    r = robustness.eval_kill_resume(n=8, kill_after=3)
    assert r["killed with SIGKILL"] and r["metrics.json identical"], r
