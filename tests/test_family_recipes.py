"""The RL-segmentation family recipes: published settings through TRL's own options, and tiny CPU runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segr1.family import SEG_ZERO, VISION_REASONER
from segr1.train.callbacks import read_log
from segr1.train.common import parse_recipe
from segr1.train.grpo import build_rewards
from segr1.train.named_rewards import NAMED_REWARDS

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FAMILY_RECIPES = ("seg_zero", "vision_reasoner", "sam_r1")


def _parse(path: Path):
    import torch

    extra = [] if torch.cuda.is_available() else ["--bf16", "false"]  # GPU recipes ask for bf16
    return parse_recipe("grpo", ["--config", str(path), *extra])


def test_seg_zero_and_vision_reasoner_keep_their_published_settings():
    for name, protocol in (("seg_zero", SEG_ZERO), ("vision_reasoner", VISION_REASONER)):
        script, t, model = _parse(RECIPES / f"{name}.yaml")
        p = protocol.training
        assert model.model_name_or_path == p["base_model"]
        assert (t.num_generations, t.learning_rate, t.weight_decay, t.beta) == (
            p["rollout_n"], p["lr"], p["weight_decay"], p["kl_loss_coef"])  # fmt: skip
        assert (t.epsilon, t.temperature, t.max_grad_norm) == (p["clip_ratio"], 1.0, 1.0)
        assert t.epsilon_high in (None, t.epsilon)  # symmetric clipping
        assert (
            t.max_completion_length == protocol.max_response_length
            and t.num_train_epochs == p["total_episodes"]
        )
        assert (
            t.save_steps == p["save_freq"]
            and t.lr_scheduler_type == "constant"
            and t.scale_rewards == "group"
        )
        # 8 GPUs: prompts per optimizer step = rollout_batch_size
        assert (
            8 * t.per_device_train_batch_size * t.gradient_accumulation_steps == p["rollout_batch_size"] * 8
        )
        assert (script.task, script.frame, script.system_prompt) == (
            "referring",
            protocol.frame,
            protocol.system,
        )
        assert all(r in NAMED_REWARDS and r.startswith(name) for r in script.reward_funcs)  # short names
        assert t.reward_weights == [1.0] * len(script.reward_funcs)
        assert (script.prompt_style, script.answer_format) == (protocol.name, f"{protocol.name}-json")
    _, sz, _ = _parse(RECIPES / "seg_zero.yaml")
    _, vr, _ = _parse(RECIPES / "vision_reasoner.yaml")
    assert sz.loss_type == "grpo" and vr.loss_type == "bnpo"  # micro-batches of 1 vs 16 sequences in veRL


def test_sam_r1_uses_asymmetric_clipping_and_token_level_normalisation():
    script, t, model = _parse(RECIPES / "sam_r1.yaml")
    assert (t.epsilon, t.epsilon_high, t.loss_type) == (0.2, 0.3, "dapo")
    assert (t.num_generations, t.learning_rate, script.frame, script.max_train_samples) == (
        8,
        1e-6,
        840,
        3000,
    )
    assert t.beta > 0  # SAM-R1 keeps the KL term
    assert (
        script.reward_funcs[0] == "sam_r1_tiered"
        and script.segmenter == "sam2-hf:facebook/sam2.1-hiera-large"
    )
    assert model.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert (script.prompt_style, script.answer_format) == (
        "vision-reasoner",
        "vision-reasoner-json",
    )  # assumed


@pytest.mark.parametrize("name", FAMILY_RECIPES)
def test_recipe_rewards_import_and_tiny_versions_mirror_them(name):
    script, t, _ = _parse(RECIPES / f"{name}.yaml")
    tiny, tt, tm = _parse(RECIPES / "tiny" / f"{name}.yaml")
    funcs = build_rewards(script, frame=840, style=script.prompt_style)
    assert [f.__name__ for f in funcs] == script.reward_funcs
    assert tiny.reward_funcs == script.reward_funcs and tm.model_name_or_path == "tiny" and tt.use_cpu
    assert (tiny.prompt_style, tiny.answer_format) == (script.prompt_style, script.answer_format)
    assert (tt.loss_type, tt.epsilon, tt.epsilon_high, tt.beta) == (
        t.loss_type,
        t.epsilon,
        t.epsilon_high,
        t.beta,
    )
    assert tt.per_device_train_batch_size % tt.num_generations == 0


def test_tiny_seg_zero_grpo_runs_two_steps_on_cpu(tmp_path):
    from segr1.cli import main

    out = tmp_path / "seg_zero"
    data = [{"synthetic": {"kind": "referring", "n": 6, "seed": 0, "size": 96}}]
    args = ["train", "grpo", "--config", str(RECIPES / "tiny" / "seg_zero.yaml"), "--train_data", json.dumps(data),
            "--data_cache_dir", str(tmp_path / "synth"), "--output_dir", str(out), "--max_steps", "2",
            "--num_generations", "2", "--per_device_train_batch_size", "4", "--max_completion_length", "24",
            "--logging_steps", "1"]  # fmt: skip
    assert main(args) == 0
    steps = [r for r in read_log(out / "log.jsonl") if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for term in ("think_format", "json_format", "box_iou", "box_l1", "point"):
        key = f"rewards/seg_zero_{term}/mean"
        assert all(key in r and 0.0 <= r[key] <= 1.0 for r in steps), key
    assert all("kl" in r for r in steps)  # beta > 0: the reference model is used
    assert (out / "model.safetensors").is_file()


def test_tiny_sam_r1_grpo_runs_with_epsilon_high_and_dapo(tmp_path):
    from segr1.cli import main

    out = tmp_path / "sam_r1"
    data = [{"synthetic": {"kind": "multi", "n": 4, "seed": 0, "size": 96}}]
    args = ["train", "grpo", "--config", str(RECIPES / "tiny" / "sam_r1.yaml"), "--train_data", json.dumps(data),
            "--data_cache_dir", str(tmp_path / "synth"), "--output_dir", str(out), "--max_steps", "1",
            "--num_generations", "2", "--per_device_train_batch_size", "2", "--max_completion_length", "16",
            "--logging_steps", "1", "--beta", "0"]  # fmt: skip
    assert main(args) == 0
    (step,) = [r for r in read_log(out / "log.jsonl") if "reward" in r]
    assert "rewards/sam_r1_tiered/mean" in step and "sam_r1_tiered/mask_iou" in step


def test_tiny_vision_reasoner_grpo_trains_on_multi_object_scenes_in_its_own_prompt(tmp_path):
    """An SFT warm-up in VisionReasoner's JSON, then two GRPO steps of the tiny recipe on multi-object scenes:
    every reward term is logged and both checkpoints record the style and format they were trained in."""
    from segr1.cli import main
    from segr1.policies import read_policy_metadata

    data = json.dumps([{"synthetic": {"kind": "multi", "n": 6, "seed": 0, "size": 96}}])
    common = ["--train_data", data, "--data_cache_dir", str(tmp_path / "synth"), "--logging_steps", "1"]
    sft = tmp_path / "sft"
    assert main(["train", "sft", "--config", str(RECIPES / "tiny" / "sft.yaml"), *common, "--output_dir", str(sft),
                 "--max_steps", "2", "--task", "referring", "--frame", "224", "--prompt_style", "vision-reasoner",
                 "--sft_think", "none"]) == 0  # fmt: skip
    assert read_policy_metadata(sft)["answer_format"] == "vision-reasoner-json"
    out = tmp_path / "vr"
    args = ["train", "grpo", "--config", str(RECIPES / "tiny" / "vision_reasoner.yaml"), *common,
            "--model_name_or_path", str(sft), "--output_dir", str(out), "--max_steps", "2", "--num_generations", "2",
            "--per_device_train_batch_size", "4", "--max_completion_length", "24"]  # fmt: skip
    assert main(args) == 0
    steps = [r for r in read_log(out / "log.jsonl") if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for term in ("think_format", "json_format", "box_iou", "box_l1", "point", "non_repeat"):
        assert all(f"rewards/vision_reasoner_{term}/mean" in r for r in steps), term
    meta = read_policy_metadata(out)
    assert (meta["prompt_style"], meta["answer_format"]) == ("vision-reasoner", "vision-reasoner-json")
