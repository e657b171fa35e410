"""Datasets: folder pairs, benchmark layouts, RefCOCO family, ReasonSeg, synthetic scenes."""

from segr1.data.records import Sample

__all__ = ["Sample"]
