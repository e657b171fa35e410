"""The record every segr1 dataset yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Sample:
    """One segmentation example.

    Attributes:
        id: unique within its dataset (used for output file names and resuming).
        image: path to an image file, or an (H, W, 3) uint8 RGB array.
        mask: path to a mask file, an (H, W) bool array, or None (no ground truth).
        text: the instruction text for referring/reasoning samples; None for foreground tasks.
        task: "foreground", "referring", "reasoning" or "prerl".
        meta: anything else (dataset name, split, ignore mask, ...), JSON-serialisable where possible.
    """

    id: str
    image: Path | np.ndarray
    mask: Path | np.ndarray | None = None
    text: str | None = None
    task: str = "foreground"
    meta: dict[str, Any] = field(default_factory=dict)
