"""Policies: the multimodal LLM that reads an image + instruction and writes Seg-R1's answer text.

A :class:`Policy` is anything with a ``name`` and a ``generate`` method; :func:`load_policy` builds one from a
spec string, importing the heavy backend only when asked for:

* ``None`` / ``"default"`` -> the embedded default (see :data:`DEFAULT_POLICY_DESCRIPTION`) on the ``native``
  backend (:class:`segr1.policies.native.NativePolicy`: segr1's own forward pass, no transformers import, the
  same greedy answers) when it can run it (CPU, float32, its options), else on ``hf``; ``"hf:default"`` /
  ``"native:default"`` pick the backend;
* ``"hf:<hub id|folder>"`` or a bare hub id / folder -> :class:`segr1.policies.hf.HFPolicy` (transformers);
* ``"native:<folder>"`` -> :class:`segr1.policies.native.NativePolicy` (a small local Qwen2.5-VL folder, CPU);
* ``"vllm:<hub id|folder>"`` -> :class:`segr1.policies.vllm_backend.VLLMPolicy` (extra ``segr1[vllm]``).

Backends may also expose ``frame: int | None``: the square model frame the checkpoint was trained at, when
its folder records one (``segr1_policy.json``); callers should prefer it over the task default; and
``metadata``: that file's content (its ``prompt_style`` and ``answer_format`` pick the texts and the parser,
:mod:`segr1.styles`, :mod:`segr1.formats`); for a released checkpoint of another family named by its hub id
(``Ricky06662/Seg-Zero-7B``), which has no such file, what :func:`known_metadata` says about it.

Optionally a backend also has ``generate_detailed`` (same arguments as ``generate``), returning a
:class:`Generation` that says which completions stopped at ``max_new_tokens`` without finishing;
:func:`generate_with_info` calls it when present (the ``hf`` and ``vllm`` backends have it) and falls back to
``generate`` (truncation unknown: reported as False) otherwise, so the ``Policy`` protocol stays as it was.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

logger = logging.getLogger(__name__)

#: Where the trained tiny policy is shipped inside the package (absent until it has been trained).
SHIPPED_POLICY_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-policy"

DEFAULT_POLICY_DESCRIPTION = (
    "the embedded tiny Qwen2.5-VL policy (a few MB, runs offline on CPU, 224x224 model frame): the copy "
    "trained by segr1 on synthetic scenes and shipped in segr1/assets/tiny-policy when present; otherwise "
    "an UNTRAINED random tiny model built offline into the cache ($SEGR1_CACHE or ~/.cache/segr1), whose "
    "answers are mostly unparsable. For real images pass a released checkpoint, e.g. --model geshang/Seg-R1-7B."
)

#: Small JSON file segr1 keeps next to a checkpoint: {"frame": int, "trained": bool, "description": str, ...}.
POLICY_METADATA_FILE = "segr1_policy.json"

BACKENDS = ("hf", "native", "vllm")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class Policy(Protocol):
    """Image + instruction -> answer text. Implementations must be usable from one thread at a time."""

    name: str

    def generate(
        self,
        images: Sequence[Image.Image],
        instructions: Sequence[str],
        num_samples: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
        system: str | None = None,
    ) -> list[list[str]]:
        """``images``: PIL images already resized to the model frame; one instruction per image.

        Returns ``len(images)`` lists of ``num_samples`` completion strings (answer coordinates are in
        the model frame). ``temperature == 0`` is greedy decoding.
        """
        ...


@dataclass
class Generation:
    """What one ``generate_detailed`` call returns.

    texts: ``len(images)`` lists of ``num_samples`` completion strings (as ``Policy.generate``).
    truncated: the same shape of bools: True where a completion used all of ``max_new_tokens`` without
        reaching an end-of-sequence token (the answer was cut off by the budget).
    """

    texts: list[list[str]]
    truncated: list[list[bool]]


class DetailedPolicy:
    """Base of the backends that implement ``generate_detailed``: ``generate`` is its texts."""

    def generate(
        self,
        images: Sequence[Image.Image],
        instructions: Sequence[str],
        num_samples: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
        system: str | None = None,
        image_first: bool = True,
    ) -> list[list[str]]:
        """Completions for each (image, instruction) pair.

        ``images``: PIL images already resized to the model frame (coordinates in the answers are in that
        frame). Returns ``len(images)`` lists of ``num_samples`` strings (only the new tokens, special tokens
        removed). ``temperature == 0`` decodes greedily (the ``num_samples`` strings are then identical);
        ``temperature > 0`` samples with the backend's ``top_p``/``top_k``. ``image_first=False``: the
        instruction before the image in the user turn (`segr1.prompts.build_messages`).
        """
        return self.generate_detailed(  # type: ignore[attr-defined]
            images, instructions, num_samples, temperature, max_new_tokens, system, image_first=image_first
        ).texts


def generate_with_info(
    policy: Any, images: Sequence[Image.Image], instructions: Sequence[str], **kwargs: Any
) -> Generation:
    """``policy.generate_detailed(...)`` when the policy has it, else ``policy.generate(...)`` with every
    ``truncated`` flag False (unknown). ``kwargs``: ``num_samples``, ``temperature``, ``max_new_tokens``,
    ``system`` and, for text-first styles only, ``image_first=False`` (the segr1 backends take it)."""
    detailed = getattr(policy, "generate_detailed", None)
    if callable(detailed):
        return detailed(images, instructions, **kwargs)
    texts = policy.generate(images, instructions, **kwargs)
    return Generation(texts=texts, truncated=[[False] * len(row) for row in texts])


def read_policy_metadata(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``segr1_policy.json`` of a local checkpoint folder, or ``{}`` (hub ids, missing or bad file)."""
    path = Path(folder) / POLICY_METADATA_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        logger.warning("ignoring unreadable %s: %s", path, err)
        return {}
    return meta if isinstance(meta, dict) else {}


