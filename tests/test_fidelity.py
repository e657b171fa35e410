"""Running a released checkpoint the way the release does: the pipeline asks the checkpoint's prompt style and
answer format, applies the protocol switches, reports truncated answers, and the commands pick the release's
defaults (SAM2.1-hiera-large, 1024 / 512 new tokens) for any policy but the embedded one."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from segr1.pipeline import ERROR_TRUNCATED, ERROR_UNPARSABLE, SegR1Pipeline
from segr1.policies import Generation
from segr1.styles import seg_r1 as release
from segr1.styles import segr1 as own

BOX = (
    "<think>x</think> <bbox>[10,10,60,60]</bbox>, <points>[[20,20],[90,90]]</points>, <labels>[1,0]</labels>"
)


class Recorder:
    """A policy that records what it is asked and answers ``answer`` (optionally flagged as truncated)."""

    name = "recorder"

    def __init__(self, answer: str = BOX, *, truncated: bool = False, metadata: dict | None = None) -> None:
        self.answer, self.cut = answer, truncated
        self.metadata = metadata or {}
        self.frame = None
        self.calls: list[dict] = []

    def generate_detailed(
        self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None
    ):
        self.calls.append({"sizes": [im.size for im in images], "instructions": list(instructions),
                           "system": system, "max_new_tokens": max_new_tokens})  # fmt: skip
        n = len(images)
        return Generation(texts=[[self.answer] * num_samples] * n, truncated=[[self.cut] * num_samples] * n)

    def generate(self, images, instructions, **kwargs):
        return self.generate_detailed(images, instructions, **kwargs).texts


class SpySegmenter:
    """Returns the union of the prompt's boxes; records the images and prompts it was given."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[tuple[np.ndarray, list]] = []

    def segment(self, image, prompts):
        arr = np.asarray(image)
        self.seen.append((arr.copy(), list(prompts)))
        h, w = arr.shape[:2]
        masks = []
        for p in prompts:
            m = np.zeros((h, w), bool)
            for x1, y1, x2, y2 in p.boxes:
                m[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1] = True
            masks.append(m)
        return masks


IMAGE = (np.arange(120 * 160 * 3) % 251).astype(np.uint8).reshape(120, 160, 3)


# ------------------------------------------------------------------------------------- styles and budgets


def test_an_unrecorded_checkpoint_is_prompted_like_the_release():
    policy = Recorder()
    for task, text, budget, frame in (
        ("foreground", None, 1024, 768),
        ("referring", "the dog", 512, 1024),
        ("reasoning", "What holds water?", 512, 1024),
    ):
        pipe = SegR1Pipeline(policy, SpySegmenter(), task=task)
        assert (pipe.style.name, pipe.max_new_tokens, pipe.frame) == ("seg-r1", budget, frame)
        pipe(IMAGE, text)
        call = policy.calls[-1]
        assert call["system"] == release.SYSTEM_EVAL and call["max_new_tokens"] == budget
        assert call["sizes"] == [(frame, frame)]
    assert policy.calls[0]["instructions"] == [release.USER_FOREGROUND_EVAL]
    assert policy.calls[1]["instructions"] == ["Identify and segment the dog"]
    assert policy.calls[2]["instructions"] == ["What holds water? Identify and segment it."]


def test_a_segr1_checkpoint_keeps_its_own_texts_budget_and_no_system_turn():
    policy = Recorder(metadata={"prompt_style": "segr1", "system_prompt": None})
    pipe = SegR1Pipeline(policy, SpySegmenter(), frame=224)
    pipe(IMAGE)
    assert pipe.max_new_tokens == 256 and policy.calls[0]["system"] is None
    assert policy.calls[0]["instructions"] == [own.build_instruction("foreground", None, 224)]
    assert SegR1Pipeline(policy, SpySegmenter(), prompt_style="seg-r1").max_new_tokens == 1024  # override


def test_reasonseg_query_kinds_reach_the_template():
    policy = Recorder()
    pipe = SegR1Pipeline(policy, SpySegmenter(), task="reasoning", batch_size=4)
    pipe([IMAGE, IMAGE], ["The Cup", "What holds water?"], ["phrase", "sentence"])
    assert policy.calls[0]["instructions"] == [
        " Identify and segment the cup.",
        "What holds water? Identify and segment it.",
    ]
    with pytest.raises(ValueError, match="query kinds"):
        pipe([IMAGE], ["a"], ["phrase", "phrase"])


