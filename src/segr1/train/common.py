"""What ``segr1 train sft`` and ``segr1 train grpo`` share: recipe parsing, model resolution, resume, provenance."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from segr1.train.config import TINY_MODEL, GRPOScriptArguments, SFTScriptArguments

logger = logging.getLogger(__name__)

STAGES = ("grpo", "sft")
POLICY_FILE = (
    "segr1_policy.json"  # segr1's note next to a checkpoint: frame, task, stage (read by policies.hf)
)


def recipe_parser(stage: str) -> Any:
    """TRL's ``TrlParser`` over segr1's options, TRL's trainer config and ``ModelConfig`` for ``stage``."""
    from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser

    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}; got {stage!r}")
    if stage == "grpo":
        return TrlParser((GRPOScriptArguments, GRPOConfig, ModelConfig))
    return TrlParser((SFTScriptArguments, SFTConfig, ModelConfig))


def parse_recipe(stage: str, argv: list[str]) -> tuple[Any, Any, Any]:
    """Parse ``--config RECIPE.yaml`` and ``--key value`` overrides into ``(script_args, trainer_config,
    model_config)`` with TRL's ``TrlParser``: `GRPOScriptArguments`/`SFTScriptArguments`, TRL's
    ``GRPOConfig``/``SFTConfig`` and ``ModelConfig``. Unknown keys raise ValueError naming them."""
    parser = recipe_parser(stage)
    return parser.parse_args_and_config(args=list(argv))


def resolve_model(name_or_path: str | None) -> str:
    """A hub id or folder to load; ``"tiny"`` builds (once, cached) segr1's offline tiny Qwen2.5-VL."""
    if not name_or_path:
        raise ValueError(
            "model_name_or_path is not set; give a hub id, a local folder, or 'tiny' in the recipe"
        )
    if name_or_path == TINY_MODEL:
        from segr1.policies.tiny import tiny_model_dir

        return str(tiny_model_dir())
    return name_or_path


