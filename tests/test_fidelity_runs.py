"""The release protocol in the long-running commands: `segr1 eval --protocol seg-r1` (which samples, how they
are scored), `segr1 train` with prompt styles and FCoT (what the model is trained on and what the checkpoint
records), and the backend switches (vLLM's repetition penalty, SAM2's single-point mask)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fakedata as fd
from segr1.cli import main
from segr1.styles import seg_r1 as release

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FAST = ["--batch-size", "2", "--no-progress"]


@pytest.fixture
def red_box(monkeypatch):
    """`segr1 eval` with RedBoxPolicy + GrabCut (protocol and prompt style passed through)."""
    import segr1.commands.eval as eval_command

    def build(task, model, segmenter, *, frame, max_new_tokens, batch_size, device, **kwargs):
        return fd.red_box_pipeline(task, frame or 224, batch_size, **kwargs)

    monkeypatch.setattr(eval_command, "build_pipeline", build)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


# ------------------------------------------------------------------------------------------------- eval


def test_refcoco_one_sentence_per_image_with_a_fixed_seed(tmp_path, red_box):
    fd.write_refcoco(tmp_path / "data")
    base = ["eval", "referring", "--dataset", "refcoco", "--data-root", str(tmp_path / "data"), *FAST]
    assert main([*base, "--out", str(tmp_path / "all")]) == 0
    assert _metrics(tmp_path / "all")["n_total"] == 5  # segr1: every sentence
    assert _metrics(tmp_path / "all")["settings"]["protocol"] == "segr1"
    runs = []
    for name in ("a", "b"):
        assert main([*base, "--out", str(tmp_path / name), "--protocol", "seg-r1"]) == 0
        runs.append([r["id"] for r in _records(tmp_path / name)])
    assert runs[0] == runs[1] and len(runs[0]) == 2  # one per image, the same draw every time
    assert {i.split("_")[0] for i in runs[0]} <= {"0", "1", "2", "3"}
    doc = _metrics(tmp_path / "a")
    assert doc["n_total"] == 2 and doc["settings"]["protocol"].startswith("seg-r1")
    seeds = set()
    for seed in range(8):
        out = tmp_path / f"s{seed}"
        assert (
            main(
                [
                    *base,
                    "--out",
                    str(out),
                    "--protocol",
                    f"segr1,refcoco_sentences=one_per_image,sample_seed={seed}",
                ]
            )
            == 0
        )
        seeds.add(tuple(r["id"] for r in _records(out)))
    assert len(seeds) > 1  # the seed decides the draw


def test_reasonseg_release_protocol_random_query_and_ignore_as_background(tmp_path, red_box):
    fd.write_reasonseg(tmp_path / "data", broken=False)
    base = ["eval", "reasoning", "--data-root", str(tmp_path / "data"), *FAST]
    assert main([*base, "--out", str(tmp_path / "own")]) == 0
    assert main([*base, "--out", str(tmp_path / "rel"), "--protocol", "seg-r1"]) == 0
    own = {r["id"]: r for r in _records(tmp_path / "own")}
    rel = {r["id"]: r for r in _records(tmp_path / "rel")}
    assert set(own) == set(rel) == {"a_table", "b_lamp"}
    # the red box covers the ignore square: excluded (segr1) it costs nothing, as background it is a false positive
    assert rel["a_table"]["union"] - own["a_table"]["union"] == 9 * 9
    assert rel["a_table"]["iou"] < own["a_table"]["iou"]
    assert rel["b_lamp"]["iou"] == own["b_lamp"]["iou"]  # no ignore region there
    texts = {r["text"] for r in _records(tmp_path / "rel")}
    assert texts <= {*fd.REASON_QUERIES.values(), "another query"}


def test_reasonseg_random_query_is_seeded():
    from segr1.data.reasonseg import _draw

    assert _draw(0, "a", 5) == _draw(0, "a", 5)
    assert len({_draw(s, "a", 5) for s in range(40)}) > 1


# ------------------------------------------------------------------------------------------------ train


def test_training_style_resolution_and_provenance(tmp_path):
    from segr1.train.common import parse_recipe, resolve_style, write_provenance
    from segr1.train.config import TINY_MODEL

    script, _, _ = parse_recipe("grpo", ["--config", str(RECIPES / "tiny" / "grpo.yaml")])
    from segr1.train.common import resolve_model

    assert resolve_style(script, resolve_model(TINY_MODEL)).name == "segr1"  # segr1's own tiny model
    assert resolve_style(script, "Qwen/Qwen2.5-VL-3B-Instruct").name == "seg-r1"  # a hub id
    script.prompt_style = "seg-r1"
    assert resolve_style(script, resolve_model(TINY_MODEL)).name == "seg-r1"
    write_provenance(
        str(tmp_path), stage="grpo", frame=224, script_args=script, model="tiny", prompt_style="seg-r1"
    )
    meta = json.loads((tmp_path / "segr1_policy.json").read_text())
    assert (meta["prompt_style"], meta["answer_format"], meta["protocol"]) == ("seg-r1", "seg-r1", "segr1")
    from segr1.styles import style_for

    assert style_for(meta).name == "seg-r1"
    for recipe in ("prerl.yaml", "rl_cod.yaml", "sod_finetune.yaml"):
        assert (
            parse_recipe("grpo", ["--config", str(RECIPES / recipe), "--bf16", "false"])[0].prompt_style
            == "seg-r1"
        )
    sft, sft_t, _ = parse_recipe("sft", ["--config", str(RECIPES / "sft.yaml"), "--bf16", "false"])
    assert sft.prompt_style == "seg-r1" and sft.train_data == [{"fcot": "geshang/FCoT"}]
    assert sft_t.completion_only_loss is False
    with pytest.raises(ValueError, match="known styles"):
        parse_recipe("grpo", ["--config", str(RECIPES / "tiny" / "grpo.yaml"), "--prompt_style", "nope"])
    with pytest.raises(ValueError, match="protocol"):
        parse_recipe("grpo", ["--config", str(RECIPES / "tiny" / "grpo.yaml"), "--protocol", "nope"])


def test_grpo_rows_in_the_release_style(tmp_path):
    from segr1.data.records import Sample
    from segr1.data.trl import to_grpo_dataset

    image = np.full((30, 40, 3), 100, np.uint8)
    mask = np.zeros((30, 40), bool)
    samples = [Sample("a", image, mask, None, "foreground")]
    row = to_grpo_dataset(samples, style="seg-r1", frame=64)[0]
    assert row["prompt"][0]["content"][0]["text"] == release.SYSTEM_TRAIN
    assert row["prompt"][1]["content"] == [
        {"type": "image"},
        {"type": "text", "text": release.USER_FOREGROUND_TRAIN},
    ]
    pre = to_grpo_dataset(samples, style="seg-r1", task="prerl", frame=64)[0]
    assert [m["role"] for m in pre["prompt"]] == ["user"] and pre["prompt"][0]["content"][1][
        "text"
    ] == release.USER_PRERL
    bilinear = to_grpo_dataset(samples, style="seg-r1", frame=64, protocol="seg-r1")[0]["image"]
    assert bilinear.size == (64, 64)  # the release's training squash (bilinear, no JPEG, no rounding)


def test_grpo_rewards_follow_the_protocol_and_style():
    from segr1.train.common import parse_recipe
    from segr1.train.grpo import build_rewards

    script, _, _ = parse_recipe("grpo", ["--config", str(RECIPES / "tiny" / "grpo.yaml"),
                                         "--reward_funcs", "segmentation", "format_points", "--task", "prerl"])  # fmt: skip
    seg, fmt = build_rewards(script, frame=224)
    assert not seg.requires_complete and seg.s_measure == "true"
    assert fmt(["<points>[[1,2]]</points> <labels>[1]</labels>"]) == [0.0]  # segr1 asks for <think>
    script.protocol = "seg-r1,ablation_area_penalty_s_measure=true"
    seg, fmt = build_rewards(script, frame=224, style="seg-r1")
    assert (
        seg.requires_complete
        and seg.s_measure == "area_penalty"
        and seg._segmenter_kwargs["dtype"] == "float32"
    )
    assert fmt(["<points>[[1,2]]</points> <labels>[1]</labels>"]) == [1.0]  # the release's pre-RL format


def test_sft_on_fcot_rows(tmp_path):
    from segr1.data.fcot import load_fcot
    from segr1.data.trl import to_sft_dataset
    from test_fcot import ROWS, write_fcot

    samples = load_fcot(write_fcot(tmp_path / "FCoT", ROWS, with_system=True), cache_dir=tmp_path / "c")
    ds = to_sft_dataset(samples, style="seg-r1", frame=64)
    first, second = ds[0], ds[1]
    assert first["prompt"][0]["content"][0]["text"] == release.SYSTEM_SFT  # the row has no system of its own
    assert second["prompt"][0]["content"][0]["text"] == "You segment things."  # the row's own
    assert first["prompt"][1]["content"] == [{"type": "text", "text": ROWS[0]["problem"]}, {"type": "image"}]
    assert first["completion"] == [
        {"role": "assistant", "content": f"{ROWS[0]['thinking']} {ROWS[0]['solution']}"}
    ]
    assert first["image"].size == (40, 30) and second["image"].size == (20, 24)  # as stored, not squashed
    own = to_sft_dataset(samples, style="segr1", frame=64)[0]
    assert own["prompt"][1]["content"][0] == {"type": "image"}  # segr1: image first
    none = to_sft_dataset(samples, style="seg-r1", frame=64, system=None)[1]
    assert [m["role"] for m in none["prompt"]] == ["user"]


def test_sft_command_trains_on_fcot_and_records_the_style(tmp_path):
    from test_fcot import ROWS, write_fcot

    root = write_fcot(tmp_path / "FCoT", ROWS * 2)
    out = tmp_path / "sft"
    argv = ["train", "sft", "--config", str(RECIPES / "tiny" / "sft.yaml"), "--train_data",
            json.dumps([{"fcot": str(root)}]), "--output_dir", str(out), "--max_steps", "1",
            "--per_device_train_batch_size", "2", "--data_cache_dir", str(tmp_path / "cache")]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((out / "segr1_policy.json").read_text())
    assert (meta["prompt_style"], meta["answer_format"], meta["stage"]) == ("segr1", "seg-r1", "sft")


# ------------------------------------------------------------------------------------------------ backends


def test_vllm_backend_uses_the_checkpoint_repetition_penalty_and_reports_truncation(monkeypatch, tmp_path):
    import shutil

    from segr1.policies.tiny import tiny_model_dir

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir(), folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 1.05}))
    seen = {}

    class SamplingParams:
        def __init__(self, **kwargs):
            seen["params"] = kwargs

    class LLM:
        def __init__(self, **kwargs):
            seen["llm"] = kwargs

        def generate(self, requests, sampling_params, use_tqdm):
            done = types.SimpleNamespace(text="<bbox>[1,2,3,4]</bbox>", finish_reason="stop")
            cut = types.SimpleNamespace(text="<bbox>[1,", finish_reason="length")
            return [types.SimpleNamespace(outputs=[done]), types.SimpleNamespace(outputs=[cut])][
                : len(requests)
            ]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    from segr1.policies.vllm_backend import VLLMPolicy

    policy = VLLMPolicy(folder)
    image = Image.new("RGB", (224, 224))
    got = policy.generate_detailed([image, image], ["a", "b"], max_new_tokens=8)
    assert seen["params"]["repetition_penalty"] == pytest.approx(1.05)
    assert got.texts == [["<bbox>[1,2,3,4]</bbox>"], ["<bbox>[1,"]] and got.truncated == [[False], [True]]
    assert VLLMPolicy(folder, repetition_penalty=1.0).repetition_penalty == 1.0


def test_sam2_single_point_mask_switch(monkeypatch, tmp_path):
    import tempfile

    from segr1.answer import SegPrompt
    from segr1.segmenters import load_segmenter
    from segr1.segmenters.sam2_hf import build_tiny_sam2

    folder = build_tiny_sam2(Path(tempfile.mkdtemp(prefix="segr1-tiny-sam2-")))
    image = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    point = [SegPrompt(points=[[30, 30]], labels=[1])]
    for flag, want in ((True, True), (False, False)):
        seg = load_segmenter(f"sam2-hf:{folder}", device="cpu", single_point_multimask=flag)
        calls = []
        forward = seg.model.forward

        def spy(*a, _forward=forward, _calls=calls, **k):
            _calls.append(k["multimask_output"])
            return _forward(*a, **k)

        monkeypatch.setattr(seg.model, "forward", spy)
        (mask,) = seg.segment(image, point)
        assert calls == [want] and mask.shape == (64, 80)
