"""`segr1 train grpo|sft --help` fits on a screen and names segr1's options; the full TRL list stays reachable."""

from __future__ import annotations

import dataclasses

import pytest

from segr1.cli import DESCRIPTION, build_parser, main
from segr1.commands import train as train_cmd

SCREEN_LINES = 60


@pytest.mark.parametrize("stage", ["grpo", "sft"])
def test_short_help_fits_one_screen_and_names_segr1_options(stage, capsys):
    assert main(["train", stage, "--help"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) <= SCREEN_LINES, len(lines)
    assert max(len(line) for line in lines) <= 110
    assert lines[0].startswith(f"usage: segr1 train {stage} --config RECIPE.yaml")
    for option in ("--config", "--resume", "--check", "--help-all"):
        assert option in out
    assert "docs/training.md" in out
    assert "segmenter" in out if stage == "grpo" else "sft_points_pos" in out  # segr1's own recipe keys


@pytest.mark.parametrize("stage", ["grpo", "sft"])
def test_listed_trl_keys_are_real_recipe_keys(stage):
    from trl import GRPOConfig, ModelConfig, SFTConfig

    trainer = GRPOConfig if stage == "grpo" else SFTConfig
    fields = {f.name for cls in (trainer, ModelConfig) for f in dataclasses.fields(cls)}
    listed = train_cmd._COMMON_KEYS + (train_cmd._GRPO_KEYS if stage == "grpo" else train_cmd._SFT_KEYS)
    for keys, _ in listed:
        for key in keys.split(" / "):
            assert key in fields, key


def test_help_all_lists_every_trl_key_under_segr1s_usage(capsys):
    assert main(["train", "grpo", "--help-all"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: segr1 train grpo --config RECIPE.yaml")
    assert "--num_generations" in out and "--learning_rate" in out and "--iou_weight" in out
    assert len(out.splitlines()) > 300


def test_train_without_config_is_a_usage_error(capsys):
    assert main(["train", "sft"]) == 2
    err = capsys.readouterr().err
    assert "segr1 train sft: error: needs --config RECIPE.yaml" in err


def test_top_level_help_says_what_segr1_is_in_one_line(capsys):
    assert "\n" not in DESCRIPTION and len(DESCRIPTION) < 200 and "Seg-R1" in DESCRIPTION
    assert build_parser().description == DESCRIPTION
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "Seg-R1 segmentation" in capsys.readouterr().out
