"""FCoT, the Seg-R1 release's SFT data (``geshang/FCoT`` on the hub, or a local copy in the same layout).

Layout (a 🤗 ``datasets`` dataset, parquet files under ``data/``, split ``train``): one row per image with

* ``image``: the image (a ``datasets.Image`` cell: encoded bytes);
* ``problem``: the user text (the instruction);
* ``thinking``: the chain of thought; ``solution``: the answer in Seg-R1's tags (box, points, labels);
* ``system`` (optional): the row's own system turn.

The release's SFT (``seg-r1/src/open_r1/sft.py``) trains on ``"{thinking} {solution}"`` (`fcot_target`) after a
user turn holding the problem text and then the image (text first), with the row's system turn when it has one
and its "think" system prompt otherwise (`segr1.styles.seg_r1.SYSTEM_SFT`). The image is used as stored (no
square frame): the coordinates in ``solution`` refer to it.

`load_fcot` reads the dataset with ``datasets.load_dataset`` (a hub id, which needs the hub or its local cache,
or a folder), validates every row (dataset files are untrusted: strings only, bounded lengths, images whose
header decodes within segr1's pixel bound), writes the images once into a cache folder (the original encoded
bytes, no re-encoding) with a manifest, and returns `Sample` records whose ``meta["target"]`` holds the ready
SFT completion and ``meta["system"]`` the row's system turn (or None). `segr1.data.trl.to_sft_dataset` turns
them into TRL rows; a recipe names them as a ``train_data`` source ``{fcot: geshang/FCoT}`` (or a folder).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from segr1.data.records import Sample

logger = logging.getLogger(__name__)

HUB_ID = "geshang/FCoT"
REQUIRED_COLUMNS: tuple[str, ...] = ("image", "problem", "thinking", "solution")
OPTIONAL_COLUMNS: tuple[str, ...] = ("system",)
MAX_FIELD_CHARS = 32 * 1024  # longest accepted problem / thinking / solution / system text
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}


def fcot_target(thinking: str, solution: str) -> str:
    """The SFT completion of one FCoT row, as the release's ``sft.py`` writes it: ``"{thinking} {solution}"``."""
    return f"{thinking} {solution}"


def _text(row: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = row.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise ValueError(f"{key!r} is {len(value)} characters long; at most {MAX_FIELD_CHARS} are accepted")
    return value


def _image_bytes(cell: Any) -> tuple[bytes, str]:
    """The encoded bytes of a ``datasets.Image(decode=False)`` cell and a file extension for them."""
    from PIL import Image

    from segr1.data.io import MAX_IMAGE_PIXELS

    data = cell.get("bytes") if isinstance(cell, dict) else None
    if data is None and isinstance(cell, dict) and cell.get("path"):
        data = Path(cell["path"]).read_bytes()
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ValueError("the image cell holds no encoded bytes")
    with Image.open(io.BytesIO(data)) as im:  # header only
        fmt, (w, h) = im.format, im.size
    if fmt not in _EXTENSIONS:
        raise ValueError(f"unsupported image format {fmt!r}")
    if w * h > MAX_IMAGE_PIXELS:
        raise ValueError(f"image of {w}x{h} pixels exceeds segr1.data.io.MAX_IMAGE_PIXELS")
    return bytes(data), _EXTENSIONS[fmt]


def default_cache_dir() -> Path:
    """``$SEGR1_CACHE/fcot`` (default ``~/.cache/segr1/fcot``)."""
    return Path(os.environ.get("SEGR1_CACHE") or Path.home() / ".cache" / "segr1") / "fcot"


def _open_dataset(source: str, split: str) -> Any:
    import datasets

    try:
        ds = datasets.load_dataset(str(source), split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        raise FileNotFoundError(
            f"could not load the FCoT dataset {source!r} (split {split!r}): {exc}. Give the hub id "
            f"{HUB_ID!r} (needs the hub or its local cache) or a folder in the same layout (parquet files "
            "under data/ with columns image, problem, thinking, solution[, system])"
        ) from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"{source!r} is not in FCoT's layout: missing columns {missing} (has {ds.column_names}); "
            f"expected {list(REQUIRED_COLUMNS)} and optionally {list(OPTIONAL_COLUMNS)}"
        )
    if isinstance(ds.features.get("image"), datasets.Image):
        ds = ds.cast_column("image", datasets.Image(decode=False))
    return ds


def load_fcot(
    source: str | os.PathLike[str] = HUB_ID,
    *,
    split: str = "train",
    name: str | None = None,
    task: str = "foreground",
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[Sample]:
    """The FCoT rows of ``source`` as SFT samples (module docstring), in dataset order.

    Sample ``id`` ``"<name>/<row:05d>"`` (``name`` defaults to the source's last path part), ``image`` a file in
    the cache folder, ``mask`` None, ``text`` the problem, ``task`` as given, ``meta`` ``{"target", "system",
    "dataset", "row"}``. Rows that fail validation are left out and counted in a warning; a source with no
    valid row raises ValueError.
    """
    from segr1.data.folders import read_manifest, write_manifest

    source = str(source)
    ds = _open_dataset(source, split)
    name = name or Path(source.rstrip("/")).name or "fcot"
    key = hashlib.sha256(f"{source}|{split}|{ds._fingerprint}".encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = cache / f"{''.join(c if c.isalnum() or c in '-_' else '_' for c in name)}-{split}-{key}"
    manifest = out / "manifest.jsonl"
    if not manifest.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            samples = _materialize(ds, tmp, name, task)
            write_manifest(samples, tmp / "manifest.jsonl")
            try:
                os.rename(tmp, out)
            except OSError:  # another process wrote it first
                if not manifest.is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        logger.info("FCoT %s (%s): %d rows cached in %s", source, split, len(ds), out)
    samples = read_manifest(manifest)
    for s in samples:
        s.task = task
    return samples


def _materialize(ds: Any, folder: Path, name: str, task: str) -> list[Sample]:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    bad: list[str] = []
    for i, row in enumerate(ds):
        try:
            problem, thinking, solution = (_text(row, k) for k in ("problem", "thinking", "solution"))
            system = _text(row, "system", optional=True)
            data, ext = _image_bytes(row["image"])
        except (ValueError, OSError, KeyError) as exc:  # untrusted rows: leave out, count, go on
            if len(bad) < 5:
                bad.append(f"row {i}: {exc}")
            else:
                bad.append("")
            continue
        path = folder / "images" / f"{i:05d}{ext}"
        path.write_bytes(data)
        samples.append(
            Sample(
                id=f"{name}/{i:05d}",
                image=path,
                mask=None,
                text=problem,
                task=task,
                meta={"target": fcot_target(thinking, solution), "system": system, "dataset": name, "row": i},
            )
        )
    if bad:
        shown = "; ".join(b for b in bad if b)
        logger.warning("FCoT %s: left out %d invalid rows (%s)", name, len(bad), shown)
    if not samples:
        raise ValueError(f"FCoT source {name!r} has no valid row ({'; '.join(b for b in bad if b)})")
    return samples