def known_metadata(source: str | None) -> dict[str, Any]:
    """What segr1 knows of a released checkpoint without a ``segr1_policy.json``, by hub id: its prompt style
    and answer format (``Ricky06662/Seg-Zero-7B`` -> ``{"prompt_style": "seg-zero", "answer_format":
    "seg-zero-json"}``; `segr1.styles.checkpoint_style`), else ``{}``. Loads nothing."""
    from segr1.styles import checkpoint_style, get_style

    name = checkpoint_style(source)
    if name is None:
        return {}
    return {"prompt_style": name, "answer_format": get_style(name).answer_format}


def policy_metadata(source: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's metadata: its folder's ``segr1_policy.json``, else :func:`known_metadata` of its hub id."""
    return read_policy_metadata(source) or known_metadata(str(source))


def write_policy_metadata(folder: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``meta`` as the folder's ``segr1_policy.json`` (e.g. after training: ``{"frame": 224,
    "trained": True, "description": ...}``) so loaders know the checkpoint's model frame."""
    frame = meta.get("frame")
    if frame is not None and (not isinstance(frame, int) or isinstance(frame, bool) or frame <= 0):
        raise ValueError(f"policy metadata frame must be a positive int, got {frame!r}")
    path = Path(folder) / POLICY_METADATA_FILE
    path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def shipped_policy_available() -> bool:
    """True when the trained tiny policy is shipped inside the package."""
    return (SHIPPED_POLICY_DIR / "config.json").is_file()


def default_policy_path() -> Path:
    """Folder of the embedded default policy: the shipped trained tiny policy if present, else the untrained
    tiny model (built into the cache on first use, a few seconds; logs a warning)."""
    if shipped_policy_available():
        return SHIPPED_POLICY_DIR
    from segr1.policies.tiny import tiny_model_dir

    path = tiny_model_dir()
    logger.warning(
        "no trained policy is shipped in %s yet; using the UNTRAINED random tiny model at %s — its answers are "
        "mostly unparsable, so masks will mostly be empty. Pass a checkpoint (e.g. geshang/Seg-R1-7B) for real use.",
        SHIPPED_POLICY_DIR,
        path,
    )
    return path


def parse_policy_spec(spec: str | None) -> tuple[str, str | None]:
    """``spec`` -> ``(backend, source)``; ``source`` None means the embedded default, backend ``"auto"`` that
    :func:`load_policy` picks ``native`` or ``hf`` for it. Raises ValueError."""
    if spec is not None and not isinstance(spec, str):
        raise TypeError(f"policy spec must be a str or None, got {type(spec).__name__}")
    if spec is None or spec.strip() in ("", "default"):
        return "auto", None
    spec = spec.strip()
    backend, sep, rest = spec.partition(":")
    if sep and len(backend) > 1:  # a one-letter prefix is a Windows drive, not a backend
        if backend not in BACKENDS:
            raise ValueError(
                f"unknown policy backend {backend!r} in {spec!r}; use 'hf:<id|folder>', 'native:<folder>', "
                "'vllm:<id|folder>' or a bare hub id / folder"
            )
        source = rest.strip()
        if not source:
            raise ValueError(f"policy spec {spec!r} names no model; e.g. '{backend}:geshang/Seg-R1-7B'")
        if source == "default":
            return backend, None
    else:
        backend, source = "hf", spec
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(f"policy folder {source!r} is not a checkpoint folder (no config.json in it)")
        return backend, str(path)
    if source.startswith(("/", ".", "~", "\\")) or ":" in source or not _HUB_ID.match(source):
        raise ValueError(
            f"policy {source!r} is neither an existing folder nor a hub id like 'geshang/Seg-R1-7B'"
        )
    return backend, source


def load_policy(
    spec: str | None = None, device: str | None = None, dtype: Any = None, **options: Any
) -> Policy:
    """Build a policy from ``spec`` (see the module docstring). ``device``: default CUDA when available, else
    CPU; ``dtype``: default bf16 on CUDA, fp32 on CPU; ``options`` go to the backend's constructor (e.g.
    ``max_pixels``, ``top_p``, ``top_k``, ``max_batch_size``)."""
    backend, source = parse_policy_spec(spec)
    if source is None:
        source = str(default_policy_path())
    if backend == "auto":  # the embedded default: segr1's own forward pass when it can run it
        from segr1.policies.native import native_unsupported

        reason = native_unsupported(source, device, dtype, options)
        if reason is not None:
            logger.info("embedded policy on the hf backend: %s", reason)
        backend = "hf" if reason else "native"
    if backend == "native":
        from segr1.policies.native import NativePolicy

        return NativePolicy(source, device=device, dtype=dtype, **options)
    if backend == "hf":
        from segr1.policies.hf import HFPolicy

        return HFPolicy(source, device=device, dtype=dtype, **options)
    try:
        import vllm  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"policy spec {spec!r} needs vLLM, which is not installed: pip install 'segr1[vllm]' "
            "(CUDA only), or use 'hf:<id|folder>'"
        ) from err
    from segr1.policies.vllm_backend import VLLMPolicy

    return VLLMPolicy(source, device=device, dtype=dtype, **options)


