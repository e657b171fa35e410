"""scripts/text_recall.py: the text-only list-copy probe of the tiny LM's rotary frequencies."""

from __future__ import annotations

import json
import random

import pytest

import fakedata as fd


@pytest.fixture(scope="module")
def recall():
    return fd.load_script("text_recall", register=True)


@pytest.mark.parametrize("layout", ["phrase-first", "phrase-last", "segr1-instruction"])
def test_examples_name_one_entry_and_answer_with_its_box(recall, layout):
    rng = random.Random(0)
    for _ in range(200):
        prompt, answer, boxes, target = recall.sample(rng, layout=layout)
        assert 2 <= len(boxes) <= 4 and 0 <= target < len(boxes)
        colour = prompt.split("the ", 1)[1].split(" shape", 1)[0]
        assert colour in recall.COLOURS
        # the phrase's colour names exactly one list entry, and the answer is that entry's box
        entries = prompt.split("f: ", 1)[1].split("; ")
        named = [i for i, e in enumerate(entries) if e.split()[0] == colour]
        assert named == [target]
        x1, y1, x2, y2 = boxes[target]
        assert answer == f"<bbox>[{x1},{y1},{x2},{y2}]</bbox>"
        assert f"[{x1},{y1},{x2},{y2}]" in entries[target]
        assert x1 < x2 and y1 < y2
    with pytest.raises(ValueError, match="layout"):
        recall.sample(rng, layout="sideways")


def test_scores_count_exact_copies_and_the_closest_entry(recall):
    class Echo:
        """A stand-in model that answers with a fixed string."""

        def __init__(self, tok, text):
            self.tok, self.text = tok, text

        def eval(self):
            return self

        def generate(self, input_ids, **_):
            import torch

            return torch.cat([input_ids, torch.tensor([self.tok(self.text)["input_ids"]])], dim=1)

    from transformers import AutoTokenizer

    from segr1.policies.tiny import tiny_model_dir

    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    example = ("p", "a", [(0, 0, 10, 10), (50, 50, 100, 100)], 1)
    exact = recall.evaluate(Echo(tok, "<bbox>[50,50,100,100]</bbox>"), tok, [example])
    assert exact["exact_copy"] == 1 and exact["named_entry_chosen"] == 1 and exact["chance"] == 0.5
    near = recall.evaluate(Echo(tok, "<bbox>[52,50,100,99]</bbox>"), tok, [example])
    assert near["exact_copy"] == 0 and near["named_entry_chosen"] == 1
    wrong = recall.evaluate(Echo(tok, "<bbox>[0,0,9,10]</bbox>"), tok, [example])
    assert wrong["named_entry_chosen"] == 0 and wrong["parsed"] == 1
    junk = recall.evaluate(Echo(tok, "no box"), tok, [example])
    assert junk["parsed"] == 0 and junk["named_entry_chosen"] == 0


def test_a_short_run_reports_each_model(recall, tmp_path, capsys):
    out = tmp_path / "r.json"
    args = ["--run", "plain=theta=10", "--run", "static=theta=10,static=4", "--steps", "2", "--batch", "4"]
    assert recall.main([*args, "--train-n", "20", "--test-n", "3", "--out-json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| plain | 10 |" in table and "| static | 10 |" in table
    runs = json.loads(out.read_text())["results"]
    assert [r["run"] for r in runs] == ["plain", "static"]
    assert all(len(r["log"]) >= 1 and r["after"]["n"] == 3 for r in runs)


def test_save_writes_a_loadable_checkpoint_with_the_static_pairs(recall, tmp_path):
    from segr1.policies import load_policy
    from segr1.policies.tiny import tiny_model_dir

    out = tmp_path / "saved"
    args = ["--run", f"warm={tiny_model_dir()},static=2", "--steps", "1", "--batch", "2", "--train-n", "4"]
    assert recall.main([*args, "--test-n", "1", "--threads", "1", "--save", str(out)]) == 0
    policy = load_policy(f"hf:{out}", device="cpu")
    assert policy.model.config.text_config.rope_parameters["rope_type"] == "longrope"
    assert (out / "segr1_policy.json").is_file() and (out / "tokenizer.json").is_file()
    with pytest.raises(SystemExit):
        recall.main(["--run", "a=theta=10", "--run", "b=theta=10", "--save", str(out)])
