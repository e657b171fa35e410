"""Train a policy: SFT warm-up or GRPO with mask rewards, on TRL's trainers, from a YAML recipe.

usage: segr1 train {grpo,sft} --config RECIPE.yaml [--resume [CHECKPOINT|last]] [--check] [--key value ...]

Every ``--key value`` after the recipe overrides the recipe's key (any field of segr1's data/reward options,
TRL's GRPOConfig/SFTConfig or ModelConfig), e.g. ``--max_steps 20 --output_dir runs/try``. ``--resume`` with
no value (or ``last``) continues from the newest ``checkpoint-N`` in ``output_dir``. ``--check`` parses the
recipe and prints the resolved segr1 options without loading data or models. ``segr1 train grpo --help``
shows segr1's options and the recipe keys that matter most; ``--help-all`` lists every key (TRL's too);
docs/training.md explains them.

examples:
  segr1 train sft  --config recipes/tiny/sft.yaml                      # CPU, offline, minutes
  segr1 train grpo --config recipes/tiny/grpo.yaml --model_name_or_path runs/tiny/sft
  accelerate launch --config_file recipes/accelerate/zero2.yaml -m segr1 train grpo --config recipes/rl_cod.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
import textwrap

logger = logging.getLogger(__name__)

USAGE = "segr1 train {stage} --config RECIPE.yaml [--resume [CHECKPOINT|last]] [--check] [--key value ...]"
_SUMMARY = {
    "grpo": "GRPO on TRL's GRPOTrainer: the policy answers with box/point prompts, the segmenter turns them "
    "into masks, and the reward is the mask's quality (0.7 IoU + 0.3 S-measure) plus a format reward.",
    "sft": "SFT warm-up on TRL's SFTTrainer: targets in Seg-R1's answer format rendered from the "
    "ground-truth masks, so that GRPO starts from a policy that writes parsable answers.",
}
_SEGR1_OPTIONS = (
    ("--config RECIPE.yaml", "the recipe: a flat YAML mapping of the keys below (see recipes/)"),
    ("--resume [CKPT|last]", "continue from a checkpoint-N folder (default: the newest in output_dir)"),
    ("--check", "print the resolved options and exit (loads no data or model)"),
    ("--key value", "override any recipe key, e.g. --max_steps 20 --output_dir runs/try"),
    ("--help-all", "list every recipe key (segr1's, TRL's {trainer}, ModelConfig's)"),
)
# The TRL / transformers keys people set most, with our one-line summary (the full text: --help-all).
_COMMON_KEYS = (
    ("model_name_or_path", "policy to start from: hub id, local folder, or 'tiny' (offline tiny model)"),
    ("output_dir", "where checkpoints, log.jsonl and the final model go"),
    ("max_steps / num_train_epochs", "how long to train (max_steps wins when > 0)"),
    ("learning_rate", "optimizer step size (the paper recipes: 1e-6)"),
    ("per_device_train_batch_size", "prompts per device per step"),
    ("gradient_accumulation_steps", "steps whose gradients are summed before an update"),
    ("save_steps / logging_steps", "checkpoint and log every N steps"),
    ("bf16 / seed / report_to", "precision, random seed, logger (tensorboard, wandb, none)"),
    ("use_peft / lora_r / lora_alpha", "LoRA instead of full fine-tuning"),
)
_GRPO_KEYS = (
    ("num_generations", "completions sampled per prompt (the group of the advantage)"),
    ("max_completion_length", "answer budget in tokens"),
    ("temperature / beta", "sampling temperature; KL coefficient"),
    ("reward_weights", "one weight per entry of reward_funcs"),
    ("use_vllm / vllm_mode", "generate rollouts with vLLM (server or colocate)"),
)
_SFT_KEYS = (("max_length", "longest tokenised example (prompt + target)"),)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "stage", choices=("grpo", "sft"), help="grpo: RL with mask rewards; sft: format warm-up"
    )
    parser.add_argument(
        "options",
        nargs=argparse.REMAINDER,
        metavar="--config RECIPE.yaml [--resume [CKPT|last]] [--check] [--key value ...]",
        help="the recipe, then overrides of any recipe key",
    )


def split_options(options: list[str]) -> tuple[str | bool | None, bool, list[str]]:
    """Pull ``--resume [X]`` and ``--check`` out of the option list; the rest goes to TRL's parser.
    Returns (resume, check, rest)."""
    resume: str | bool | None = None
    check = False
    rest: list[str] = []
    i = 0
    while i < len(options):
        opt = options[i]
        if opt == "--resume":
            nxt = options[i + 1] if i + 1 < len(options) else None
            if nxt is not None and not nxt.startswith("--"):
                resume, i = nxt, i + 2
            else:
                resume, i = "last", i + 1
            continue
        if opt.startswith("--resume="):
            resume = opt.split("=", 1)[1] or "last"
        elif opt == "--check":
            check = True
        else:
            rest.append(opt)
        i += 1
    return resume, check, rest


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from segr1.train.common import parse_recipe

    resume, check, rest = split_options(list(args.options or []))
    if "--help-all" in rest:
        full_parser(args.stage).print_help()  # every recipe key: segr1's, TRL's and ModelConfig's
        return 0
    if "-h" in rest or "--help" in rest:
        print(short_help(args.stage))
        return 0
    if "--config" not in rest:
        print(
            f"segr1 train {args.stage}: error: needs --config RECIPE.yaml (see recipes/, or "
            f"`segr1 train {args.stage} --help`)",
            file=sys.stderr,
        )
        return 2
    script_args, training_args, model_args = parse_recipe(args.stage, rest)
    if check:
        print(f"stage: {args.stage}")
        print(f"model: {model_args.model_name_or_path}")
        for key, value in asdict(script_args).items():
            print(f"{key}: {value}")
        print(f"output_dir: {training_args.output_dir}")
        return 0
    if args.stage == "grpo":
        from segr1.train.grpo import train_grpo

        train_grpo(script_args, training_args, model_args, resume=resume)
    else:
        from segr1.train.sft import train_sft

        train_sft(script_args, training_args, model_args, resume=resume)
    return 0


def short_help(stage: str) -> str:
    """One screen: usage, what the stage does, segr1's options, segr1's recipe keys and the most used TRL
    keys, and where the full list is. Imports no trainer (fast)."""
    from segr1.train.config import GRPOScriptArguments, SFTScriptArguments

    trainer = "GRPOConfig" if stage == "grpo" else "SFTConfig"
    script = GRPOScriptArguments if stage == "grpo" else SFTScriptArguments
    width = 32  # key column; 2 + 32 + 76 characters a line

    def rows(items) -> list[str]:
        out = []
        for key, text in items:
            line = f"  {key:<{width}}{text}"
            out.append(line if len(key) < width else f"  {key}\n  {'':<{width}}{text}")
        return out

    own = [(f.name, _first_sentence(f.metadata.get("help", ""))) for f in dataclasses.fields(script)]
    lines = [f"usage: {USAGE.format(stage=stage)}", "", textwrap.fill(_SUMMARY[stage], 104), ""]
    lines += ["segr1 options:", *rows((k, v.format(trainer=trainer)) for k, v in _SEGR1_OPTIONS), ""]
    lines += ["segr1 recipe keys:", *rows(own), ""]
    trl_keys = _COMMON_KEYS + (_GRPO_KEYS if stage == "grpo" else _SFT_KEYS)
    lines += [f"most used TRL / transformers keys ({trainer}, ModelConfig):", *rows(trl_keys), ""]
    lines += [
        f"Every other key of TRL's {trainer}, transformers' TrainingArguments and ModelConfig works too:",
        f"`segr1 train {stage} --help-all` lists them all; docs/training.md explains the recipes.",
        f"example: segr1 train {stage} --config recipes/tiny/{stage}.yaml --max_steps 20 --output_dir runs/try",
    ]
    return "\n".join(lines)


def _first_sentence(text: str, limit: int = 76) -> str:
    """The first sentence of a field's help (not cut at "e.g."), at most ``limit`` characters."""
    text = " ".join(text.split())
    match = re.search(r"(?<=[a-z0-9)'])\. (?=[A-Z(])", text)
    text = text if match is None else text[: match.start() + 1]
    return text if len(text) <= limit else text[: limit - 3].rstrip(" ,;:") + "..."


def full_parser(stage: str):
    """TRL's parser of every recipe key, with a usage line that names ``segr1 train <stage>``."""
    from segr1.train.common import recipe_parser

    parser = recipe_parser(stage)
    parser.prog = f"segr1 train {stage}"
    parser.usage = USAGE.format(stage=stage)
    parser.description = (
        f"Every key a `segr1 train {stage}` recipe may hold (YAML key, or --key value on the command line)."
    )
    return parser
