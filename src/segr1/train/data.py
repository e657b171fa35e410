"""Resolve a recipe's ``train_data`` sources into `Sample` records (see `segr1.train.config` for the format)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segr1.data.records import Sample

logger = logging.getLogger(__name__)

_SYNTH_KEYS = ("kind", "n", "seed", "size", "min_size", "max_size")
MULTI_KIND = "multi"  # synthetic kind of the multi-object referring scenes (segr1.data.synthetic_multi)


def default_cache_dir() -> Path:
    """``$SEGR1_CACHE/synthetic`` (default ``~/.cache/segr1/synthetic``)."""
    return Path(os.environ.get("SEGR1_CACHE") or Path.home() / ".cache" / "segr1") / "synthetic"


def synthetic_dir(spec: dict[str, Any], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder a synthetic source is cached in; its name encodes every generation parameter."""
    unknown = set(spec) - set(_SYNTH_KEYS)
    if unknown or "kind" not in spec:
        raise ValueError(f"synthetic source needs 'kind' and takes only {_SYNTH_KEYS}; got {spec!r}")
    size = spec.get("size")
    if isinstance(size, (list, tuple)):
        size = "x".join(str(int(v)) for v in size)
    parts = [str(spec["kind"]), f"s{int(spec.get('seed', 0))}", f"n{int(spec.get('n', 256))}"]
    if size is not None:
        parts.append(f"size{size}")
    else:
        parts.append(f"{int(spec.get('min_size', 160))}-{int(spec.get('max_size', 640))}")
    return Path(cache_dir or default_cache_dir()) / "-".join(parts)


def materialize_synthetic(
    spec: dict[str, Any], cache_dir: str | os.PathLike[str] | None = None
) -> list[Sample]:
    """Samples of a synthetic source, generating its folder on first use (atomically, so concurrent
    processes of one distributed run cannot see a half-written folder) and reading its manifest after."""
    from segr1.data.folders import read_manifest

    out = synthetic_dir(spec, cache_dir)
    manifest = out / "manifest.jsonl"
    if not manifest.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            _write_synthetic(spec, tmp)
            try:
                os.rename(tmp, out)
                logger.info("generated synthetic source %s", out)
            except OSError:  # another process won the race; use its copy
                if not manifest.is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return read_manifest(manifest)


def _write_synthetic(spec: dict[str, Any], out: Path) -> None:
    """Write a synthetic source's scenes into ``out``: `segr1.data.synthetic.write_scenes`, or for ``kind:
    multi`` the multi-object scenes of `segr1.data.synthetic_multi.write_multi_scenes`."""
    size = spec.get("size")
    size = tuple(size) if isinstance(size, list) else size
    common = {"seed": int(spec.get("seed", 0)), "size": size, "min_size": int(spec.get("min_size", 160)),
              "max_size": int(spec.get("max_size", 640))}  # fmt: skip
    if spec["kind"] == MULTI_KIND:
        from segr1.data.synthetic_multi import write_multi_scenes

        write_multi_scenes(int(spec.get("n", 256)), out, **common)
        return
    from segr1.data.synthetic import write_scenes

    write_scenes(spec["kind"], int(spec.get("n", 256)), out, progress=False, **common)


def load_source(src: dict[str, Any], cache_dir: str | os.PathLike[str] | None = None) -> list[Sample]:
    """Samples of one ``train_data`` source (folder pair, manifest, synthetic or FCoT)."""
    if "synthetic" in src:
        samples = materialize_synthetic(dict(src["synthetic"]), cache_dir)
    elif "fcot" in src:
        from segr1.data.fcot import load_fcot

        fcot_cache = Path(cache_dir) / "fcot" if cache_dir is not None else None
        samples = load_fcot(
            src["fcot"], split=src.get("split", "train"), name=src.get("name"), cache_dir=fcot_cache
        )
    elif "manifest" in src:
        from segr1.data.folders import read_manifest

        samples = read_manifest(src["manifest"])
    elif "root" in src:
        from segr1.data.folders import FolderPairDataset

        roots = src["root"] if isinstance(src["root"], list) else [src["root"]]
        samples = list(FolderPairDataset(roots))
    else:
        from segr1.data.benchmarks import pair_folders

        images, masks = Path(src["images"]), Path(src["masks"])
        for d in (images, masks):
            if not d.is_dir():
                raise FileNotFoundError(f"train_data folder not found: {str(d)!r} (in source {src!r})")
        pairing = pair_folders(images, masks, exclude=tuple(src.get("exclude", ())))
        if pairing.images_without_mask or pairing.masks_without_image:
            logger.warning(
                "%s: %d pairs; %d images without a mask and %d masks without an image left out",
                images,
                len(pairing.pairs),
                len(pairing.images_without_mask),
                len(pairing.masks_without_image),
            )
        name = src.get("name") or images.name
        samples = [
            Sample(id=f"{name}/{stem}", image=img, mask=msk, task="foreground", meta={"dataset": name})
            for stem, img, msk in pairing.pairs
        ]
    if "task" in src:
        for s in samples:
            s.task = src["task"]
    if not samples:
        raise ValueError(f"train_data source {src!r} holds no samples")
    return samples


def load_train_samples(
    sources: Sequence[dict[str, Any]],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    max_samples: int | None = None,
) -> list[Sample]:
    """Concatenate the samples of every source (in order), keeping at most ``max_samples``."""
    if not sources:
        raise ValueError(
            "the recipe has no train_data; add e.g. `train_data: [{images: DIR, masks: DIR}]` or "
            "`train_data: [{synthetic: {kind: salient, n: 256, seed: 0}}]`"
        )
    samples: list[Sample] = []
    for src in sources:
        got = load_source(src, cache_dir)
        logger.info("train_data source %s: %d samples", src, len(got))
        samples += got
    if max_samples is not None:
        samples = samples[:max_samples]
    return samples
