"""Which samples an evaluation runs on: a named benchmark, an image/mask folder pair or a JSONL manifest."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segr1.data.records import Sample

logger = logging.getLogger(__name__)

DEFAULT_DATASET: dict[str, str | None] = {"foreground": None, "referring": None, "reasoning": "reasonseg"}


def _family(name: str) -> str:
    from segr1.data.benchmarks import FOREGROUND_BENCHMARKS, REFER_NAMES

    if name in FOREGROUND_BENCHMARKS:
        return "foreground"
    return "referring" if name in REFER_NAMES else "reasoning"


def load_eval_samples(
    task: str,
    *,
    dataset: str | None = None,
    split: str | None = None,
    data_root: str | os.PathLike[str] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    images: str | os.PathLike[str] | None = None,
    masks: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    protocol: Any = None,
) -> tuple[Sequence[Sample], dict[str, Any]]:
    """The samples of one evaluation and the settings that identify them (``dataset``, ``split``, ...).

    Exactly one source: ``dataset`` (+ ``data_root``, ``split``, ``image_root``; see
    :func:`segr1.data.benchmarks.load_benchmark`), ``images`` + ``masks`` folders (foreground only; paired
    by file stem; images without a mask are kept with ``mask=None`` so they are counted, not dropped), or a
    ``manifest`` (JSONL, see :mod:`segr1.data.folders`).

    ``protocol`` (a `segr1.protocol` spec or object) may change which samples a benchmark gives:
    ``refcoco_sentences="one_per_image"`` keeps one sentence per RefCOCO image, ``reasonseg_query="random"``
    one random query per ReasonSeg image (both drawn with ``sample_seed``).

    Raises:
        ValueError: no source or several, a benchmark of another task, an unknown name or split.
        FileNotFoundError: the dataset's files are not where they should be.
    """
    if dataset is None and images is None and manifest is None:
        dataset = DEFAULT_DATASET.get(task)
    given = [s for s, v in (("--dataset", dataset), ("--images", images), ("--manifest", manifest)) if v]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one data source: --dataset NAME --data-root DIR, --images DIR --masks DIR "
            f"(foreground) or --manifest FILE; got {', '.join(given) or 'none'}"
        )
    if images is not None or masks is not None:
        return _folder_pair(task, images, masks)
    if manifest is not None:
        from segr1.data.folders import read_manifest

        path = Path(manifest)
        return read_manifest(path), {"dataset": f"manifest:{path.resolve()}", "split": None}
    from segr1.data.benchmarks import canonical_name, load_benchmark

    name = canonical_name(dataset)  # type: ignore[arg-type]
    if _family(name) != task:
        raise ValueError(
            f"{dataset!r} is a {_family(name)} benchmark; evaluate it with `segr1 eval {_family(name)}`"
        )
    if data_root is None:
        raise ValueError(f"--dataset {dataset} needs --data-root DIR (the folder holding the datasets)")
    from segr1.data.benchmarks import REASONSEG_NAMES
    from segr1.protocol import get_protocol

    protocol = get_protocol(protocol)
    if name in REASONSEG_NAMES and protocol.reasonseg_query == "random":
        from segr1.data.reasonseg import ReasonSegDataset

        samples: Sequence[Sample] = ReasonSegDataset(
            data_root, split=split or "val", queries="random", seed=protocol.sample_seed
        )
    else:
        samples = load_benchmark(name, data_root, split=split, image_root=image_root)
    if protocol.refcoco_sentences == "one_per_image" and hasattr(samples, "one_sentence_per_image"):
        samples = samples.one_sentence_per_image(protocol.sample_seed)
    resolved = getattr(samples, "split", None) or split
    if resolved is None and samples:
        resolved = samples[0].meta.get("split") if task == "foreground" else None
    return samples, {"dataset": name, "split": resolved}


def _folder_pair(
    task: str, images: str | os.PathLike[str] | None, masks: str | os.PathLike[str] | None
) -> tuple[list[Sample], dict[str, Any]]:
    from segr1.data.folders import FolderPairDataset

    if task != "foreground":
        raise ValueError(f"--images/--masks folder pairs are for `segr1 eval foreground`, not {task}")
    if images is None or masks is None:
        raise ValueError("give both --images DIR and --masks DIR")
    ds = FolderPairDataset([(images, masks)])
    samples = list(ds.samples)
    name = Path(images).resolve().parent.name or "folder"
    samples += [Sample(p.stem, p, None, None, "foreground", {"dataset": name}) for p in ds.unpaired_images]
    samples.sort(key=lambda s: s.id)
    if ds.unpaired_masks:
        logger.warning(
            "%d mask(s) have no image (e.g. %s): not evaluated",
            len(ds.unpaired_masks),
            ds.unpaired_masks[0].name,
        )
    settings = {
        "dataset": f"folder:{Path(images).resolve()}",
        "split": None,
        "masks": str(Path(masks).resolve()),
    }
    return samples, settings
