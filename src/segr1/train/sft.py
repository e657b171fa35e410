"""SFT warm-up on TRL's own ``SFTTrainer``: teach the answer format from ground-truth masks.

Each training row pairs the task's prompt (image + instruction, in the prompt style's ``sft`` stage) with a
target rendered by `segr1.answer.format_answer` from the sample's mask in the model frame -- its tight box and a
few sampled foreground/background points (`segr1.data.trl.sft_target`) -- so any image/mask dataset becomes SFT
data; samples with instance ground truth, or a recipe in another answer format (the families' JSON), get one
object per instance in that format (`segr1.data.sft_objects`); rows that carry their own target (the release's FCoT data, ``train_data: [{fcot: geshang/FCoT}]``) train
on it. The loss is on the completion only (TRL's default for prompt/completion data; the release's SFT also
trained on the prompt tokens: ``completion_only_loss: false`` in the recipe does that).

``grounding_attn_weight`` / ``grounding_place_weight`` add the training-only terms of `segr1.train.grounding`
(one head taught to attend to the target before the answer's coordinates; a place probe on the image tokens):
the trainer is then `GroundedSFTTrainer`, the model runs eager attention, and the rows carry their cell targets.
"""

from __future__ import annotations

import functools
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
    if script_args.grounding and script_args.grounding_attn_weight > 0:
        model_args.attn_implementation = "eager"  # only eager attention returns the weights the term reads
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
        grounding_tasks=script_args.grounding_task_set if script_args.grounding else None,
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
    kwargs = dict(
        model=model,
        args=training_args,
        train_dataset=dataset,
        peft_config=peft_config(model_args),
        callbacks=[JsonlLogCallback()],
    )
    if script_args.grounding:
        trainer = grounded_trainer_class()(grounding=script_args, **kwargs)
        logger.info(
            "SFT grounding terms: attention %.3g (layer %d head %d, tasks %s), place %.3g",
            script_args.grounding_attn_weight,
            script_args.grounding_attn_layer,
            script_args.grounding_attn_head,
            script_args.grounding_tasks,
            script_args.grounding_place_weight,
        )
    else:
        trainer = SFTTrainer(**kwargs)
    trainer.segr1_frame = frame
    trainer.segr1_model = model
    trainer.segr1_style = style.name
    trainer.segr1_format = fmt.name
    trainer.segr1_tasks = sorted({dataset_task(script_args) or s.task for s in samples})
    return trainer


@functools.cache
def grounded_trainer_class() -> type:
    """TRL's ``SFTTrainer`` with the grounding terms of `segr1.train.grounding` added to its loss (built on
    first use, so importing this module does not import TRL)."""
    from trl import SFTTrainer

    from segr1.train.grounding import CELLS_COLUMN, GroundingTerms, digit_token_ids

    class GroundedSFTTrainer(SFTTrainer):
        """``SFTTrainer`` + `GroundingTerms`: the place probe joins the optimizer, not the saved model."""

        def __init__(self, *args: Any, grounding: SFTScriptArguments, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            config = self.model.config
            self.segr1_grounding = GroundingTerms(
                hidden_size=config.get_text_config().hidden_size,
                image_token_id=config.image_token_id,
                digit_ids=digit_token_ids(self.processing_class.tokenizer),
                attn_weight=grounding.grounding_attn_weight,
                attn_layer=grounding.grounding_attn_layer,
                attn_head=grounding.grounding_attn_head,
                place_weight=grounding.grounding_place_weight,
            ).attach(self.model)
            self.data_collator = _CellsCollator(self.data_collator, CELLS_COLUMN)

        def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
            optimizer = super().create_optimizer(*args, **kwargs)
            probe = self.segr1_grounding.probe.to(self.model.device)
            if self.segr1_grounding.place_weight > 0:
                optimizer.add_param_group({"params": list(probe.parameters()), "weight_decay": 0.0})
            return optimizer

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            cells = inputs.pop(CELLS_COLUMN, None)
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = result[0] if return_outputs else result
            extra, parts = self.segr1_grounding.loss(inputs["input_ids"], inputs["labels"], cells)
            if num_items_in_batch is not None:  # Trainer leaves gradient accumulation to the loss
                extra = extra / self.current_gradient_accumulation_steps
            mode = "train" if self.model.training else "eval"
            for key, value in parts.items():
                self._metrics[mode][key].append(value)
            loss = loss + extra
            return (loss, result[1]) if return_outputs else loss

    return GroundedSFTTrainer


class _CellsCollator:
    """Wraps TRL's collator: takes the rows' cell targets out before it runs and puts them back as one
    (B, cells) float tensor (rows without targets: zeros)."""

    def __init__(self, inner: Any, column: str) -> None:
        self.inner, self.column = inner, column

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        cells = [example.pop(self.column, None) for example in examples]
        batch = self.inner(examples)
        width = max((len(c) for c in cells if c is not None), default=0)
        batch[self.column] = torch.tensor(
            [c if c is not None else [0.0] * width for c in cells], dtype=torch.float32
        ).reshape(len(cells), width)
        return batch


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
