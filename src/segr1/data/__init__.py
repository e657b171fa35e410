"""Datasets: folder pairs, benchmark layouts, RefCOCO family, ReasonSeg, synthetic scenes.

The main names are exported lazily: ``import segr1.data`` loads only :class:`Sample`; the module that
defines any other name (e.g. ``synthetic``, which needs OpenCV) is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from segr1.data.records import Sample

if TYPE_CHECKING:
    from segr1.data.benchmarks import load_benchmark
    from segr1.data.folders import FolderPairDataset, read_manifest, write_manifest
    from segr1.data.synthetic import generate_scene, scene_at

_LAZY = {
    "load_benchmark": "segr1.data.benchmarks",
    "FolderPairDataset": "segr1.data.folders",
    "read_manifest": "segr1.data.folders",
    "write_manifest": "segr1.data.folders",
    "generate_scene": "segr1.data.synthetic",
    "scene_at": "segr1.data.synthetic",
}

__all__ = [
    "FolderPairDataset",
    "Sample",
    "generate_scene",
    "load_benchmark",
    "read_manifest",
    "scene_at",
    "write_manifest",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
