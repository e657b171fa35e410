"""Device names given by users (``--device``), checked once with a message that says what to use instead."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def check_device(device: str | None) -> str:
    """``device`` as a checked torch device name; ``None`` -> ``"cuda"`` when available, else ``"cpu"``.

    Raises:
        ValueError: ``device`` is not a torch device name, or names CUDA on a machine without it.
    """
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(str(device)).type
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device; use e.g. cpu, cuda, cuda:1") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is available on this machine; use --device cpu")
    return str(device)