__all__ = [
    "BACKENDS",
    "DEFAULT_POLICY_DESCRIPTION",
    "DetailedPolicy",
    "POLICY_METADATA_FILE",
    "Generation",
    "SHIPPED_POLICY_DIR",
    "Policy",
    "default_policy_path",
    "generate_with_info",
    "known_metadata",
    "load_policy",
    "parse_policy_spec",
    "policy_metadata",
    "read_policy_metadata",
    "shipped_policy_available",
    "task_warning",
    "trained_tasks",
    "write_policy_metadata",
]


def recorded_system_prompt(metadata: dict[str, Any] | None) -> str | None:
    """The system turn a checkpoint was trained with, read from its ``segr1_policy.json`` content.

    Returns ``""`` for "no system turn" (recorded as ``null``/``"none"``), ``None`` when nothing is recorded or
    the recorded value is ``"default"`` (the task's Seg-R1 system prompt), else the recorded text. ``segr1
    train`` records it at the top level or under ``segr1_args``.
    """
    metadata = metadata or {}
    if "system_prompt" in metadata:
        value = metadata["system_prompt"]
    elif "system_prompt" in (metadata.get("segr1_args") or {}):
        value = metadata["segr1_args"]["system_prompt"]
    else:
        return None
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        return ""
    return None if value == "default" else str(value)


def trained_tasks(metadata: dict[str, Any] | None) -> tuple[str, ...] | None:
    """The tasks a checkpoint's ``segr1_policy.json`` content says it was trained for, or None when it says
    nothing (no file, as for hub ids, or neither key). Reads ``"tasks": [...]`` or the older ``"task": "..."``;
    ``segr1 train`` may also record them under ``segr1_args``."""
    metadata = metadata or {}
    for where in (metadata, metadata.get("segr1_args") or {}):
        if not isinstance(where, dict):
            continue
        tasks = where.get("tasks")
        if isinstance(tasks, list | tuple) and all(isinstance(t, str) for t in tasks) and tasks:
            return tuple(tasks)
        if isinstance(where.get("task"), str) and where["task"]:
            return (where["task"],)
    return None


def task_warning(metadata: dict[str, Any] | None, task: str, name: str = "the policy") -> str | None:
    """One line saying that ``task`` is not among the tasks the checkpoint records (see
    :func:`trained_tasks`), or None when it is, or when the checkpoint records none."""
    tasks = trained_tasks(metadata)
    if tasks is None or task in tasks:
        return None
    return (
        f"{name} was trained for {', '.join(tasks)} only (its {POLICY_METADATA_FILE}), not {task}: "
        "expect empty or wrong masks; pass --model with a checkpoint trained for this task"
    )
