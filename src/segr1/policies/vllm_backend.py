"""The ``vllm`` policy backend (optional extra ``segr1[vllm]``): same contract as the ``hf`` backend.

vLLM itself is not installed in segr1's CI (it needs a CUDA GPU); the tests run this wrapper against a stand-in
``vllm`` module. It is a thin wrapper over ``vllm.LLM.generate`` with ``multi_modal_data``, written against
vLLM >= 0.10's public API. Prompts are built with the checkpoint's own processor chat template, exactly as in
the ``hf`` backend, and decoding uses the checkpoint's ``repetition_penalty`` (its ``generation_config.json``;
1.05 for Qwen2.5-VL-Instruct and the released Seg-R1), as the ``hf`` backend and the release's vLLM rollouts do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from segr1.policies import DetailedPolicy, Generation, policy_metadata
from segr1.policies.hf import _as_rgb, check_generate_args
from segr1.prompts import build_messages

logger = logging.getLogger(__name__)


class VLLMPolicy(DetailedPolicy):
    """A Qwen-VL policy on vLLM. ``model``: hub id or local folder; ``dtype``: vLLM dtype name (default
    ``"auto"``); ``min_pixels``/``max_pixels``: image-processor limits (as for ``hf``); ``repetition_penalty``:
    None keeps the checkpoint's (`checkpoint_repetition_penalty`); ``llm_kwargs`` go to ``vllm.LLM`` (e.g.
    ``gpu_memory_utilization=0.5``, ``tensor_parallel_size=2``)."""

    def __init__(
        self,
        model: str | Path,
        device: str | None = None,
        dtype: Any = None,
        *,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
        repetition_penalty: float | None = None,
        **llm_kwargs: Any,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise ImportError(
                "the vllm policy backend needs vLLM: pip install 'segr1[vllm]' (CUDA only)"
            ) from err
        from transformers import AutoProcessor

        if device not in (None, "cuda"):
            raise ValueError(
                f"the vllm backend places the model itself; device must be None or 'cuda', got {device!r}"
            )
        source = str(model)
        self.name = f"vllm:{source}"
        self.metadata = policy_metadata(source)
        frame = self.metadata.get("frame")
        self.frame: int | None = frame if isinstance(frame, int) else None
        self.top_p, self.top_k = float(top_p), int(top_k)
        self.repetition_penalty = (
            float(repetition_penalty)
            if repetition_penalty is not None
            else checkpoint_repetition_penalty(source)
        )
        pixel_kwargs = {
            k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None
        }
        self.processor = AutoProcessor.from_pretrained(source, **pixel_kwargs)
        self.llm = LLM(
            model=source,
            dtype=str(dtype).removeprefix("torch.") if dtype is not None else "auto",
            limit_mm_per_prompt={"image": 1},
            mm_processor_kwargs=pixel_kwargs or None,
            seed=seed,
            **llm_kwargs,
        )

    def generate_detailed(
        self,
        images: Sequence[Image.Image],
        instructions: Sequence[str],
        num_samples: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
        system: str | None = None,
        image_first: bool = True,
    ) -> Generation:
        """:meth:`generate` plus which completions stopped at the budget (vLLM's ``finish_reason == "length"``)."""
        from vllm import SamplingParams

        check_generate_args(images, instructions, num_samples, temperature, max_new_tokens)
        sample = temperature > 0.0
        params = SamplingParams(
            n=num_samples if sample else 1,
            temperature=float(temperature),
            top_p=self.top_p if sample else 1.0,
            top_k=(self.top_k or -1) if sample else -1,
            max_tokens=max_new_tokens,
            repetition_penalty=self.repetition_penalty,
            skip_special_tokens=True,
        )
        requests = []
        for i, (image, instruction) in enumerate(zip(images, instructions, strict=True)):
            rgb = _as_rgb(image, i)
            text = self.processor.apply_chat_template(
                build_messages(rgb, instruction, system, image_first=image_first),
                add_generation_prompt=True,
                tokenize=False,
            )
            requests.append({"prompt": text, "multi_modal_data": {"image": rgb}})
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        texts = [[completion.text for completion in out.outputs] for out in outputs]
        cut = [[getattr(c, "finish_reason", None) == "length" for c in out.outputs] for out in outputs]
        if not sample:
            texts, cut = [t * num_samples for t in texts], [c * num_samples for c in cut]
        return Generation(texts=texts, truncated=cut)


def checkpoint_repetition_penalty(source: str) -> float:
    """The ``repetition_penalty`` of a checkpoint's ``generation_config.json`` (1.0 when it has none or the
    file cannot be read)."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        logger.info("no generation_config for %s (%s); repetition_penalty 1.0", source, err)
        return 1.0
    return float(config.repetition_penalty or 1.0)
