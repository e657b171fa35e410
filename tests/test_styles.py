"""Prompt styles: the seg-r1 style reproduces the release's strings byte for byte; no style drifts by a character.

Three kinds of checks:

* against the release's own files (``shared/reference/seg-r1-release`` next to the repository, or
  ``$SEGR1_RELEASE_REFERENCE``): every string, budget, frame and message order is read out of the release's
  Python source with ``ast`` (its string constants exactly as Python evaluates them) and compared with
  segr1's; only these comparisons are skipped when the folder is absent;
* golden sha256 of every style's texts and of the full chat template rendered for each style, task and stage
  (a one-character drift anywhere fails);
* behaviour: which style a checkpoint gets, the demo's system switch, the reasoning templates.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from pathlib import Path

import pytest

from segr1.styles import STAGES, STYLES, TASKS, get_style, style_for
from segr1.styles import seg_r1 as release
from segr1.styles import segr1 as own

REPO = Path(__file__).resolve().parents[1]


def _reference_dir() -> Path | None:
    env = os.environ.get("SEGR1_RELEASE_REFERENCE")
    candidates = [Path(env)] if env else []
    candidates += [p / "shared" / "reference" / "seg-r1-release" for p in (REPO.parent, REPO.parent.parent)]
    return next((p for p in candidates if (p / "ORIGIN.md").is_file()), None)


REFERENCE = _reference_dir()
needs_reference = pytest.mark.skipif(
    REFERENCE is None, reason="the Seg-R1 release excerpt is not next to the repo"
)


# ------------------------------------------------------------------------------------ reading the release


def _tree(relpath: str) -> ast.Module:
    return ast.parse((REFERENCE / relpath).read_text(encoding="utf-8"))


def _function(relpath: str, name: str) -> ast.FunctionDef:
    found = [n for n in ast.walk(_tree(relpath)) if isinstance(n, ast.FunctionDef) and n.name == name]
    assert len(found) == 1, f"{relpath}: expected one function {name}"
    return found[0]


def _assigned(node: ast.AST, name: str) -> list[object]:
    """Constant values assigned to ``name`` under ``node``, in source order."""
    return [
        n.value.value
        for n in ast.walk(node)
        if isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)
        and isinstance(n.value, ast.Constant)
    ]


def _content_lists(node: ast.AST) -> list[list[ast.Dict]]:
    """Every ``"content": [ {...}, ... ]`` list of dicts under ``node``."""
    out = []
    for d in ast.walk(node):
        if isinstance(d, ast.Dict):
            for k, v in zip(d.keys, d.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "content" and isinstance(v, ast.List):
                    out.append([e for e in v.elts if isinstance(e, ast.Dict)])
    return out


def _field(d: ast.Dict, key: str) -> ast.AST | None:
    for k, v in zip(d.keys, d.values, strict=True):
        if isinstance(k, ast.Constant) and k.value == key:
            return v
    return None


def _user_content(node: ast.AST) -> list[ast.Dict]:
    """The content list that holds the image block (the user turn)."""
    lists = [c for c in _content_lists(node) if any(_const(_field(b, "type")) == "image" for b in c)]
    assert len(lists) == 1
    return lists[0]


def _const(node: ast.AST | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _order(content: list[ast.Dict]) -> list[object]:
    return [_const(_field(b, "type")) for b in content]


def _user_text(content: list[ast.Dict]) -> ast.AST:
    (text,) = [_field(b, "text") for b in content if _const(_field(b, "type")) == "text"]
    return text


def _generate_budgets(relpath: str) -> set[int]:
    """max_new_tokens of every ``*.generate(...)`` call."""
    return {
        kw.value.value
        for n in ast.walk(_tree(relpath))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "generate"
        for kw in n.keywords
        if kw.arg == "max_new_tokens"
    }


def _resize_size(relpath: str) -> int:
    (value,) = _assigned(_tree(relpath), "RESIZE_SIZE") or [
        ast.literal_eval(n.value)
        for n in _tree(relpath).body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "RESIZE_SIZE" for t in n.targets)
    ]
    assert value[0] == value[1]
    return value[0]


def _completion_length(script: str) -> int:
    text = (REFERENCE / "scripts" / script).read_text(encoding="utf-8")
    return int(re.search(r"--max_completion_length (\d+)", text).group(1))


# --------------------------------------------------------------------------- comparisons with the release


@needs_reference
def test_rl_training_texts_match_grpo_py():
    f = _function("seg-r1/src/open_r1/grpo.py", "create_conversation")
    assert _assigned(f, "SYSTEM_PROMPT") == [release.SYSTEM_TRAIN]
    content = _user_content(f)
    assert _order(content) == ["image", "text"]
    assert _const(_user_text(content)) == release.USER_FOREGROUND_TRAIN
    style = get_style("seg-r1")
    assert style.system("foreground", "train") == release.SYSTEM_TRAIN
    assert style.user("foreground", stage="train") == release.USER_FOREGROUND_TRAIN
    assert _resize_size("seg-r1/src/open_r1/grpo.py") == style.frame("foreground", "train") == 768
    for script in ("run_grpo.sh", "run_grpo_sod.sh"):
        assert _completion_length(script) == style.max_new_tokens("foreground", "train") == 400


@needs_reference
def test_prerl_texts_match_grpo_prerl_py():
    f = _function("seg-r1/src/open_r1/grpo_prerl.py", "create_conversation")
    roles = [_const(_field(d, "role")) for d in ast.walk(f) if isinstance(d, ast.Dict) and _field(d, "role")]
    assert roles == ["user"], "the release's pre-RL prompt is a user turn only"
    content = _user_content(f)
    assert _order(content) == ["image", "text"]
    assert _const(_user_text(content)) == release.USER_PRERL
    style = get_style("seg-r1")
    for stage in STAGES:
        assert style.system("prerl", stage) is None
        assert style.user("prerl", stage=stage) == release.USER_PRERL
    assert "<think>" not in release.USER_PRERL and not style.asks_think("prerl")
    assert _resize_size("seg-r1/src/open_r1/grpo_prerl.py") == style.frame("prerl", "train") == 768
    assert _completion_length("run_prerl.sh") == style.max_new_tokens("prerl", "train") == 256


@needs_reference
def test_sft_texts_and_order_match_sft_py():
    f = _function("seg-r1/src/open_r1/sft.py", "convert_example")
    assert _assigned(f, "SYSTEM_PROMPT") == [release.SYSTEM_SFT]
    content = _user_content(f)
    assert _order(content) == ["text", "image"], "the release's SFT user turn puts the text first"
    assert getattr(_user_text(content), "id", None) == "problem"
    target = [
        v
        for d in ast.walk(f)
        if isinstance(d, ast.Dict) and _const(_field(d, "role")) == "assistant"
        for v in [_field(d, "content")]
    ]
    assert len(target) == 1 and isinstance(target[0], ast.JoinedStr)
    parts = [getattr(getattr(v, "value", None), "id", None) if isinstance(v, ast.FormattedValue) else v.value
             for v in target[0].values]  # fmt: skip
    assert parts == ["thinking", " ", "solution"]
    from segr1.data.fcot import fcot_target

    assert fcot_target("a b", "<bbox>[1,2,3,4]</bbox>") == "a b <bbox>[1,2,3,4]</bbox>"
    style = get_style("seg-r1")
    assert style.system("foreground", "sft") == release.SYSTEM_SFT
    messages = style.messages(None, "problem", "sys", stage="sft")
    assert [b["type"] for b in messages[1]["content"]] == ["text", "image"]


@needs_reference
def test_foreground_eval_texts_match_eval_foreground_segmentation_py():
    path = "eval/eval_foreground_segmentation.py"
    f = _function(path, "prepare_test_messages")
    assert _assigned(f, "SYSTEM_PROMPT") == [release.SYSTEM_EVAL]
    content = _user_content(f)
    assert _order(content) == ["image", "text"]
    assert _const(_user_text(content)) == release.USER_FOREGROUND_EVAL
    style = get_style("seg-r1")
    assert style.system("foreground") == release.SYSTEM_EVAL
    assert style.user("foreground") == release.USER_FOREGROUND_EVAL
    assert _generate_budgets(path) == {style.max_new_tokens("foreground")} == {1024}
    assert _resize_size(path) == style.frame("foreground") == 768


@needs_reference
def test_referring_eval_texts_match_eval_referring_segmentation_py():
    path = "eval/eval_referring_segmentation.py"
    f = _function(path, "prepare_message")
    assert _assigned(f, "sys") == [release.SYSTEM_EVAL]
    content = _user_content(f)
    assert _order(content) == ["image", "text"]
    text = _user_text(content)
    assert isinstance(text, ast.BinOp) and isinstance(text.op, ast.Add)
    assert _const(text.left) == release.REFERRING_PREFIX
    style = get_style("seg-r1")
    assert style.user("referring", "the dog on the left.") == "Identify and segment the dog on the left."
    assert _generate_budgets(path) == {style.max_new_tokens("referring")} == {512}
    assert _resize_size(path) == style.frame("referring") == 1024


@needs_reference
def test_reasoning_eval_texts_match_eval_reasoning_and_reasonseg_dataset():
    path = "eval/eval_reasoning_segmentation.py"
    f = _function(path, "prepare_message")
    assert _assigned(f, "sys") == [release.SYSTEM_EVAL]
    content = _user_content(f)
    assert _order(content) == ["image", "text"]
    assert isinstance(_user_text(content), ast.Subscript)  # expr[0]: the templated query, nothing added
    tree = _tree("eval/datasets/ReasonSeg_Dataset.py")
    lists = {
        n.targets[0].id: ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign)
        and isinstance(n.targets[0], ast.Name)
        and n.targets[0].id.endswith("_LIST")
    }
    assert lists == {
        "SHORT_QUESTION_LIST": [release.REASONING_PHRASE],
        "LONG_QUESTION_LIST": [release.REASONING_SENTENCE],
    }
    source = (REFERENCE / "eval/datasets/ReasonSeg_Dataset.py").read_text(encoding="utf-8")
    assert "format(sent=text)" in source and "format(class_name=text.lower())" in source
    style = get_style("seg-r1")
    assert (
        style.user("reasoning", "What holds water?", query_kind="sentence")
        == "What holds water? Identify and segment it."
    )
    assert style.user("reasoning", "The Red Cup", query_kind="phrase") == " Identify and segment the red cup."
    assert _generate_budgets(path) == {style.max_new_tokens("reasoning")} == {512}
    assert _resize_size(path) == style.frame("reasoning") == 1024


@needs_reference
def test_demo_texts_match_seg_r1_web_demo_py():
    path = "demo/seg_r1_web_demo.py"
    f = _function(path, "prepare_test_messages")
    assert _assigned(f, "SYSTEM_PROMPT") == [release.SYSTEM_EVAL, release.SYSTEM_DEMO_PLAIN]
    (branch,) = [n for n in ast.walk(f) if isinstance(n, ast.If)]
    words = [c.left.value for c in ast.walk(branch.test) if isinstance(c, ast.Compare)]
    assert tuple(words) == release.DEMO_SEGMENT_WORDS
    content = _user_content(f)
    assert _order(content) == ["image", "text"]
    assert getattr(_user_text(content), "id", None) == "prompt"  # the typed text, verbatim
    style = get_style("seg-r1")
    assert style.user("referring", "find the cat", stage="demo") == "find the cat"
    assert style.system("referring", "demo", "find the cat") == release.SYSTEM_DEMO_PLAIN
    assert style.system("referring", "demo", "segment the cat") == release.SYSTEM_EVAL
    assert style.system("reasoning", "demo", "mask what holds water") == release.SYSTEM_EVAL
    assert style.system("foreground", "demo", "Segment it") == release.SYSTEM_DEMO_PLAIN  # case-sensitive
    assert (
        _generate_budgets(path)
        == {style.max_new_tokens(t, "demo") for t in ("foreground", "referring")}
        == {1024}
    )
    assert _resize_size(path) == style.frame("foreground", "demo") == style.frame("referring", "demo") == 1024


# ------------------------------------------------------------------------------------------ golden hashes


def _sha(text: str | None) -> str:
    return hashlib.sha256(repr(text).encode()).hexdigest()[:16]


def _cases():
    for style in STYLES:
        for task in TASKS:
            for stage in STAGES:
                kinds = ("sentence", "phrase") if task == "reasoning" else (None,)
                for kind in kinds:
                    yield style, task, stage, kind


def _rendered(processor, style_name, task, stage, kind):
    style = get_style(style_name)
    text = {"referring": "the dog on the left.", "reasoning": "What Holds Water?"}.get(task)
    user = style.user(task, text, frame=style.frame(task, stage), stage=stage, query_kind=kind)
    system = style.system(task, stage, user)
    messages = style.messages(None, user, system, stage=stage)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@pytest.fixture(scope="module")
def processor():
    from transformers import AutoProcessor

    from segr1.policies.tiny import tiny_model_dir

    return AutoProcessor.from_pretrained(tiny_model_dir())


def test_golden_hashes_of_every_rendered_chat_template(processor):
    got = {
        f"{style}/{task}/{stage}/{kind}": _sha(_rendered(processor, style, task, stage, kind))
        for style, task, stage, kind in _cases()
    }
    assert got == GOLDEN_RENDERED


def test_golden_hashes_of_the_style_strings():
    strings = {
        name: _sha(getattr(module, name))
        for module, names in (
            (
                own,
                (
                    "SYSTEM_PROMPT",
                    "BOX_FORMAT",
                    "POINTS_FORMAT",
                    "_FRAME_NOTE",
                    "_BOX_RULES",
                    "_POINTS_RULES",
                ),
            ),
            (
                release,
                (
                    "SYSTEM_TRAIN",
                    "SYSTEM_EVAL",
                    "SYSTEM_SFT",
                    "SYSTEM_DEMO_PLAIN",
                    "USER_FOREGROUND_TRAIN",
                    "USER_FOREGROUND_EVAL",
                    "USER_PRERL",
                    "REFERRING_PREFIX",
                    "REASONING_SENTENCE",
                    "REASONING_PHRASE",
                ),
            ),
        )  # fmt: skip
        for name in names
    }
    strings["segr1._TASK_LINES"] = _sha(repr(sorted(own._TASK_LINES.items())))
    assert strings == GOLDEN_STRINGS


def test_default_frames_and_budgets():
    """The budgets and frames each style defaults to (changing one must be deliberate)."""
    table = {
        name: {(task, stage): (STYLES[name].frame(task, stage), STYLES[name].max_new_tokens(task, stage))
               for task in TASKS for stage in STAGES}
        for name in STYLES
    }  # fmt: skip
    for stage in STAGES:
        assert table["segr1"][("foreground", stage)] == (768, 256)
        assert table["segr1"][("prerl", stage)] == (768, 256)
        assert table["segr1"][("referring", stage)] == (1024, 256)
        assert table["segr1"][("reasoning", stage)] == (1024, 256)
    r = table["seg-r1"]
    assert [r[(t, "eval")] for t in TASKS] == [(768, 1024), (1024, 512), (1024, 512), (768, 256)]
    assert [r[(t, "demo")] for t in TASKS] == [(1024, 1024)] * 4
    assert [r[(t, "train")] for t in TASKS] == [(768, 400), (1024, 400), (1024, 400), (768, 256)]


# ------------------------------------------------------------------------------------------- behaviour


def test_which_style_a_checkpoint_gets():
    assert style_for(None).name == "seg-r1"  # a hub id: no segr1_policy.json
    assert style_for({}).name == "seg-r1"
    assert style_for({"frame": 448, "trained": True}).name == "seg-r1"  # a folder that records no style
    assert style_for({"prompt_style": "segr1"}).name == "segr1"
    assert style_for({"prompt_style": "seg-r1"}).name == "seg-r1"
    assert style_for({"format": "segr1-policy"}).name == "segr1"  # segr1's own tiny checkpoints
    legacy = {
        "frame": 224,
        "stage": "sft",
        "segr1_args": {"task": "foreground"},
    }  # an older segr1 train output
    assert style_for(legacy).name == "segr1"
    assert style_for({"prompt_style": "segr1"}, override="seg-r1").name == "seg-r1"
    assert style_for({}, override=get_style("segr1")).name == "segr1"
    with pytest.raises(ValueError, match="known styles"):
        style_for({"prompt_style": "nope"})
    with pytest.raises(ValueError, match="known styles"):
        get_style("Seg_R1")


def test_the_embedded_policy_records_the_segr1_style():
    from segr1.policies import SHIPPED_POLICY_DIR, read_policy_metadata, shipped_policy_available

    if not shipped_policy_available():
        pytest.skip("no trained policy shipped")
    meta = read_policy_metadata(SHIPPED_POLICY_DIR)
    assert meta["prompt_style"] == "segr1" and style_for(meta).name == "segr1"


def test_segr1_style_is_the_legacy_prompts_module():
    from segr1 import prompts

    style = get_style("segr1")
    for task in TASKS:
        text = "the red car." if task in ("referring", "reasoning") else None
        for stage in STAGES:
            assert style.user(task, text, frame=448, stage=stage) == prompts.build_instruction(
                task, text, 448
            )
            assert style.system(task, stage) == prompts.system_prompt(task)
        assert style.messages("IMG", "hi", "sys") == prompts.build_messages("IMG", "hi", "sys")


def test_inference_messages_match_what_the_policy_backends_build():
    """The policy backends build messages with prompts.build_messages, in the order the style's ``image_first``
    says (the pipeline passes it); every style agrees with them at eval and demo."""
    from segr1.prompts import build_messages

    for style in STYLES.values():
        first = getattr(style, "image_first", True)
        assert first is (style.name not in ("segr1-text-first", "segr1-phrase-image", "segr1-task-line"))
        for stage in ("eval", "demo"):
            want = build_messages("IMG", "text", "sys", image_first=first)
            assert style.messages("IMG", "text", "sys", stage=stage) == want


@pytest.mark.parametrize("name", list(STYLES))
def test_text_tasks_need_text_and_bad_arguments_raise(name):
    style = get_style(name)
    for task in ("referring", "reasoning"):
        with pytest.raises(ValueError, match="needs text"):
            style.user(task, "   ")
    with pytest.raises(ValueError, match="unknown task"):
        style.user("detect")
    with pytest.raises(ValueError, match="unknown stage"):
        style.system("foreground", "test")
    with pytest.raises(TypeError):
        style.user("referring", 3)  # type: ignore[arg-type]


def test_seg_r1_texts_ignore_the_frame_and_keep_the_text_as_given():
    style = get_style("seg-r1")
    assert style.user("foreground", frame=224) == release.USER_FOREGROUND_EVAL
    assert style.user("foreground", "a camouflaged animal") == release.USER_FOREGROUND_EVAL  # no slot for it
    assert (
        style.user("referring", "  the dog\n") == "Identify and segment   the dog\n"
    )  # verbatim, as the release
    assert (
        style.user("reasoning", "Q?") == "Q? Identify and segment it."
    )  # unknown kind: the sentence template
    with pytest.raises(ValueError, match="query_kind"):
        style.user("reasoning", "Q?", query_kind="question")
    assert style.user("foreground", stage="demo") == release.USER_FOREGROUND_EVAL  # demo without a typed text


GOLDEN_STRINGS: dict[str, str] = {
    "SYSTEM_PROMPT": "b4cf55e398f9f918",
    "BOX_FORMAT": "7139cce847574177",
    "POINTS_FORMAT": "51f679cdb4368e16",
    "_FRAME_NOTE": "c2691653b344a6d2",
    "_BOX_RULES": "92bb87cc7aa26fcf",
    "_POINTS_RULES": "325e3eb6f4b700a5",
    "SYSTEM_TRAIN": "01ec35a81d3f4317",
    "SYSTEM_EVAL": "a1baf53e315ef6d5",
    "SYSTEM_SFT": "d16360ea38a6cfe9",
    "SYSTEM_DEMO_PLAIN": "f01bdcec0500c941",
    "USER_FOREGROUND_TRAIN": "f991dded4d4429ed",
    "USER_FOREGROUND_EVAL": "8b269d2207c66d18",
    "USER_PRERL": "25210b03c83fed30",
    "REFERRING_PREFIX": "d26663055cfe1d44",
    "REASONING_SENTENCE": "aa755fc92591c6b2",
    "REASONING_PHRASE": "ca66e971c21de128",
    "segr1._TASK_LINES": "27fa865c92a9e77a",
}
GOLDEN_RENDERED: dict[str, str] = {
    "segr1/foreground/train/None": "2f9e629aa68ae913",
    "segr1/foreground/eval/None": "2f9e629aa68ae913",
    "segr1/foreground/demo/None": "2f9e629aa68ae913",
    "segr1/foreground/sft/None": "2f9e629aa68ae913",
    "segr1/referring/train/None": "da3e0c5c53da2920",
    "segr1/referring/eval/None": "da3e0c5c53da2920",
    "segr1/referring/demo/None": "da3e0c5c53da2920",
    "segr1/referring/sft/None": "da3e0c5c53da2920",
    "segr1/reasoning/train/sentence": "f6cb24934f66bec0",
    "segr1/reasoning/train/phrase": "f6cb24934f66bec0",
    "segr1/reasoning/eval/sentence": "f6cb24934f66bec0",
    "segr1/reasoning/eval/phrase": "f6cb24934f66bec0",
    "segr1/reasoning/demo/sentence": "f6cb24934f66bec0",
    "segr1/reasoning/demo/phrase": "f6cb24934f66bec0",
    "segr1/reasoning/sft/sentence": "f6cb24934f66bec0",
    "segr1/reasoning/sft/phrase": "f6cb24934f66bec0",
    "segr1/prerl/train/None": "d29e5e569de7053e",
    "segr1/prerl/eval/None": "d29e5e569de7053e",
    "segr1/prerl/demo/None": "d29e5e569de7053e",
    "segr1/prerl/sft/None": "d29e5e569de7053e",
    "segr1-text-first/foreground/train/None": "bea66bf9769e47f1",
    "segr1-text-first/foreground/eval/None": "bea66bf9769e47f1",
    "segr1-text-first/foreground/demo/None": "bea66bf9769e47f1",
    "segr1-text-first/foreground/sft/None": "bea66bf9769e47f1",
    "segr1-text-first/referring/train/None": "995161ce02d8f908",
    "segr1-text-first/referring/eval/None": "995161ce02d8f908",
    "segr1-text-first/referring/demo/None": "995161ce02d8f908",
    "segr1-text-first/referring/sft/None": "995161ce02d8f908",
    "segr1-text-first/reasoning/train/sentence": "09bf86a365cc16e7",
    "segr1-text-first/reasoning/train/phrase": "09bf86a365cc16e7",
    "segr1-text-first/reasoning/eval/sentence": "09bf86a365cc16e7",
    "segr1-text-first/reasoning/eval/phrase": "09bf86a365cc16e7",
    "segr1-text-first/reasoning/demo/sentence": "09bf86a365cc16e7",
    "segr1-text-first/reasoning/demo/phrase": "09bf86a365cc16e7",
    "segr1-text-first/reasoning/sft/sentence": "09bf86a365cc16e7",
    "segr1-text-first/reasoning/sft/phrase": "09bf86a365cc16e7",
    "segr1-text-first/prerl/train/None": "f04ba5861b697d32",
    "segr1-text-first/prerl/eval/None": "f04ba5861b697d32",
    "segr1-text-first/prerl/demo/None": "f04ba5861b697d32",
    "segr1-text-first/prerl/sft/None": "f04ba5861b697d32",
    "segr1-phrase-last/foreground/train/None": "11d68db2537d5dd4",
    "segr1-phrase-last/foreground/eval/None": "11d68db2537d5dd4",
    "segr1-phrase-last/foreground/demo/None": "11d68db2537d5dd4",
    "segr1-phrase-last/foreground/sft/None": "11d68db2537d5dd4",
    "segr1-phrase-last/referring/train/None": "4d5f729c15dd5bb7",
    "segr1-phrase-last/referring/eval/None": "4d5f729c15dd5bb7",
    "segr1-phrase-last/referring/demo/None": "4d5f729c15dd5bb7",
    "segr1-phrase-last/referring/sft/None": "4d5f729c15dd5bb7",
    "segr1-phrase-last/reasoning/train/sentence": "2f673e34773c57a4",
    "segr1-phrase-last/reasoning/train/phrase": "2f673e34773c57a4",
    "segr1-phrase-last/reasoning/eval/sentence": "2f673e34773c57a4",
    "segr1-phrase-last/reasoning/eval/phrase": "2f673e34773c57a4",
    "segr1-phrase-last/reasoning/demo/sentence": "2f673e34773c57a4",
    "segr1-phrase-last/reasoning/demo/phrase": "2f673e34773c57a4",
    "segr1-phrase-last/reasoning/sft/sentence": "2f673e34773c57a4",
    "segr1-phrase-last/reasoning/sft/phrase": "2f673e34773c57a4",
    "segr1-phrase-last/prerl/train/None": "ffb02421ddc649cc",
    "segr1-phrase-last/prerl/eval/None": "ffb02421ddc649cc",
    "segr1-phrase-last/prerl/demo/None": "ffb02421ddc649cc",
    "segr1-phrase-last/prerl/sft/None": "ffb02421ddc649cc",
    "segr1-phrase-image/foreground/train/None": "99553fdf5c2e36cc",
    "segr1-phrase-image/foreground/eval/None": "99553fdf5c2e36cc",
    "segr1-phrase-image/foreground/demo/None": "99553fdf5c2e36cc",
    "segr1-phrase-image/foreground/sft/None": "99553fdf5c2e36cc",
    "segr1-phrase-image/referring/train/None": "bdda0929b1cc688f",
    "segr1-phrase-image/referring/eval/None": "bdda0929b1cc688f",
    "segr1-phrase-image/referring/demo/None": "bdda0929b1cc688f",
    "segr1-phrase-image/referring/sft/None": "bdda0929b1cc688f",
    "segr1-phrase-image/reasoning/train/sentence": "747c67c524d614e0",
    "segr1-phrase-image/reasoning/train/phrase": "747c67c524d614e0",
    "segr1-phrase-image/reasoning/eval/sentence": "747c67c524d614e0",
    "segr1-phrase-image/reasoning/eval/phrase": "747c67c524d614e0",
    "segr1-phrase-image/reasoning/demo/sentence": "747c67c524d614e0",
    "segr1-phrase-image/reasoning/demo/phrase": "747c67c524d614e0",
    "segr1-phrase-image/reasoning/sft/sentence": "747c67c524d614e0",
    "segr1-phrase-image/reasoning/sft/phrase": "747c67c524d614e0",
    "segr1-phrase-image/prerl/train/None": "5c7610471d67cfec",
    "segr1-phrase-image/prerl/eval/None": "5c7610471d67cfec",
    "segr1-phrase-image/prerl/demo/None": "5c7610471d67cfec",
    "segr1-phrase-image/prerl/sft/None": "5c7610471d67cfec",
    "segr1-task-line/foreground/train/None": "413c3a29fc442436",
    "segr1-task-line/foreground/eval/None": "413c3a29fc442436",
    "segr1-task-line/foreground/demo/None": "413c3a29fc442436",
    "segr1-task-line/foreground/sft/None": "413c3a29fc442436",
    "segr1-task-line/referring/train/None": "a86faaba01b601aa",
    "segr1-task-line/referring/eval/None": "a86faaba01b601aa",
    "segr1-task-line/referring/demo/None": "a86faaba01b601aa",
    "segr1-task-line/referring/sft/None": "a86faaba01b601aa",
    "segr1-task-line/reasoning/train/sentence": "c97b206b41b9f39e",
    "segr1-task-line/reasoning/train/phrase": "c97b206b41b9f39e",
    "segr1-task-line/reasoning/eval/sentence": "c97b206b41b9f39e",
    "segr1-task-line/reasoning/eval/phrase": "c97b206b41b9f39e",
    "segr1-task-line/reasoning/demo/sentence": "c97b206b41b9f39e",
    "segr1-task-line/reasoning/demo/phrase": "c97b206b41b9f39e",
    "segr1-task-line/reasoning/sft/sentence": "c97b206b41b9f39e",
    "segr1-task-line/reasoning/sft/phrase": "c97b206b41b9f39e",
    "segr1-task-line/prerl/train/None": "415d1cd7c234eb7a",
    "segr1-task-line/prerl/eval/None": "415d1cd7c234eb7a",
    "segr1-task-line/prerl/demo/None": "415d1cd7c234eb7a",
    "segr1-task-line/prerl/sft/None": "415d1cd7c234eb7a",
    "seg-r1/foreground/train/None": "a186f0424505b6a8",
    "seg-r1/foreground/eval/None": "71fb16914e1c752e",
    "seg-r1/foreground/demo/None": "71fb16914e1c752e",
    "seg-r1/foreground/sft/None": "28326a26ec541b60",
    "seg-r1/referring/train/None": "219e8cfaa788ce3f",
    "seg-r1/referring/eval/None": "d5f88281928f1e37",
    "seg-r1/referring/demo/None": "3ef11be6b1d4e9bb",
    "seg-r1/referring/sft/None": "59bd9152468ba34d",
    "seg-r1/reasoning/train/sentence": "9086a30758b69e56",
    "seg-r1/reasoning/train/phrase": "a33c0c8ed5ea4981",
    "seg-r1/reasoning/eval/sentence": "cfe41fb4b2bc8a45",
    "seg-r1/reasoning/eval/phrase": "c396fbbe4e50cc8e",
    "seg-r1/reasoning/demo/sentence": "97cb0e0a5d0cdcf4",
    "seg-r1/reasoning/demo/phrase": "97cb0e0a5d0cdcf4",
    "seg-r1/reasoning/sft/sentence": "72f196bc036d9150",
    "seg-r1/reasoning/sft/phrase": "343158a55ae1e116",
    "seg-r1/prerl/train/None": "0e5226575ad3f76c",
    "seg-r1/prerl/eval/None": "0e5226575ad3f76c",
    "seg-r1/prerl/demo/None": "0e5226575ad3f76c",
    "seg-r1/prerl/sft/None": "88e8b013a4df704d",
    # the Seg-Zero and VisionReasoner styles (their templates; no system turn at inference)
    "seg-zero/foreground/train/None": "3c3508215b2e1209",
    "seg-zero/foreground/eval/None": "3c3508215b2e1209",
    "seg-zero/foreground/demo/None": "3c3508215b2e1209",
    "seg-zero/foreground/sft/None": "3c3508215b2e1209",
    "seg-zero/referring/train/None": "5fee4be10abcfe2e",
    "seg-zero/referring/eval/None": "5fee4be10abcfe2e",
    "seg-zero/referring/demo/None": "5fee4be10abcfe2e",
    "seg-zero/referring/sft/None": "5fee4be10abcfe2e",
    "seg-zero/reasoning/train/sentence": "0dd54362044dda86",
    "seg-zero/reasoning/train/phrase": "0dd54362044dda86",
    "seg-zero/reasoning/eval/sentence": "0dd54362044dda86",
    "seg-zero/reasoning/eval/phrase": "0dd54362044dda86",
    "seg-zero/reasoning/demo/sentence": "0dd54362044dda86",
    "seg-zero/reasoning/demo/phrase": "0dd54362044dda86",
    "seg-zero/reasoning/sft/sentence": "0dd54362044dda86",
    "seg-zero/reasoning/sft/phrase": "0dd54362044dda86",
    "seg-zero/prerl/train/None": "3c3508215b2e1209",
    "seg-zero/prerl/eval/None": "3c3508215b2e1209",
    "seg-zero/prerl/demo/None": "3c3508215b2e1209",
    "seg-zero/prerl/sft/None": "3c3508215b2e1209",
    "vision-reasoner/foreground/train/None": "06f02c7d5c462d0f",
    "vision-reasoner/foreground/eval/None": "51c4eee79fe5d8c8",
    "vision-reasoner/foreground/demo/None": "51c4eee79fe5d8c8",
    "vision-reasoner/foreground/sft/None": "06f02c7d5c462d0f",
    "vision-reasoner/referring/train/None": "430978527667f600",
    "vision-reasoner/referring/eval/None": "85c7860113bd2579",
    "vision-reasoner/referring/demo/None": "85c7860113bd2579",
    "vision-reasoner/referring/sft/None": "430978527667f600",
    "vision-reasoner/reasoning/train/sentence": "538103d1d4c8d67a",
    "vision-reasoner/reasoning/train/phrase": "538103d1d4c8d67a",
    "vision-reasoner/reasoning/eval/sentence": "4cfcc453f1e25144",
    "vision-reasoner/reasoning/eval/phrase": "4cfcc453f1e25144",
    "vision-reasoner/reasoning/demo/sentence": "4cfcc453f1e25144",
    "vision-reasoner/reasoning/demo/phrase": "4cfcc453f1e25144",
    "vision-reasoner/reasoning/sft/sentence": "538103d1d4c8d67a",
    "vision-reasoner/reasoning/sft/phrase": "538103d1d4c8d67a",
    "vision-reasoner/prerl/train/None": "06f02c7d5c462d0f",
    "vision-reasoner/prerl/eval/None": "51c4eee79fe5d8c8",
    "vision-reasoner/prerl/demo/None": "51c4eee79fe5d8c8",
    "vision-reasoner/prerl/sft/None": "06f02c7d5c462d0f",
}


def test_the_text_first_style_is_segr1_with_the_two_blocks_swapped(processor):
    """``segr1-text-first`` writes segr1's strings character for character; only the user turn's order differs,
    and only the order: the image placeholder moves from before the text to after it."""
    own, text_first = get_style("segr1"), get_style("segr1-text-first")
    assert text_first.image_first is False and getattr(own, "image_first", True) is True
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    for task, stage, kind in {(t, s, k) for _, t, s, k in _cases()}:
        assert text_first.user(task, "the red one", stage=stage, query_kind=kind) == own.user(
            task, "the red one", stage=stage, query_kind=kind
        )
        assert text_first.system(task, stage) == own.system(task, stage)
        a = _rendered(processor, "segr1", task, stage, kind)
        b = _rendered(processor, "segr1-text-first", task, stage, kind)
        assert a != b and a.count(image) == b.count(image) == 1
        user = own.user(task, {"referring": "the dog on the left.", "reasoning": "What Holds Water?"}.get(task),
                        frame=own.frame(task, stage), stage=stage, query_kind=kind)  # fmt: skip
        assert a.replace(image + user, user + image) == b


def test_the_phrase_last_style_is_segr1_with_the_task_line_moved_to_the_end():
    """``segr1-phrase-last`` writes segr1's lines character for character; only the task line moves, from first
    to last, so that the phrase ends the prompt. System turn and message order are segr1's."""
    from segr1.styles.segr1 import _TASK_LINES

    own, last = get_style("segr1"), get_style("segr1-phrase-last")
    assert getattr(last, "image_first", True) is True
    for task in TASKS:
        text = {"referring": "the red star on the left", "reasoning": "Which one is largest?"}.get(task)
        block = _TASK_LINES[task].format(text=text)
        theirs = own.user(task, text, frame=224)
        rest = theirs.removeprefix(block + "\n")
        assert rest != theirs and last.user(task, text, frame=224) == rest + "\n" + block
        assert last.system(task) == own.system(task)
    assert last.user("referring", "the red star", frame=224).endswith("\nIdentify and segment the red star.")


def test_the_phrase_image_style_is_phrase_last_text_then_the_image(processor):
    """``segr1-phrase-image``: the phrase-last instruction, then the image (so the phrase, the image and the
    answer are a few rotary positions apart)."""
    pl, pi = get_style("segr1-phrase-last"), get_style("segr1-phrase-image")
    assert pi.image_first is False
    for task in TASKS:
        text = {"referring": "the red star", "reasoning": "Which one is largest?"}.get(task)
        assert pi.user(task, text, frame=224) == pl.user(task, text, frame=224)
        assert pi.messages(None, "u", None) == [{"role": "user", "content": [{"type": "text", "text": "u"},
                                                                           {"type": "image"}]}]  # fmt: skip
    rendered = _rendered(processor, "segr1-phrase-image", "referring", "eval", None)
    assert "Identify and segment the dog on the left.<|vision_start|><|image_pad|><|vision_end|>" in rendered
