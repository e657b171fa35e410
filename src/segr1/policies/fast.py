"""The fast generation path of the ``hf`` policy backend: a reused static KV cache and compiled decoding.

Decoding one token reads every weight of the language model once, so a decode step should cost about
``weight bytes / memory bandwidth`` (about 5 ms for Qwen2.5-VL-7B in bf16 on an H100). transformers' default
``generate`` (a dynamic KV cache that grows by concatenation, an eager forward with one kernel launch per
op) runs several times slower than that. The fast path:

* keeps one preallocated ``transformers.StaticCache`` per number of rows (batch x samples) and reuses it
  across calls (`StaticCachePool`): its shape and memory address stay fixed, which compiled graphs and CUDA
  graphs need; a longer request replaces it with a longer one;
* lets ``generate`` run the decoding forward through ``torch.compile`` (transformers' ``CompileConfig``;
  default mode ``reduce-overhead``, i.e. CUDA graphs on GPU); prefill stays eager;
* pads a batch up to a bucket size (`bucket_size`; 1, 2, 4, 8, 16, 32 by default) and rounds the cache
  length up to a multiple of ``cache_multiple`` tokens, because compiled graphs are specialised on both:
  after one warm-up call per bucket (``HFPolicy.warmup``) no call recompiles.

Greedy tokens are the same as on the eager path (tests check it on the tiny model in fp32). Compilation is on
by default where transformers enables it (CUDA, XPU); ``FastGeneration(compile=True)`` forces it on CPU too.
GRPO rollouts without vLLM go through TRL's own ``generate`` call; `enable_compiled_decoding` switches
compilation on for the ``GenerationConfig`` TRL builds (it sets ``disable_compile=True``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)
AUTO_COMPILE_DEVICES = ("cuda", "xpu")  # where transformers compiles decoding with a static cache by default
COMPILE_OPTIONS = ("fullgraph", "dynamic", "backend", "mode", "options")  # transformers.CompileConfig fields


def _check_compile_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(COMPILE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown compile_options {unknown}; use some of {COMPILE_OPTIONS}")


@dataclass(frozen=True)
class FastGeneration:
    """Options of the fast generation path (``HFPolicy(fast=FastGeneration(...))``; ``fast=True`` = defaults).

    ``compile``: None compiles the decoding forward where transformers does by default (CUDA, XPU); True on
    any device (CPU too: correct but slow to compile; for tests); False never (static cache only).
    ``compile_options``: ``transformers.CompileConfig`` fields (``mode``, ``fullgraph``, ``dynamic``,
    ``backend``, ``options``), e.g. ``{"mode": "max-autotune"}``; default: transformers' settings
    (``mode="reduce-overhead"``, inductor) with ``dynamic=False``.
    ``batch_buckets``: batch sizes compiled graphs are built for; a batch is padded up to the next bucket
    (beyond the largest: to a multiple of it). ``cache_multiple``: the static cache length (prompt + new
    tokens) is rounded up to a multiple of this. ``recompile_limit``: raises ``torch._dynamo``'s per-function
    recompile limit (8 by default) to at least this, so one graph per (bucket, cache length) fits.
    """

    compile: bool | None = None
    compile_options: dict[str, Any] = field(default_factory=dict)
    batch_buckets: tuple[int, ...] = DEFAULT_BATCH_BUCKETS
    cache_multiple: int = 256
    recompile_limit: int = 64

    def __post_init__(self) -> None:
        buckets = tuple(self.batch_buckets)
        if (
            not buckets
            or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in buckets)
            or list(buckets) != sorted(set(buckets))
        ):
            raise ValueError(f"batch_buckets must be increasing positive ints, got {self.batch_buckets!r}")
        object.__setattr__(self, "batch_buckets", buckets)
        if self.cache_multiple < 1:
            raise ValueError(f"cache_multiple must be >= 1, got {self.cache_multiple}")
        if self.compile not in (None, True, False):
            raise ValueError(f"compile must be None, True or False, got {self.compile!r}")
        _check_compile_options(self.compile_options)


def bucket_size(n: int, buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS) -> int:
    """The smallest bucket >= ``n`` (``n >= 1``); beyond the largest bucket, ``n`` rounded up to a multiple of it."""
    if n < 1:
        raise ValueError(f"batch size must be >= 1, got {n}")
    for b in buckets:
        if b >= n:
            return b
    top = buckets[-1]
    return -(-n // top) * top


def compile_kwargs(fast: FastGeneration, device_type: str) -> dict[str, Any]:
    """``generate`` keyword arguments that switch compiled decoding on or off as ``fast`` asks on a device of
    type ``device_type`` ("cuda", "cpu", ...).

    Graphs are compiled with ``dynamic=False`` (one specialised graph per batch bucket and cache length)
    unless ``fast.compile_options`` says otherwise. Build once per policy and reuse: transformers recompiles
    when it sees a different ``CompileConfig``. Raises ``torch._dynamo``'s recompile limit to
    ``fast.recompile_limit`` when compilation may happen.
    """
    if fast.compile is False:
        return {"disable_compile": True}
    if fast.compile is None and device_type not in AUTO_COMPILE_DEVICES:
        return {}  # transformers compiles only on these devices by itself
    import torch._dynamo
    from transformers import CompileConfig

    if torch._dynamo.config.recompile_limit < fast.recompile_limit:
        torch._dynamo.config.recompile_limit = fast.recompile_limit
    config = CompileConfig(**{"dynamic": False, **fast.compile_options})
    if fast.compile:
        config._compile_all_devices = True  # transformers' switch for compiling on CPU
    return {"compile_config": config}


class StaticCachePool:
    """One reusable ``transformers.StaticCache`` per number of rows (sequences decoded together).

    ``get(rows, length)`` returns the held cache for ``rows`` emptied (``reset``: same tensors, same
    addresses) when it holds at least ``length`` tokens, else a new one of ``length`` rounded up to
    ``multiple`` (which then replaces it). Memory: one cache per row count used, ``rows x length x 2 x
    layers x kv_heads x head_dim`` elements. Not thread-safe (policies are used from one thread at a time).
    """

    def __init__(self, config: Any, multiple: int = 256) -> None:
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        self.config = config
        self.multiple = multiple
        self._held: dict[int, tuple[int, Any]] = {}

    def get(self, rows: int, length: int) -> Any:
        from transformers import StaticCache

        length = -(-length // self.multiple) * self.multiple
        held = self._held.get(rows)
        if held is not None and held[0] >= length:
            held[1].reset()
            return held[1]
        cache = StaticCache(config=self.config, max_cache_len=length)
        self._held[rows] = (length, cache)
        logger.debug("new static cache: %d rows x %d tokens", rows, length)
        return cache

    def lengths(self) -> dict[int, int]:
        """``{rows: cache length}`` of the caches held."""
        return {rows: length for rows, (length, _) in self._held.items()}

    def clear(self) -> None:
        """Drop every held cache (frees its memory once no graph refers to it)."""
        self._held.clear()


def enable_compiled_decoding(
    generation_config: Any,
    compile_options: dict[str, Any] | None = None,
    *,
    max_cache_len: int | None = None,
    all_devices: bool = False,
) -> Any:
    """Let ``generate`` compile its decoding forward with ``generation_config`` (changed in place; returned).

    For a ``transformers.GenerationConfig`` built elsewhere, e.g. TRL's ``GRPOTrainer.generation_config``,
    which TRL creates with ``disable_compile=True``. Compilation needs a static cache: the config's
    ``cache_implementation`` must be ``"static"`` (GRPOConfig ``cache_implementation: static``).
    ``compile_options``: as `FastGeneration.compile_options` (default: transformers' ``CompileConfig``).
    ``max_cache_len``: size every static cache for this many tokens (prompt + completion), so that batches
    with longer prompts do not recompile (set it here, not in TRL's ``generation_kwargs``, which vLLM would
    also receive). ``all_devices``: compile on CPU too.
    """
    from transformers import CompileConfig

    if generation_config.cache_implementation != "static":
        raise ValueError(
            "compiled decoding needs a static KV cache; got cache_implementation="
            f"{generation_config.cache_implementation!r} (set cache_implementation: static)"
        )
    if max_cache_len is not None and max_cache_len < 1:
        raise ValueError(f"max_cache_len must be >= 1 or None, got {max_cache_len}")
    _check_compile_options(compile_options or {})
    config = CompileConfig(**(compile_options or {}))
    if all_devices:
        config._compile_all_devices = True
    generation_config.compile_config = config
    generation_config.disable_compile = False
    if max_cache_len is not None:
        generation_config.max_cache_len = max_cache_len
    return generation_config