def policy_meta(model_path: str) -> dict[str, Any]:
    """The ``segr1_policy.json`` of a local checkpoint folder, else what segr1 knows of a released hub
    checkpoint (its prompt style and answer format: `segr1.policies.known_metadata`), else ``{}``."""
    path = Path(model_path) / POLICY_FILE
    if not path.is_file():
        from segr1.policies import known_metadata

        return known_metadata(model_path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        logger.warning("ignoring unreadable %s", path)
        return {}
    return meta if isinstance(meta, dict) else {}


def resolve_style(script_args: Any, model_path: str) -> Any:
    """The prompt style to train with: the recipe's ``prompt_style``, else the one the base checkpoint records
    (segr1's own tiny model counts as ``segr1``), else ``seg-r1`` (`segr1.styles.style_for`)."""
    from segr1.styles import style_for

    return style_for(policy_meta(model_path), getattr(script_args, "prompt_style", None))


def resolve_format(script_args: Any, model_path: str, style: Any = None) -> Any:
    """The answer format to train with: the recipe's ``answer_format``, else the one the base checkpoint records
    (unless the recipe names a prompt style: then that style's), else the style's (`segr1.formats.format_for`)."""
    from segr1.formats import format_for

    style = style if style is not None else resolve_style(script_args, model_path)
    recorded = None if getattr(script_args, "prompt_style", None) else policy_meta(model_path)
    return format_for(recorded, getattr(script_args, "answer_format", None), style)


def resolve_frame(script_args: Any, model_path: str) -> int:
    """The model frame: the recipe's ``frame``, else the one the checkpoint records, else the prompt style's
    training frame for the task (768 foreground / pre-RL, 1024 referring / reasoning in both styles)."""
    if script_args.frame is not None:
        return int(script_args.frame)
    recorded = policy_meta(model_path).get("frame")
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    return resolve_style(script_args, model_path).frame(script_args.task, "train")


def model_init_kwargs(model_args: Any, training_args: Any) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments from TRL's ``ModelConfig`` (recipe's ``model_init_kwargs`` win)."""
    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs.update(training_args.model_init_kwargs or {})
    return kwargs


# LoRA default for Qwen-VL policies: the language model's attention and MLP projections (not the vision tower).
LORA_TARGET_REGEX = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def peft_config(model_args: Any) -> Any:
    """TRL's ``get_peft_config(model_args)`` (None unless ``use_peft``), with the language model's linear layers
    as LoRA targets when the recipe names none (`LORA_TARGET_REGEX`)."""
    from trl import get_peft_config

    config = get_peft_config(model_args)
    if (
        config is not None
        and not getattr(config, "target_modules", None)
        and not getattr(config, "target_parameters", None)
    ):
        config.target_modules = LORA_TARGET_REGEX
    return config


def resolve_resume(resume: str | bool | None, output_dir: str) -> str | None:
    """The checkpoint to resume from: a path as given; ``"last"``/True -> the newest ``checkpoint-*`` in
    ``output_dir`` (None, with a warning, when there is none yet); None/False -> no resume."""
    if resume in (None, False, ""):
        return None
    if resume is True or resume == "last":
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if last is None:
            logger.warning("no checkpoint in %s to resume from; starting from scratch", output_dir)
        return last
    if not os.path.isdir(str(resume)):
        raise FileNotFoundError(
            f"resume checkpoint not found: {resume!r} (give a checkpoint-N folder or 'last')"
        )
    return str(resume)


def load_checkpoint_weights(trainer: Any, checkpoint: str | None) -> None:
    """Put a checkpoint's weights into ``trainer.model`` before ``trainer.train(resume_from_checkpoint=...)``.

    Works around transformers#43701: ``save_pretrained`` writes Qwen2.5-VL (and other models with a checkpoint
    conversion mapping) in the original key layout (``model.layers.*``, ``visual.*``), but ``Trainer`` resumes
    with a plain ``load_state_dict`` that matches none of those keys and silently keeps the *initial* weights
    (it only warns about missing keys). Loading the checkpoint with ``from_pretrained`` applies the mapping;
    the trainer's own attempt afterwards changes nothing. DeepSpeed/FSDP checkpoints and PEFT adapters have
    their own, unaffected, loading paths and are left alone.
    """
    if checkpoint is None or trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        return
    model = trainer.model
    if hasattr(model, "peft_config") or not any(
        (Path(checkpoint) / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")
    ):
        return
    dtype = next(model.parameters()).dtype
    fresh = type(model).from_pretrained(checkpoint, dtype=dtype, device_map=None)
    state = fresh.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    del fresh, state
    if missing or unexpected:
        raise RuntimeError(
            f"checkpoint {checkpoint} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    logger.info(
        "loaded the weights of %s with key conversion (transformers#43701); the Trainer's 'missing keys' warning "
        "that follows is expected and harmless",
        checkpoint,
    )


def disable_missing_vllm(training_args: Any) -> None:
    """Recipes ask for vLLM rollouts; fall back to transformers generation (with a warning) where vLLM is
    not installed, so the same recipe runs on any machine."""
    if not getattr(training_args, "use_vllm", False):
        return
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        logger.warning(
            "use_vllm is set but vLLM is not installed (pip install 'segr1[vllm]'); generating with "
            "transformers instead"
        )
        training_args.use_vllm = False


def dataset_task(script_args: Any) -> str | None:
    """The task the dataset builders force on every sample: the recipe's, or None for ``task: auto``."""
    from segr1.train.config import AUTO_TASK

    return None if script_args.task == AUTO_TASK else script_args.task


def write_provenance(
    out_dir: str,
    *,
    stage: str,
    frame: int,
    script_args: Any,
    model: str,
    model_path: str | None = None,
    prompt_style: str | None = None,
    answer_format: str | None = None,
    tasks: Any = None,
) -> None:
    """Write ``segr1_policy.json`` (frame, task (``tasks``: every task of the training samples, for ``task:
    auto``), stage, prompt style and answer format it was trained with,
    base model as named and as loaded) next to the saved model (or LoRA adapter)."""
    from segr1.protocol import describe, get_protocol
    from segr1.styles import get_style

    if prompt_style is None:
        prompt_style = resolve_style(script_args, model_path or model).name
    if answer_format is None:
        answer_format = resolve_format(script_args, model_path or model, get_style(prompt_style)).name
    meta = {
        "frame": frame,
        "task": script_args.task,
        **({"tasks": sorted(set(tasks))} if tasks else {}),
        "stage": stage,
        "prompt_style": prompt_style,
        "answer_format": answer_format,
        "protocol": describe(get_protocol(getattr(script_args, "protocol", None), "train")),
        "trained": True,
        "base_model": model,
        "base_model_path": model_path or model,
        "description": f"segr1 {stage} policy ({', '.join(sorted(set(tasks))) if tasks else script_args.task}, "
        f"{frame}x{frame} model frame)",
        "segr1_args": asdict(script_args),
    }
    path = Path(out_dir) / POLICY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    os.replace(tmp, path)
