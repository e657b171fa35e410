"""GRPO on TRL's own ``GRPOTrainer`` with segr1's mask rewards.

The trainer is TRL's, unchanged: segr1 supplies the dataset (`segr1.data.trl.to_grpo_dataset`), the reward
callables (`segr1.rewards`), the model id (``"tiny"`` -> the offline tiny Qwen2.5-VL), LoRA through peft
(``use_peft``/``lora_*`` of TRL's ``ModelConfig``) and a JSON-lines log. Every TRL option (``num_generations``,
``beta``, ``loss_type``, ``scale_rewards``, ``reward_weights``, ``use_vllm``, ``temperature``, ...) comes
straight from the recipe. Multi-GPU / multi-node runs are ``accelerate launch`` of the same command.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from segr1.train.callbacks import JsonlLogCallback
from segr1.train.common import (
    dataset_task,
    disable_missing_vllm,
    load_checkpoint_weights,
    model_init_kwargs,
    peft_config,
    resolve_format,
    resolve_frame,
    resolve_model,
    resolve_resume,
    resolve_style,
    write_provenance,
)
from segr1.train.config import GRPOScriptArguments
from segr1.train.data import load_train_samples

logger = logging.getLogger(__name__)


def build_rewards(
    script_args: GRPOScriptArguments,
    *,
    frame: int,
    device: str | None = None,
    style: Any = None,
    answer_format: Any = None,
) -> list[Any]:
    """The reward callables named by ``script_args.reward_funcs``, in order: ``segmentation``, ``format``,
    ``format_points``, ``length``, a prompt-shaping term (``box_iou``, ``points``: `segr1.shaping_rewards`), a
    family reward (`segr1.train.named_rewards.NAMED_REWARDS`: ``seg_zero``,
    ``vision_reasoner_box_iou``, ``non_repeat``, ``sam_r1_tiered``, ...) or an import path ``pkg.module.func``.
    The segmentation reward is built once around one segmenter (loaded lazily, on first use, on ``device``);
    for the ``prerl`` task it ignores boxes (points-only stage); it parses answers in ``answer_format`` (default:
    the style's; Seg-R1's tags for the segr1 style). The recipe's ``protocol`` sets its release switches
    (``reward_requires_complete``, ``sam_fp32``, ``single_point_multimask``, the
    ``ablation_area_penalty_s_measure`` ablation); ``format_points`` asks for a ``<think>`` block only when the
    prompt ``style`` asks for one."""
    from segr1 import rewards
    from segr1.formats import DEFAULT_FORMAT, format_for
    from segr1.protocol import get_protocol
    from segr1.shaping_rewards import SHAPING_REWARDS, PromptShapingReward
    from segr1.styles import get_style
    from segr1.train.named_rewards import NAMED_REWARDS, FormattedSegmentationReward, build_named_reward

    protocol = get_protocol(script_args.protocol, "train")
    style = get_style(style or "segr1")
    fmt = format_for(None, answer_format or getattr(script_args, "answer_format", None), style)
    funcs: list[Any] = []
    for name in script_args.reward_funcs:
        if name == "segmentation":
            tags = fmt.name == DEFAULT_FORMAT  # Seg-R1's own reward; other formats through their parser
            cls = (
                rewards.SegmentationReward
                if tags
                else functools.partial(FormattedSegmentationReward, answer_format=fmt)
            )
            funcs.append(
                cls(
                    script_args.segmenter,
                    device=script_args.segmenter_device or device,
                    dtype=script_args.segmenter_dtype or ("float32" if protocol.sam_fp32 else None),
                    frame=frame,
                    iou_weight=script_args.iou_weight,
                    s_weight=script_args.s_weight,
                    points_only=script_args.task == "prerl",
                    num_workers=script_args.reward_workers,
                    name="segmentation",
                    requires_complete=protocol.reward_requires_complete,
                    s_measure="area_penalty" if protocol.ablation_area_penalty_s_measure else "true",
                    single_point_multimask=protocol.single_point_multimask,
                )
            )
        elif name == "format":
            funcs.append(rewards.format_reward)
        elif name == "format_points":
            if style.asks_think("prerl"):
                funcs.append(rewards.points_format_reward)
            else:  # the style's pre-RL text asks for points and labels only (the release's)
                reward = functools.partial(rewards.points_format_reward, require_think=False)
                reward.__name__ = "format_points"  # type: ignore[attr-defined]
                funcs.append(reward)
        elif name == "length":
            funcs.append(
                functools.partial(
                    rewards.length_reward,
                    ideal_points=script_args.length_ideal_points,
                    sigma=script_args.length_sigma,
                )
            )
        elif name in SHAPING_REWARDS:
            funcs.append(PromptShapingReward(name, frame=frame))
        elif name in NAMED_REWARDS:
            segmenter_device = script_args.segmenter_device or device
            funcs.append(build_named_reward(name, frame=frame, segmenter=script_args.segmenter, answer_format=fmt,
                                            device=segmenter_device))  # fmt: skip
        elif "." in name:
            funcs.append(_import_reward(name))
        else:  # config validation rejects unknown names; this guards a new name without a branch here
            raise ValueError(f"unknown reward {name!r}; choose from {rewards.REWARD_NAMES}")
    return funcs


def _import_reward(path: str) -> Any:
    """A user reward given as ``package.module.function`` (TRL's reward shape)."""
    import importlib

    module_name, _, attr = path.rpartition(".")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import reward {path!r}: {exc}") from exc
    if not callable(func):
        raise ValueError(f"reward {path!r} is not callable")
    return func


def build_grpo_trainer(script_args: GRPOScriptArguments, training_args: Any, model_args: Any) -> Any:
    """A ready ``trl.GRPOTrainer`` for a parsed recipe (see `segr1.train.common.parse_recipe`)."""
    from trl import GRPOTrainer

    model = resolve_model(model_args.model_name_or_path)
    frame = resolve_frame(script_args, model)
    style = resolve_style(script_args, model)
    fmt = resolve_format(script_args, model, style)
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    disable_missing_vllm(training_args)
    compile_rollouts = script_args.compile_generation and not getattr(training_args, "use_vllm", False)
    if compile_rollouts and getattr(training_args, "cache_implementation", None) is None:
        training_args.cache_implementation = "static"

    with training_args.main_process_first(desc="preparing train_data"):
        samples = load_train_samples(
            script_args.train_data,
            cache_dir=script_args.data_cache_dir,
            max_samples=script_args.max_train_samples,
        )
    from segr1.data.trl import to_grpo_dataset

    dataset = to_grpo_dataset(
        samples,
        task=dataset_task(script_args),
        frame=frame,
        system=script_args.system_prompt,
        style=style.name,
        protocol=script_args.protocol,
        answer_format=fmt.name,
    )
    device = str(training_args.device) if training_args.device.type == "cuda" else None
    reward_funcs = build_rewards(script_args, frame=frame, device=device, style=style, answer_format=fmt)
    logger.info(
        "GRPO: %s, %d samples, task %s, prompt style %s, answer format %s, frame %d, rewards %s, %d generations "
        "per prompt",
        model,
        len(dataset),
        script_args.task,
        style.name,
        fmt.name,
        frame,
        script_args.reward_funcs,
        training_args.num_generations,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=dataset,
        peft_config=peft_config(model_args),
        callbacks=[JsonlLogCallback()],
    )
    if compile_rollouts:
        from segr1.policies.fast import enable_compiled_decoding

        sharded = "zero3" in str(getattr(training_args, "deepspeed", None) or "").lower()
        if sharded or getattr(training_args, "fsdp", None):
            logger.warning("compile_generation under ZeRO-3 / FSDP is untested; prefer DDP or ZeRO-2")
        enable_compiled_decoding(trainer.generation_config, max_cache_len=script_args.generation_cache_len)
        logger.info(
            "GRPO rollouts: static cache + compiled decoding (cache length %s)",
            script_args.generation_cache_len,
        )
    trainer.segr1_frame = frame
    trainer.segr1_model = model
    trainer.segr1_style = style.name
    trainer.segr1_format = fmt.name
    trainer.segr1_tasks = sorted({dataset_task(script_args) or s.task for s in samples})
    return trainer


def train_grpo(
    script_args: GRPOScriptArguments, training_args: Any, model_args: Any, *, resume: str | bool | None = None
) -> Any:
    """Build the trainer, train (resuming from ``resume``: a checkpoint folder, or ``"last"``; falls back
    to the recipe's ``resume_from_checkpoint``), save the final model, processor and ``segr1_policy.json``
    to ``output_dir``. Returns the trainer."""
    trainer = build_grpo_trainer(script_args, training_args, model_args)
    checkpoint = resolve_resume(
        resume if resume is not None else training_args.resume_from_checkpoint, training_args.output_dir
    )
    load_checkpoint_weights(trainer, checkpoint)
    logger.info("GRPO: training on %d process(es)", trainer.accelerator.num_processes)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        write_provenance(
            training_args.output_dir,
            stage="grpo",
            frame=trainer.segr1_frame,
            script_args=script_args,
            model=model_args.model_name_or_path,
            model_path=trainer.segr1_model,
            prompt_style=trainer.segr1_style,
            answer_format=trainer.segr1_format,
            tasks=trainer.segr1_tasks,
        )
    return trainer
