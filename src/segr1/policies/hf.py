"""The ``hf`` policy backend: a Qwen-VL checkpoint run with transformers' ``generate``.

Loads any checkpoint ``AutoModelForImageTextToText`` + ``AutoProcessor`` understand with a Qwen-style chat
template — Qwen2-VL, Qwen2.5-VL (``geshang/Seg-R1-7B``, ``Qwen/Qwen2.5-VL-7B-Instruct``), Qwen3-VL, and the
tiny offline model of :mod:`segr1.policies.tiny` — from a hub id or a local folder.

Image size. Callers resize each image to the square model frame first (``geometry.resize_to_frame``); the
processor then applies Qwen's ``smart_resize``: each side is rounded to a multiple of ``patch_size x
merge_size`` (28 for Qwen2/2.5-VL, 32 for Qwen3-VL) and the area is kept within ``[min_pixels,
max_pixels]``. A frame that already is such a multiple and within the limits (224, 448, 672, 896 for
Qwen2.5-VL) passes unchanged; 768 becomes 756 and 1024 becomes 1036 — a small uniform rescale, as in the
original Seg-R1, and the model still answers in the frame its instruction names. ``min_pixels`` /
``max_pixels`` override the checkpoint's limits (e.g. ``max_pixels=1024*1024`` to bound vision tokens).

Fast generation (``fast=True``): a reused static KV cache per batch-size bucket and compiled decoding; see
:mod:`segr1.policies.fast`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segr1.policies import DetailedPolicy, Generation, policy_metadata
from segr1.policies.fast import FastGeneration, StaticCachePool, bucket_size, compile_kwargs
from segr1.prompts import build_messages

logger = logging.getLogger(__name__)

MAX_NEW_TOKENS_LIMIT = 4096
MAX_NUM_SAMPLES = 1024


def check_generate_args(
    images: Sequence[Any],
    instructions: Sequence[str],
    num_samples: int,
    temperature: float,
    max_new_tokens: int,
) -> None:
    """Validate ``Policy.generate`` arguments (shared by the backends); ValueError names the bad value."""
    if len(images) != len(instructions):
        raise ValueError(f"got {len(images)} images but {len(instructions)} instructions")
    if not 1 <= num_samples <= MAX_NUM_SAMPLES:
        raise ValueError(f"num_samples must be in [1, {MAX_NUM_SAMPLES}], got {num_samples}")
    if not temperature >= 0.0:  # also rejects NaN
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        raise ValueError(f"max_new_tokens must be in [1, {MAX_NEW_TOKENS_LIMIT}], got {max_new_tokens}")


_DTYPES = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
}


def resolve_device(device: str | None) -> str:
    """``None`` -> ``"cuda"`` when available, else ``"cpu"``; any other value is checked
    (`segr1.devices.check_device`: ValueError for a bad name or a missing accelerator) and returned."""
    from segr1.devices import check_device

    return check_device(device)


def resolve_dtype(dtype: Any, device: str):
    """torch dtype from ``None`` (bf16 on CUDA when supported, fp32 elsewhere), a name, or a torch.dtype."""
    import torch

    if dtype is None:
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or a torch.dtype")
    return getattr(torch, name)


def _attn_implementation(device: str, dtype) -> str:
    import torch

    if device.startswith("cuda") and dtype in (torch.bfloat16, torch.float16):
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            return "sdpa"
        return "flash_attention_2"
    return "sdpa"


def _as_rgb(image: Any, index: int) -> Image.Image:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"image {index}: expected an (H, W, 3) uint8 array, got {image.shape} {image.dtype}"
            )
        return Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(
            f"image {index}: expected a PIL.Image or (H, W, 3) uint8 array, got {type(image).__name__}"
        )
    return image if image.mode == "RGB" else image.convert("RGB")


class HFPolicy(DetailedPolicy):
    """A Qwen-VL policy on transformers.

    ``model``: hub id (``"geshang/Seg-R1-7B"``) or local checkpoint folder. ``device``: ``"cuda"``,
    ``"cuda:1"``, ``"cpu"``; default CUDA when available. ``dtype``: default bf16 on CUDA, fp32 on CPU.
    ``attn_implementation``: default ``flash_attention_2`` when ``flash_attn`` is importable on CUDA with
    half precision, else ``sdpa``. ``min_pixels``/``max_pixels``: image-processor area limits (see the
    module docstring). ``top_p``/``top_k`` (0 disables top-k) apply when sampling (temperature > 0); they
    replace the checkpoint's own sampling defaults (Qwen's ``top_k=1`` would make sampling greedy).
    ``repetition_penalty``: ``None`` keeps the checkpoint's value (1.05 for Qwen2.5-VL-Instruct, which
    the released Seg-R1 evaluation used). ``max_batch_size``: images per ``generate`` call (None: all).
    ``cache_implementation``: forwarded to ``generate`` (e.g. ``"static"``); not with ``fast``.
    ``fast``: True or a :class:`FastGeneration` for the static-cache + compiled decoding path (module
    docstring). ``generate_kwargs``: extra ``generate`` keyword arguments applied last (e.g.
    ``{"min_new_tokens": 64}`` to time a fixed answer length); also the attribute of that name.

    Attributes: ``name`` (``"hf:<model>"``), ``frame`` (the square frame the checkpoint was trained at
    when its folder records one in ``segr1_policy.json``, else None), ``metadata`` (that file's content),
    ``model``, ``processor``, ``device``, ``dtype``, ``fast`` (the :class:`FastGeneration` or None),
    ``cpu_threads`` (1 for a small model on CPU, where threads only add overhead: `segr1.devices.cpu_threads_for`;
    else None, torch's default).
    """

    def __init__(
        self,
        model: str | Path,
        device: str | None = None,
        dtype: Any = None,
        *,
        attn_implementation: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float | None = None,
        max_batch_size: int | None = None,
        cache_implementation: str | None = None,
        fast: bool | FastGeneration = False,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> None:
        from segr1.hub import check_model_source, load_error, progress_only_on_a_terminal

        options = {
            "top_p": top_p,
            "top_k": top_k,
            "repetition_penalty": repetition_penalty,
            "max_batch_size": max_batch_size,
            "cache_implementation": cache_implementation,
            "fast": fast,
            "generate_kwargs": generate_kwargs,
        }
        _check_options(**options)
        # a typo, a missing folder or an uncached id offline fails here, before transformers is imported
        source, local_only = check_model_source(str(model), "policy", "geshang/Seg-R1-7B")
        from transformers import AutoModelForImageTextToText, AutoProcessor

        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        attn = attn_implementation or _attn_implementation(device, dtype)
        pixel_kwargs = {
            k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None
        }
        try:
            with progress_only_on_a_terminal():  # no "Loading weights" bar in logs and pipes
                processor = AutoProcessor.from_pretrained(source, local_files_only=local_only, **pixel_kwargs)
                loaded = AutoModelForImageTextToText.from_pretrained(
                    source,
                    local_files_only=local_only,
                    dtype=dtype,
                    attn_implementation=attn,
                    device_map=None if device == "cpu" else device,  # load straight onto the GPU
                )
        except (OSError, ValueError) as err:  # unreachable or unknown hub id, missing or malformed files
            raise load_error(err, "policy", source, "geshang/Seg-R1-7B") from err
        metadata = policy_metadata(source)
        self._setup(
            loaded, processor, name=f"hf:{source}", metadata=metadata, device=device, dtype=dtype, **options
        )
        logger.info("loaded %s on %s (%s, %s)", self.name, self.device, self.dtype, attn)

    @classmethod
    def from_model(
        cls,
        model: Any,
        processor: Any,
        *,
        name: str = "hf:<in-memory>",
        frame: int | None = None,
        **options: Any,
    ) -> HFPolicy:
        """Wrap an already built model and processor (e.g. random weights in a released model's shape, for
        benchmarks). ``frame``: the model frame to record; ``options``: the generation keyword arguments of
        :class:`HFPolicy` (``top_p``, ``top_k``, ``repetition_penalty``, ``max_batch_size``,
        ``cache_implementation``, ``fast``, ``generate_kwargs``)."""
        _check_options(**options)
        policy = cls.__new__(cls)
        metadata = {} if frame is None else {"frame": frame}
        policy._setup(model, processor, name=name, metadata=metadata, **options)
        return policy

    def _setup(
        self,
        model: Any,
        processor: Any,
        *,
        name: str,
        metadata: dict[str, Any],
        device: str | None = None,
        dtype: Any = None,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float | None = None,
        max_batch_size: int | None = None,
        cache_implementation: str | None = None,
        fast: bool | FastGeneration = False,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.model, self.processor = model, processor
        self.device = device or str(model.device)
        self.dtype = dtype or model.dtype
        self.metadata = metadata
        frame = metadata.get("frame")
        self.frame: int | None = frame if isinstance(frame, int) else None
        self.top_p, self.top_k = float(top_p), int(top_k)
        self.max_batch_size = max_batch_size
        self.cache_implementation = cache_implementation
        self.generate_kwargs: dict[str, Any] = dict(generate_kwargs or {})
        self.fast: FastGeneration | None = FastGeneration() if fast is True else (fast or None)
        self._caches = StaticCachePool(model.config, self.fast.cache_multiple) if self.fast else None
        self._compile_kwargs = compile_kwargs(self.fast, model.device.type) if self.fast else {}
        from segr1.devices import cpu_threads_for

        self.cpu_threads: int | None = cpu_threads_for(model, self.device)  # 1 for a small model on CPU

        self.model.eval()
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._pad_token_id = tokenizer.pad_token_id
        base = self.model.generation_config
        eos = base.eos_token_id if base.eos_token_id is not None else tokenizer.eos_token_id
        self._eos_token_ids = [eos] if isinstance(eos, int) else list(eos)
        self.repetition_penalty = (
            float(repetition_penalty)
            if repetition_penalty is not None
            else float(base.repetition_penalty or 1.0)
        )
        # Sampling is set per call; drop the checkpoint's sampling defaults so greedy calls do not warn.
        base.do_sample, base.temperature, base.top_p, base.top_k = False, None, None, None

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
        """:meth:`generate` plus, per completion, whether it stopped at ``max_new_tokens`` without an
        end-of-sequence token (``Generation.truncated``)."""
        check_generate_args(images, instructions, num_samples, temperature, max_new_tokens)
        rgb = [_as_rgb(image, i) for i, image in enumerate(images)]
        step = self.max_batch_size or max(len(rgb), 1)
        texts: list[list[str]] = []
        truncated: list[list[bool]] = []
        for start in range(0, len(rgb), step):
            got = self._generate_batch(
                rgb[start : start + step],
                list(instructions[start : start + step]),
                num_samples,
                temperature,
                max_new_tokens,
                system,
                image_first,
            )
            texts += got.texts
            truncated += got.truncated
        return Generation(texts=texts, truncated=truncated)

    def warmup(
        self,
        frame: int,
        batch_sizes: Sequence[int] | None = None,
        *,
        instruction: str = "Find the object and answer with its box and points.",
        max_new_tokens: int = 256,
        num_samples: int = 1,
        temperature: float = 0.0,
        system: str | None = None,
    ) -> dict[int, float]:
        """Compile (and capture CUDA graphs) now rather than on the first real call: one short ``generate`` per
        batch size on grey ``frame x frame`` images, with the cache sized for ``max_new_tokens``.

        ``batch_sizes``: default the fast path's buckets up to ``max_batch_size`` (or 8). Returns seconds per
        batch size. Calls that later use the same frame, a similar instruction length, ``max_new_tokens``,
        ``num_samples`` and sampling mode reuse the compiled graphs. A no-op warm-up of the eager path is harmless.
        """
        import time

        if batch_sizes is None:
            limit = self.max_batch_size or 8
            buckets = self.fast.batch_buckets if self.fast else (1,)
            batch_sizes = [b for b in buckets if b <= limit] or [buckets[0]]
        image = Image.new("RGB", (frame, frame), (128, 128, 128))
        saved = dict(self.generate_kwargs)
        # decode a few steps whatever the model answers, so that the decoding graphs get built
        self.generate_kwargs["min_new_tokens"] = min(4, max_new_tokens)
        seconds: dict[int, float] = {}
        try:
            for n in batch_sizes:
                start = time.perf_counter()
                self.generate(
                    [image] * n, [instruction] * n, num_samples, temperature, max_new_tokens, system
                )
                seconds[n] = time.perf_counter() - start
        finally:
            self.generate_kwargs = saved
        return seconds

    def _generate_batch(
        self,
        images: list[Image.Image],
        instructions: list[str],
        num_samples: int,
        temperature: float,
        max_new_tokens: int,
        system: str | None,
        image_first: bool = True,
    ) -> Generation:
        import torch

        n_real = len(images)
        if self.fast is not None:  # pad to a bucket so compiled graphs are reused; padding rows are dropped
            extra = bucket_size(n_real, self.fast.batch_buckets) - n_real
            images, instructions = images + [images[-1]] * extra, instructions + [instructions[-1]] * extra
        texts = [
            self.processor.apply_chat_template(
                build_messages(image, instruction, system, image_first=image_first),
                add_generation_prompt=True,
                tokenize=False,
            )
            for image, instruction in zip(images, instructions, strict=True)
        ]
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        inputs = {
            k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
            if isinstance(v, torch.Tensor)
            else v
            for k, v in inputs.items()
        }
        sample = temperature > 0.0
        per_image = num_samples if sample else 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sample,
            "num_return_sequences": per_image,
            "repetition_penalty": self.repetition_penalty,
            "pad_token_id": self._pad_token_id,
            "eos_token_id": self._eos_token_ids,
        }
        if sample:
            kwargs.update(temperature=float(temperature), top_p=self.top_p, top_k=self.top_k)
        prompt_length = inputs["input_ids"].shape[1]
        if self.fast is not None:
            rows = len(images) * per_image
            kwargs["cache"] = self._caches.get(rows, prompt_length + max_new_tokens)
            kwargs.update(self._compile_kwargs)
            context = torch.no_grad()  # as transformers' own generate; the cache outlives the call
        else:
            if self.cache_implementation is not None:
                kwargs["cache_implementation"] = self.cache_implementation
            context = torch.inference_mode()
        kwargs.update(self.generate_kwargs)
        from segr1.devices import intra_op_threads

        with context, intra_op_threads(self.cpu_threads):
            output = self.model.generate(**inputs, **kwargs)
        new_tokens = output[: n_real * per_image, prompt_length:]
        decoded = self.processor.batch_decode(
            new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        # cut off by the budget: every new token used and none of them an end-of-sequence token
        eos = torch.as_tensor(self._eos_token_ids, device=new_tokens.device)
        finished = torch.isin(new_tokens, eos).any(dim=1)
        cut = [bool(new_tokens.shape[1] >= max_new_tokens and not f) for f in finished.tolist()]
        if not sample:
            return Generation(
                texts=[[text] * num_samples for text in decoded], truncated=[[c] * num_samples for c in cut]
            )
        rows = range(n_real)
        return Generation(
            texts=[decoded[i * num_samples : (i + 1) * num_samples] for i in rows],
            truncated=[cut[i * num_samples : (i + 1) * num_samples] for i in rows],
        )


def _check_options(
    *,
    top_p: float = 1.0,
    top_k: int = 0,
    max_batch_size: int | None = None,
    cache_implementation: str | None = None,
    fast: bool | FastGeneration = False,
    **_: Any,
) -> None:
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 disables top-k), got {top_k}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1 or None, got {max_batch_size}")
    if not isinstance(fast, (bool, FastGeneration)):
        raise TypeError(f"fast must be a bool or a FastGeneration, got {type(fast).__name__}")
    if fast and cache_implementation is not None:
        raise ValueError(
            f"fast generation manages its own static cache; drop cache_implementation={cache_implementation!r}"
        )
