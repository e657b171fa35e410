"""The record every segr1 dataset yields."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

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


class LazySamples(Sequence[Sample]):
    """A dataset whose samples are built when indexed (masks decoded on demand).

    Subclasses fill ``self._items`` (one light record per sample) and implement ``_load(item) -> Sample``;
    ``len``, integer indexing (negative too) and slicing (a list of samples) come from here.
    """

    _items: list[Any]

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Sample: ...
    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...
    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._load(self._items[index])

    def _load(self, item: Any) -> Sample:
        raise NotImplementedError
