"""Train a policy: SFT warm-up or GRPO with mask rewards, on TRL's trainers, from a YAML recipe.

usage: segr1 train {grpo,sft} --config RECIPE.yaml [--resume [CHECKPOINT|last]] [--check] [--key value ...]

Every ``--key value`` after the recipe overrides the recipe's key (any field of segr1's data/reward options,
TRL's GRPOConfig/SFTConfig or ModelConfig), e.g. ``--max_steps 20 --output_dir runs/try``. ``--resume`` with
no value (or ``last``) continues from the newest ``checkpoint-N`` in ``output_dir``. ``--check`` parses the
recipe and prints the resolved segr1 options without loading data or models. ``segr1 train grpo --help``
lists every key a recipe may hold.

examples:
  segr1 train sft  --config recipes/tiny/sft.yaml                      # CPU, offline, minutes
  segr1 train grpo --config recipes/tiny/grpo.yaml --model_name_or_path runs/tiny/sft
  accelerate launch --config_file recipes/accelerate/zero2.yaml -m segr1 train grpo --config recipes/rl_cod.yaml
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


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
    if "-h" in rest or "--help" in rest:
        from segr1.train.common import recipe_parser

        recipe_parser(args.stage).print_help()  # every recipe key: segr1's, TRL's and ModelConfig's
        return 0
    if "--config" not in rest:
        logger.error("segr1 train %s needs --config RECIPE.yaml (see recipes/)", args.stage)
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