def test_release_demo_stage_switches_the_system_turn_per_text():
    policy = Recorder()
    pipe = SegR1Pipeline(
        policy, SpySegmenter(), task="referring", stage="demo", protocol="seg-r1", batch_size=4
    )
    assert (pipe.frame, pipe.max_new_tokens) == (1024, 1024)
    pipe([IMAGE, IMAGE, IMAGE], ["segment the dog", "the cat", "mask the cup"])
    # one policy call per distinct system turn, each with the typed texts verbatim
    assert [(c["system"], c["instructions"]) for c in policy.calls] == [
        (release.SYSTEM_EVAL, ["segment the dog", "mask the cup"]),
        (release.SYSTEM_DEMO_PLAIN, ["the cat"]),
    ]
    assert (
        policy.calls[0]["sizes"] == [(1036, 1036)] * 2
    )  # the demo's 1024 frame after qwen-vl-utils rounding
    with pytest.raises(ValueError, match="stage"):
        SegR1Pipeline(policy, SpySegmenter(), stage="train")


# ---------------------------------------------------------------------------------------- truncation


def test_a_truncated_answer_is_reported_as_truncated():
    cut = SegR1Pipeline(
        Recorder("<think>the object is in the upper left and its", truncated=True), SpySegmenter()
    )
    result = cut(IMAGE)
    assert result.error == ERROR_TRUNCATED and result.truncated and result.to_dict()["truncated"] is True
    plain = SegR1Pipeline(Recorder("I cannot help with that."), SpySegmenter())(IMAGE)
    assert plain.error == ERROR_UNPARSABLE and not plain.truncated
    # cut off after a usable box: segmented, flagged
    partial = SegR1Pipeline(
        Recorder("<think>a</think> <bbox>[1,1,50,50]</bbox>, <points>[[3,", truncated=True), SpySegmenter()
    )
    result = partial(IMAGE)
    assert result.error is None and result.truncated


def test_a_policy_without_generate_detailed_still_works():
    class Plain:
        name = "plain"

        def generate(
            self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None
        ):
            return [[""] * num_samples for _ in images]

    result = SegR1Pipeline(Plain(), SpySegmenter())(IMAGE)
    assert result.error == ERROR_UNPARSABLE and not result.truncated


def test_hf_policy_reports_budget_hits(tmp_path):
    from segr1.policies import load_policy
    from segr1.policies.tiny import tiny_model_dir

    policy = load_policy(str(tiny_model_dir()), device="cpu")
    image = Image.new("RGB", (224, 224), (120, 30, 30))
    short = policy.generate_detailed([image, image], ["a", "b"], max_new_tokens=2)
    assert short.truncated == [[True], [True]]  # an untrained model does not stop within 2 tokens
    assert short.texts == policy.generate([image, image], ["a", "b"], max_new_tokens=2)
    policy.generate_kwargs["eos_token_id"] = policy._eos_token_ids + list(
        range(len(policy.processor.tokenizer))
    )
    assert policy.generate_detailed([image], ["a"], max_new_tokens=4).truncated == [
        [False]
    ]  # stopped at once


# ---------------------------------------------------------------------------------- protocol in the pipeline


def test_release_answer_rules_reach_the_segmenter():
    seg = SpySegmenter()
    answer = "<think>x</think> <bbox>[10,10,60,60]</bbox> <bbox>[100,10,150,60]</bbox>, <points>[[20,20],[120,20]]</points>, <labels>[1,1]</labels>"
    SegR1Pipeline(Recorder(answer), seg, task="reasoning", frame=160, protocol="seg-r1")(IMAGE, "q")
    (prompt,) = seg.seen[-1][1]
    assert prompt.boxes.shape == (1, 4) and prompt.point_assignment == "all" and prompt.points.shape == (2, 2)
    SegR1Pipeline(Recorder(answer), seg, task="reasoning", frame=160)(IMAGE, "q")
    # segr1: every box, each an object of its own (one prompt set per instance)
    assert [p.boxes.shape for p in seg.seen[-1][1]] == [(1, 4), (1, 4)]
    mismatch = BOX.replace("<labels>[1,0]", "<labels>[1]")
    SegR1Pipeline(Recorder(mismatch), seg, frame=160, protocol="seg-r1")(IMAGE)
    assert seg.seen[-1][1][0].points.shape == (0, 2) and seg.seen[-1][1][0].boxes.shape == (1, 4)


