"""segr1 train: recipes, data sources, and short real runs of TRL's GRPO/SFT trainers on the tiny model (CPU)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1.commands.train import split_options
from segr1.train.callbacks import read_log
from segr1.train.common import parse_recipe, resolve_resume
from segr1.train.data import load_train_samples, synthetic_dir

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
TINY_GRPO = RECIPES / "tiny" / "grpo.yaml"
TINY_SFT = RECIPES / "tiny" / "sft.yaml"


def _small_data(tmp_path: Path, n: int = 6) -> list[str]:
    """Overrides for a small synthetic set (96 px scenes) cached under tmp_path."""
    data = [{"synthetic": {"kind": "salient", "n": n, "seed": 0, "size": 96}}]
    return ["--train_data", json.dumps(data), "--data_cache_dir", str(tmp_path / "synth")]


def _fast_grpo(tmp_path: Path, out: Path, steps: int) -> list[str]:
    return [
        "--config", str(TINY_GRPO), *_small_data(tmp_path), "--output_dir", str(out), "--max_steps", str(steps),
        "--num_generations", "2", "--per_device_train_batch_size", "4", "--max_completion_length", "24",
        "--logging_steps", "1", "--reward_workers", "1",
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ recipes


def _recipe_files() -> list[Path]:
    return sorted(p for p in RECIPES.rglob("*.yaml") if "accelerate" not in p.parts)


@pytest.mark.parametrize("recipe", _recipe_files(), ids=lambda p: str(p.relative_to(RECIPES)))
def test_every_recipe_parses(recipe):
    import torch

    stage = "sft" if "sft" in recipe.stem else "grpo"
    extra = [] if torch.cuda.is_available() else ["--bf16", "false"]  # GPU recipes ask for bf16
    script, training, model = parse_recipe(stage, ["--config", str(recipe), *extra])
    assert model.model_name_or_path
    assert script.train_data, "every recipe names its training data"
    assert training.output_dir.startswith("runs/")
    if stage == "grpo":
        assert training.num_generations >= 2
        assert training.per_device_train_batch_size % training.num_generations == 0


def test_paper_recipes_keep_the_original_hyper_parameters():
    import torch

    extra = [] if torch.cuda.is_available() else ["--bf16", "false"]
    pre, pre_t, _ = parse_recipe("grpo", ["--config", str(RECIPES / "prerl.yaml"), *extra])
    assert pre.task == "prerl" and pre.reward_funcs == ["segmentation", "format_points"]
    assert "DIS" in pre.train_data[0]["images"]
    rl, rl_t, _ = parse_recipe("grpo", ["--config", str(RECIPES / "rl_cod.yaml"), *extra])
    assert [s["name"] for s in rl.train_data] == ["COD10K-TR", "CAMO-TR"]
    for s, t in ((pre, pre_t), (rl, rl_t)):
        assert (s.iou_weight, s.s_weight, s.frame) == (0.7, 0.3, 768)
        assert (t.learning_rate, t.num_generations, t.temperature, t.beta) == (1e-6, 4, 1.0, 0.04)
        assert t.lr_scheduler_type == "constant" and t.gradient_accumulation_steps == 4
    assert rl_t.max_completion_length == 400 and rl_t.num_train_epochs == 2
    sod, sod_t, _ = parse_recipe("grpo", ["--config", str(RECIPES / "sod_finetune.yaml"), *extra])
    assert "DUTS-TR" in sod.train_data[0]["images"] and sod_t.num_train_epochs == 1
    _, sft_t, sft_m = parse_recipe("sft", ["--config", str(RECIPES / "sft.yaml"), *extra])
    assert (sft_t.learning_rate, sft_t.lr_scheduler_type, sft_t.per_device_train_batch_size) == (
        2e-5,
        "cosine",
        4,
    )
    assert sft_m.model_name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct"


def test_accelerate_configs_exist_and_parse():
    import yaml

    kinds = {}
    for name in ("ddp", "zero2", "zero3", "fsdp"):
        cfg = yaml.safe_load((RECIPES / "accelerate" / f"{name}.yaml").read_text())
        kinds[name] = (cfg["distributed_type"], cfg.get("deepspeed_config", {}).get("zero_stage"))
    assert kinds == {
        "ddp": ("MULTI_GPU", None),
        "zero2": ("DEEPSPEED", 2),
        "zero3": ("DEEPSPEED", 3),
        "fsdp": ("FSDP", None),
    }


def test_overrides_validation_and_check(capsys):
    script, training, _ = parse_recipe(
        "grpo", ["--config", str(TINY_GRPO), "--num_generations", "2", "--train_data",
                 '[{"images": "a", "masks": "b"}]', "--reward_funcs", "segmentation", "length"])  # fmt: skip
    assert training.num_generations == 2
    assert script.train_data == [{"images": "a", "masks": "b"}]
    assert script.reward_funcs == ["segmentation", "length"]
    for bad, match in (
        (["--reward_funcs", "nope"], "unknown reward_funcs"),
        (["--train_data", '[{"images": "a"}]'], "masks"),
        (["--train_data", '[{"foo": 1}]'], "exactly one of"),
        (["--task", "nope"], "task"),
        (["--unknown_key", "1"], "not used"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_recipe("grpo", ["--config", str(TINY_GRPO), *bad])
    from segr1.cli import main

    assert main(["train", "grpo", "--config", str(TINY_GRPO), "--frame", "112", "--check"]) == 0
    out = capsys.readouterr().out
    assert "frame: 112" in out and "model: tiny" in out
    assert main(["train", "sft"]) == 2  # no --config


def test_split_options_and_resume(tmp_path):
    assert split_options(["--config", "r.yaml", "--resume", "--max_steps", "3"]) == (
        "last", False, ["--config", "r.yaml", "--max_steps", "3"])  # fmt: skip
    assert split_options(["--resume", "ck/checkpoint-2", "--check"]) == ("ck/checkpoint-2", True, [])
    assert split_options(["--resume=x", "--config", "r"]) == ("x", False, ["--config", "r"])
    assert split_options(["--config", "r", "--resume"]) == ("last", False, ["--config", "r"])
    assert resolve_resume(None, str(tmp_path)) is None
    assert resolve_resume("last", str(tmp_path)) is None  # nothing yet: start from scratch
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-10").mkdir()
    assert resolve_resume("last", str(tmp_path)).endswith("checkpoint-10")
    assert resolve_resume(str(tmp_path / "checkpoint-2"), str(tmp_path)).endswith("checkpoint-2")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        resolve_resume(str(tmp_path / "missing"), str(tmp_path))


# ----------------------------------------------------------------------------------------- data sources


def test_data_sources_folder_root_manifest_and_synthetic(tmp_path):
    imgs, masks = tmp_path / "ds" / "images", tmp_path / "ds" / "masks"
    imgs.mkdir(parents=True)
    masks.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(imgs / f"a{i}.jpg")
        Image.fromarray(np.full((8, 8), 255 * (i % 2), np.uint8)).save(masks / f"a{i}.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(imgs / "orphan.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"id": "x", "image": "ds/images/a0.jpg", "mask": "ds/masks/a0.png"}) + "\n"
    )
    spec = {"kind": "camouflaged", "n": 3, "seed": 5, "size": 64}
    sources = [
        {"images": str(imgs), "masks": str(masks), "name": "toy", "task": "prerl"},
        {"root": str(tmp_path / "ds")},
        {"manifest": str(manifest)},
        {"synthetic": spec},
    ]
    samples = load_train_samples(sources, cache_dir=tmp_path / "cache")
    assert len(samples) == 3 + 3 + 1 + 3
    assert [s.id for s in samples[:3]] == ["toy/a0", "toy/a1", "toy/a2"] and samples[0].task == "prerl"
    assert samples[6].id == "x" and Path(samples[6].image).is_file()
    cached = synthetic_dir(spec, tmp_path / "cache")
    assert (cached / "manifest.jsonl").is_file() and len(list((cached / "images").iterdir())) == 3
    stamp = (cached / "manifest.jsonl").stat().st_mtime_ns
    again = load_train_samples([{"synthetic": spec}], cache_dir=tmp_path / "cache", max_samples=2)
    assert len(again) == 2 and (cached / "manifest.jsonl").stat().st_mtime_ns == stamp  # reused, not rebuilt
    with pytest.raises(FileNotFoundError):
        load_train_samples([{"images": str(tmp_path / "nope"), "masks": str(masks)}])
    with pytest.raises(ValueError, match="no train_data"):
        load_train_samples([])
    with pytest.raises(ValueError, match="synthetic source"):
        load_train_samples([{"synthetic": {"kind": "salient", "bogus": 1}}], cache_dir=tmp_path / "cache")


# -------------------------------------------------------------------------------------------- real runs


def test_grpo_tiny_recipe_trains_and_logs_rewards(tmp_path):
    from segr1.cli import main

    out = tmp_path / "grpo"
    assert main(["train", "grpo", *_fast_grpo(tmp_path, out, steps=2)]) == 0
    records = read_log(out / "log.jsonl")
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for key in (
        "reward",
        "rewards/segmentation/mean",
        "rewards/format/mean",
        "segmentation/mask_iou",
        "segmentation/s_measure",
        "loss",
    ):
        assert all(key in r for r in steps), key
    assert (out / "model.safetensors").is_file() and (out / "processor_config.json").is_file()
    meta = json.loads((out / "segr1_policy.json").read_text())
    assert (meta["frame"], meta["stage"], meta["task"]) == (224, "grpo", "foreground")


def test_sft_tiny_recipe_trains(tmp_path):
    from segr1.cli import main

    out = tmp_path / "sft"
    args = ["train", "sft", "--config", str(TINY_SFT), *_small_data(tmp_path), "--output_dir", str(out),
            "--max_steps", "2", "--per_device_train_batch_size", "2", "--logging_steps", "1"]  # fmt: skip
    assert main(args) == 0
    records = [r for r in read_log(out / "log.jsonl") if "loss" in r]
    assert len(records) == 2 and all(np.isfinite(r["loss"]) for r in records)
    meta = json.loads((out / "segr1_policy.json").read_text())
    assert (meta["frame"], meta["stage"]) == (224, "sft")
    # the SFT output is a loadable starting point for GRPO (recorded frame is picked up)
    from segr1.train.common import resolve_frame

    script, _, _ = parse_recipe("grpo", ["--config", str(TINY_GRPO)])
    script.frame = None  # not given: use the frame the checkpoint records
    assert resolve_frame(script, str(out)) == 224


def test_grpo_with_lora_saves_an_adapter(tmp_path):
    from segr1.cli import main
    from segr1.train.common import LORA_TARGET_REGEX, peft_config

    out = tmp_path / "lora"
    assert (
        main(["train", "grpo", *_fast_grpo(tmp_path, out, steps=1), "--use_peft", "true", "--lora_r", "4"])
        == 0
    )
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["target_modules"] == LORA_TARGET_REGEX and cfg["r"] == 4
    meta = json.loads((out / "segr1_policy.json").read_text())
    assert Path(meta["base_model_path"]).is_dir() and meta["base_model"] == "tiny"
    _, _, model = parse_recipe("grpo", ["--config", str(TINY_GRPO)])
    assert peft_config(model) is None  # LoRA only when asked for


def test_custom_reward_by_import_path(tmp_path):
    from segr1.train.grpo import build_rewards

    script, _, _ = parse_recipe("grpo", ["--config", str(TINY_GRPO), "--reward_funcs", "segmentation",
                                         "segr1.rewards.length_reward", "length", "format_points"])  # fmt: skip
    funcs = build_rewards(script, frame=224)
    from trl.trainer.utils import get_callable_name

    assert [get_callable_name(f) for f in funcs] == ["segmentation", "length", "length", "format_points"]
    with pytest.raises(ValueError, match="cannot import"):
        script.reward_funcs = ["no.such.reward"]
        build_rewards(script, frame=224)


# ------------------------------------------------------------------------------------ slow: distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    # `accelerate launch --cpu` starts a single process (several only through MPI); --multi_gpu starts torchrun,
    # and the recipe's use_cpu makes each rank a gloo CPU process.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()),
           "-m", "segr1", "train", "grpo", *_fast_grpo(tmp_path, out, steps=2),
           "--per_device_train_batch_size", "2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "training on 2 process(es)" in proc.stdout + proc.stderr
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]  # written once, by the main process
    assert all("segmentation/mask_iou" in r for r in steps)
    assert (out / "model.safetensors").is_file()


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    # A positive entropy bonus makes every step change the weights even while the untrained tiny policy earns no
    # reward, so the comparison covers sampling, data order, optimizer and scheduler state across the restart.
    common = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "5",
              "--learning_rate", "1e-3", "--entropy_coef", "0.1", "--lr_scheduler_type", "linear"]  # fmt: skip

    def cmd(out: Path, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "segr1",
            "train",
            "grpo",
            *_fast_grpo(tmp_path, out, 6),
            *common,
            *extra,
        ]

    full = tmp_path / "full"
    proc = subprocess.run(cmd(full), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    cut = tmp_path / "cut"
    with open(tmp_path / "cut.log", "w") as log:
        victim = subprocess.Popen(cmd(cut), cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        marker = cut / "checkpoint-2" / "trainer_state.json"
        deadline = time.time() + 540
        while not marker.exists() and victim.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        killed = victim.poll() is None
        if killed:
            victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    assert marker.exists(), (tmp_path / "cut.log").read_text()[-4000:]
    resumed = subprocess.run(cmd(cut, "--resume", str(cut / "checkpoint-2")), cwd=tmp_path, env=_env(),
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-4000:]

    a, b, at_cut = _weights(full), _weights(cut), _weights(full / "checkpoint-2")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6, err_msg=name)
    moved = sum(not np.array_equal(a[name], at_cut[name]) for name in a)
    assert moved > 0, "training did not change the weights after the checkpoint; the test would be vacuous"
    rewards_full = {r["step"]: r["reward"] for r in read_log(full / "log.jsonl") if "reward" in r}
    rewards_cut = {r["step"]: r["reward"] for r in read_log(cut / "log.jsonl") if "reward" in r}
    assert rewards_cut == rewards_full
    assert killed or (cut / "checkpoint-6").exists()


def test_compile_generation_sets_static_cache_and_compile_config(tmp_path):
    """Without vLLM, compile_generation makes TRL's rollouts use a static cache and a compile config."""
    from segr1.train.grpo import build_grpo_trainer

    out = tmp_path / "grpo-compiled"
    extra = ["--compile_generation", "true", "--generation_cache_len", "512"]
    script, training, model = parse_recipe("grpo", [*_fast_grpo(tmp_path, out, steps=1), *extra])
    trainer = build_grpo_trainer(script, training, model)
    config = trainer.generation_config
    assert config.cache_implementation == "static"
    assert config.compile_config is not None and not getattr(config, "disable_compile", False)

    script, training, model = parse_recipe("grpo", _fast_grpo(tmp_path, tmp_path / "plain", steps=1))
    assert build_grpo_trainer(script, training, model).generation_config.cache_implementation != "static"
