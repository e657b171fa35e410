"""SFT warm-up on TRL's own ``SFTTrainer``: teach the answer format from ground-truth masks.

Each training row pairs the task's prompt (image + instruction, in the prompt style's ``sft`` stage) with a
target rendered by `segr1.answer.format_answer` from the sample's mask in the model frame -- its tight box and a
few sampled foreground/background points (`segr1.data.trl.sft_target`) -- so any image/mask dataset becomes SFT
data; samples with instance ground truth, or a recipe in another answer format (the families' JSON), get one
object per instance in that format (`segr1.data.sft_objects`); rows that carry their own target (the release's FCoT data, ``train_data: [{fcot: geshang/FCoT}]``) train
on it. The loss is on the completion only (TRL's default for prompt/completion data; the release's SFT also
trained on the prompt tokens: ``completion_only_loss: false`` in the recipe does that).
"""

from __future__ import annotations

import logging
from typing import Any

from segr1.train.callbacks import JsonlLogCallback
from segr1.train.common import (
    dataset_task,
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
from segr1.train.config import SFTScriptArguments
from segr1.train.data import load_train_samples

logger = logging.getLogger(__name__)


def build_sft_trainer(script_args: SFTScriptArguments, training_args: Any, model_args: Any) -> Any:
    """A ready ``trl.SFTTrainer`` for a parsed recipe (see `segr1.train.common.parse_recipe`)."""
    from trl import SFTTrainer

    from segr1.data.trl import to_sft_dataset

    model = resolve_model(model_args.model_name_or_path)
    frame = resolve_frame(script_args, model)
    style = resolve_style(script_args, model)
    fmt = resolve_format(script_args, model, style)
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    if training_args.remove_unused_columns:
        # The dataset builds its rows on the fly from stored paths; dropping "unused" stored columns breaks that.
        training_args.remove_unused_columns = False
    with training_args.main_process_first(desc="preparing train_data"):
        samples = load_train_samples(
            script_args.train_data,
            cache_dir=script_args.data_cache_dir,
            max_samples=script_args.max_train_samples,
        )
    dataset = to_sft_dataset(
        samples,
        task=dataset_task(script_args),
        frame=frame,
        system=script_args.system_prompt,
        n_pos=script_args.sft_points_pos,
        n_neg=script_args.sft_points_neg,
        think=script_args.sft_think,
        point_mode=script_args.sft_points_mode,
        seed=script_args.sft_seed,
        style=style.name,
        protocol=script_args.protocol,
        answer_format=fmt.name,
    )
    logger.info(
        "SFT: %s, %d samples, task %s, prompt style %s, answer format %s, frame %d",
        model,
        len(dataset),
        script_args.task,
        style.name,
        fmt.name,
        frame,
    )
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        peft_config=peft_config(model_args),
        callbacks=[JsonlLogCallback()],
    )
    trainer.segr1_frame = frame
    trainer.segr1_model = model
    trainer.segr1_style = style.name
    trainer.segr1_format = fmt.name
    trainer.segr1_tasks = sorted({dataset_task(script_args) or s.task for s in samples})
    return trainer


def train_sft(
    script_args: SFTScriptArguments, training_args: Any, model_args: Any, *, resume: str | bool | None = None
) -> Any:
    """Build the trainer, train (optionally resuming), save model + processor + ``segr1_policy.json``."""
    trainer = build_sft_trainer(script_args, training_args, model_args)
    checkpoint = resolve_resume(
        resume if resume is not None else training_args.resume_from_checkpoint, training_args.output_dir
    )
    load_checkpoint_weights(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        write_provenance(
            training_args.output_dir,
            stage="sft",
            frame=trainer.segr1_frame,
            script_args=script_args,
            model=model_args.model_name_or_path,
            model_path=trainer.segr1_model,
            prompt_style=trainer.segr1_style,
            answer_format=trainer.segr1_format,
            tasks=trainer.segr1_tasks,
        )
    return trainer