def test_ablations_feed_sam_what_the_release_fed_it():
    seg = SpySegmenter()
    base = SegR1Pipeline(Recorder(), seg, frame=80)
    base(IMAGE)
    assert np.array_equal(seg.seen[-1][0], IMAGE)  # segr1: the original RGB image
    swapped = SegR1Pipeline(Recorder(), seg, frame=80, protocol="segr1,ablation_bgr_to_sam=true")
    swapped(IMAGE)
    assert np.array_equal(seg.seen[-1][0], IMAGE[:, :, ::-1])
    framed = SegR1Pipeline(Recorder(), seg, frame=80, protocol="seg-r1,ablation_sam_on_model_frame=true")
    result = framed(IMAGE)
    sam_image, (sam_prompt,) = seg.seen[-1]
    assert sam_image.shape == (80, 80, 3) and sam_prompt.boxes.tolist() == [[10, 10, 60, 60]]  # model frame
    assert result.mask.shape == IMAGE.shape[:2] and result.mask.any()
    assert "ablation" not in str(SegR1Pipeline(Recorder(), seg, protocol="seg-r1").protocol.ablations)


# ------------------------------------------------------------------------------------ default segmenter


def test_default_segmenter_depends_on_the_policy():
    from segr1.defaults import DEFAULT_SEGMENTER, default_segmenter, is_embedded

    assert DEFAULT_SEGMENTER == "sam2-hf:facebook/sam2.1-hiera-large"
    assert [default_segmenter(m) for m in (None, "default", "hf:default")] == ["grabcut"] * 3
    assert default_segmenter("geshang/Seg-R1-7B") == DEFAULT_SEGMENTER
    assert default_segmenter("vllm:Qwen/Qwen2.5-VL-7B-Instruct") == DEFAULT_SEGMENTER
    assert not is_embedded("./no/such/folder")


def _segment_specs(monkeypatch, argv):
    from segr1.cli import main

    asked = []

    def fake(cls, model=None, segmenter=None, task="foreground", device=None, **kwargs):
        asked.append({"model": model, "segmenter": segmenter, **kwargs})
        raise ValueError("stop here")

    monkeypatch.setattr(SegR1Pipeline, "from_specs", classmethod(fake))
    assert main(argv) == 2
    return asked[0]


def test_segment_command_defaults(monkeypatch, tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(IMAGE).save(image)
    base = ["segment", str(image), "--out", str(tmp_path / "o")]
    hub = _segment_specs(monkeypatch, [*base, "--model", "geshang/Seg-R1-7B"])
    assert hub["segmenter"] == "sam2-hf:facebook/sam2.1-hiera-large" and hub["max_new_tokens"] is None
    embedded = _segment_specs(monkeypatch, base)
    assert embedded["segmenter"] == "grabcut"
    styled = _segment_specs(monkeypatch, [*base, "--prompt-style", "segr1", "--protocol", "seg-r1"])
    assert (styled["prompt_style"], styled["protocol"]) == ("segr1", "seg-r1")


def test_bad_protocol_is_a_usage_error(tmp_path, capsys):
    from segr1.cli import main

    image = tmp_path / "x.png"
    Image.fromarray(IMAGE).save(image)
    assert main(["segment", str(image), "--out", str(tmp_path / "o"), "--protocol", "seg-r1,nope=1"]) == 2
    assert "--protocol" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["segment", str(image), "--prompt-style", "qwen"])


def test_demo_command_options(monkeypatch, tmp_path):
    import segr1.app.demo as demo_mod
    from segr1.commands import demo as cmd

    loads = []
    monkeypatch.setattr(demo_mod, "load_pipelines", lambda *a, **k: loads.append((a, k)) or {})
    monkeypatch.setattr(demo_mod, "build_app", lambda *a, **k: None)
    monkeypatch.setattr(demo_mod, "launch", lambda *a, **k: None)
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    for argv, want in (
        (
            ["--model", "geshang/Seg-R1-7B"],
            ((("geshang/Seg-R1-7B", "sam2-hf:facebook/sam2.1-hiera-large")), {}),
        ),
        (
            ["--model", "m/x", "--protocol", "seg-r1"],
            ((("m/x", "sam2-hf:facebook/sam2.1-hiera-large")), {"protocol": "seg-r1", "stage": "demo"}),
        ),
        (
            ["--protocol", "segr1", "--prompt-style", "seg-r1"],
            (((None, "grabcut")), {"protocol": "segr1", "prompt_style": "seg-r1"}),
        ),
    ):
        loads.clear()
        assert cmd.run(parser.parse_args(["--examples", str(tmp_path), *argv])) == 0
        ((args, kwargs),) = loads
        kwargs.pop("device")
        assert (args, kwargs) == want
