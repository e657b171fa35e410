"""Image/mask folder pairs and JSONL manifests.

:class:`FolderPairDataset` pairs the files of an images folder and a masks folder by file stem, whatever
their extensions (``a.JPG`` + ``a.png``), over one or several roots, in a deterministic sorted order, and
records what it could not pair. A root is either an ``(images_dir, masks_dir)`` pair or a folder holding
the two under a common name (``images/`` + ``masks/``, ``Imgs/`` + ``GT/``, ``Image/`` + ``GT_Object/``,
``im/`` + ``gt/``, ``DUTS-TE-Image/`` + ``DUTS-TE-Mask/``, ...).

A manifest is a JSON-lines file, one sample per line::

    {"id": "a", "image": "images/a.jpg", "mask": "masks/a.png", "text": null, "task": "foreground", "meta": {}}

``image`` (required) and ``mask`` (optional) paths are relative to the manifest's folder unless absolute.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segr1.data.io import IMAGE_EXTENSIONS
from segr1.data.records import Sample

logger = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("foreground", "referring", "reasoning", "prerl")
IMAGE_DIR_NAMES: tuple[str, ...] = ("images", "image", "imgs", "img", "im", "jpegimages", "rgb")
MASK_DIR_NAMES: tuple[str, ...] = (
    "masks",
    "mask",
    "gt",
    "gts",
    "gt_object",
    "groundtruth",
    "ground_truth",
    "labels",
)
MANIFEST_FIELDS: tuple[str, ...] = ("id", "image", "mask", "text", "task", "meta")
#: ``meta`` keys that hold a file path (relative ones are read against the manifest's folder): ``instances``, an
#: instance map of the sample's objects (`segr1.instances.decode_instance_map`).
MANIFEST_PATH_META: tuple[str, ...] = ("instances",)

PathLike = str | os.PathLike[str]
Root = PathLike | tuple[PathLike, PathLike | None]


def find_pair_dirs(root: PathLike) -> tuple[Path, Path]:
    """The (images_dir, masks_dir) sub-folders of ``root``, matched by name case-insensitively.

    Known names (:data:`IMAGE_DIR_NAMES`, :data:`MASK_DIR_NAMES`) come first, then any sub-folder whose
    name ends in ``-image``/``_image(s)`` and ``-mask``/``_mask(s)``/``-gt``. Raises ``FileNotFoundError``
    when ``root`` is missing and ``ValueError`` (listing the sub-folders) when no pair is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root is not a folder: {str(root)!r}")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    by_name = {p.name.lower(): p for p in subdirs}

    def pick(names: tuple[str, ...], suffixes: tuple[str, ...]) -> Path | None:
        for name in names:
            if name in by_name:
                return by_name[name]
        hits = [p for p in subdirs if p.name.lower().endswith(suffixes)]
        return hits[0] if len(hits) == 1 else None

    images = pick(IMAGE_DIR_NAMES, ("-image", "_image", "-images", "_images", "-imgs", "_imgs"))
    masks = pick(MASK_DIR_NAMES, ("-mask", "_mask", "-masks", "_masks", "-gt", "_gt"))
    if images is None or masks is None:
        found = [p.name for p in subdirs] or "none"
        raise ValueError(
            f"cannot find an images folder and a masks folder in {str(root)!r} (sub-folders: {found}); "
            f"name them e.g. images/ and masks/, or pass (images_dir, masks_dir) explicitly"
        )
    return images, masks


def files_by_key(
    folder: PathLike, suffixes: Iterable[str], *, recursive: bool = False
) -> dict[str, list[Path]]:
    """Group the files of ``folder`` whose extension (any case) is in ``suffixes`` (lower case, with the dot).

    The key is the file stem, or with ``recursive`` the path relative to ``folder`` without its extension
    (``sub/a``). Hidden files and folders (name starting with ``.``, e.g. macOS ``._*``) are skipped. Keys
    and the files of each key are sorted; a key with several files is a stem repeated with other extensions.
    """
    folder = Path(folder)
    wanted = set(suffixes)
    groups: dict[str, list[Path]] = {}
    for p in folder.rglob("*") if recursive else folder.iterdir():
        rel = p.relative_to(folder)
        if p.suffix.lower() in wanted and not any(part.startswith(".") for part in rel.parts) and p.is_file():
            groups.setdefault(rel.with_suffix("").as_posix(), []).append(p)
    return {key: sorted(groups[key]) for key in sorted(groups)}


def _index_images(folder: Path, recursive: bool) -> tuple[dict[str, Path], list[list[Path]]]:
    """Map key (stem, or relative path without extension) -> image file; also the groups of clashing files."""
    groups = files_by_key(folder, IMAGE_EXTENSIONS, recursive=recursive)
    unique = {k: v[0] for k, v in groups.items() if len(v) == 1}
    clashes = [v for v in groups.values() if len(v) > 1]
    return unique, clashes


class FolderPairDataset(Sequence[Sample]):
    """Image/mask pairs from one or several roots, as :class:`Sample` records (task ``"foreground"``).

    Args:
        roots: a list (a bare str/Path is one root); each an ``(images_dir, masks_dir)`` tuple (``masks_dir`` None: images without ground truth,
            ``mask=None``) or a folder with images/masks sub-folders (see :func:`find_pair_dirs`).
        names: dataset name per root (``meta["dataset"]``); default: the root folder's name (for a tuple,
            the images folder's parent's name).
        recursive: also pair files in sub-folders (keys are relative paths without extension).
        task: the ``task`` of every sample.

    Samples are sorted by dataset then key. ``id`` is the key for a single root and ``"<dataset>/<key>"``
    for several (ids may then contain ``/``). ``meta`` holds ``dataset``. Files that could not be paired are
    listed in ``unpaired_images``, ``unpaired_masks`` and ``ambiguous`` (same stem, several extensions, in
    one folder: skipped), and a warning with their counts is logged.
    """

    def __init__(
        self,
        roots: Sequence[Root] | Root,
        *,
        names: Sequence[str] | None = None,
        recursive: bool = False,
        task: str = "foreground",
    ) -> None:
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]  # a single root folder given bare
        if not roots:
            raise ValueError("FolderPairDataset needs at least one root")
        if names is not None and len(names) != len(roots):
            raise ValueError(f"got {len(names)} names for {len(roots)} roots")
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
        self.samples: list[Sample] = []
        self.unpaired_images: list[Path] = []
        self.unpaired_masks: list[Path] = []
        self.ambiguous: list[list[Path]] = []
        self.pair_dirs: list[tuple[Path, Path | None]] = []
        seen: dict[str, Path] = {}
        for i, root in enumerate(roots):
            if isinstance(root, tuple):
                images_dir, masks_dir = Path(root[0]), (None if root[1] is None else Path(root[1]))
                for d in (images_dir, masks_dir):
                    if d is not None and not d.is_dir():
                        raise FileNotFoundError(f"not a folder: {str(d)!r}")
                default_name = images_dir.resolve().parent.name
            else:
                images_dir, masks_dir = find_pair_dirs(root)
                default_name = Path(root).resolve().name
            name = names[i] if names is not None else default_name
            self.pair_dirs.append((images_dir, masks_dir))
            images, clashes = _index_images(images_dir, recursive)
            masks, mask_clashes = ({}, []) if masks_dir is None else _index_images(masks_dir, recursive)
            self.ambiguous += clashes + mask_clashes
            for key in sorted(images):
                if masks_dir is not None and key not in masks:
                    self.unpaired_images.append(images[key])
                    continue
                sid = key if len(roots) == 1 else f"{name}/{key}"
                if sid in seen:
                    raise ValueError(
                        f"duplicate sample id {sid!r} ({str(seen[sid])!r} and {str(images[key])!r}); "
                        "give the roots distinct names="
                    )
                seen[sid] = images[key]
                self.samples.append(Sample(sid, images[key], masks.get(key), None, task, {"dataset": name}))
            self.unpaired_masks += [masks[k] for k in sorted(masks) if k not in images]
        if self.unpaired_images or self.unpaired_masks or self.ambiguous:
            logger.warning(
                "%d pairs; %d images without a mask, %d masks without an image, %d ambiguous stems skipped "
                "(see .unpaired_images / .unpaired_masks / .ambiguous)",
                len(self.samples),
                len(self.unpaired_images),
                len(self.unpaired_masks),
                len(self.ambiguous),
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):  # type: ignore[override]
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        return f"FolderPairDataset({len(self.samples)} samples from {len(self.pair_dirs)} roots)"


# ------------------------------------------------------------------------------------------------ manifests


@dataclass
class ManifestError:
    """One bad manifest line (1-based ``line``) and why it was rejected."""

    line: int
    message: str


@dataclass
class Manifest:
    """The parsed samples of a manifest and its bad lines (which were skipped, not raised)."""

    path: Path
    samples: list[Sample] = field(default_factory=list)
    errors: list[ManifestError] = field(default_factory=list)


def _resolve(value: Any, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty path string, got {value!r}")
    p = Path(value)
    return p if p.is_absolute() else base / p


def _parse_line(obj: Any, base: Path) -> Sample:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    sid = obj.get("id")
    if not isinstance(sid, str) or not sid:
        raise ValueError(f"'id' must be a non-empty string, got {sid!r}")
    image = _resolve(obj.get("image"), "image", base)
    mask = None if obj.get("mask") is None else _resolve(obj["mask"], "mask", base)
    text = obj.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"'text' must be a string or null, got {text!r}")
    task = obj.get("task", "foreground")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"'meta' must be an object, got {meta!r}")
    extra = {k: v for k, v in obj.items() if k not in MANIFEST_FIELDS}
    meta = {**extra, **meta}
    for key in MANIFEST_PATH_META:  # paths in meta are relative to the manifest's folder, as image and mask
        if isinstance(meta.get(key), str) and meta[key]:
            meta[key] = str(_resolve(meta[key], f"meta.{key}", base))
    return Sample(sid, image, mask, text, task, meta)


def load_manifest(path: PathLike, *, check_files: bool = False) -> Manifest:
    """Parse a JSONL manifest, keeping good lines and recording bad ones (never raising for a bad line).

    A line is bad when it is not a JSON object, lacks a string ``id``/``image``, has a wrong-typed field, an
    unknown ``task``, an ``id`` already seen, or (``check_files``) names a missing image/mask file. Blank
    lines are skipped. Top-level keys other than :data:`MANIFEST_FIELDS` are moved into ``meta``.
    Raises ``FileNotFoundError`` for a missing manifest and ``ValueError`` when EVERY non-blank line is bad.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {str(path)!r}")
    base = path.absolute().parent
    result = Manifest(path)
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                sample = _parse_line(json.loads(raw), base)
                if sample.id in seen:
                    raise ValueError(f"duplicate id {sample.id!r}")
                if check_files:
                    for p in (sample.image, sample.mask):
                        if p is not None and not Path(p).is_file():
                            raise ValueError(f"file not found: {str(p)!r}")
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                result.errors.append(ManifestError(lineno, str(exc)))
                continue
            seen.add(sample.id)
            result.samples.append(sample)
    if result.errors and not result.samples:
        first = result.errors[0]
        raise ValueError(
            f"no valid line in manifest {str(path)!r} ({len(result.errors)} bad; line {first.line}: {first.message})"
        )
    if result.errors:
        shown = ", ".join(f"line {e.line}: {e.message}" for e in result.errors[:3])
        logger.warning(
            "%s: skipped %d bad line(s) (%s%s)",
            path,
            len(result.errors),
            shown,
            ", ..." * (len(result.errors) > 3),
        )
    return result


def read_manifest(path: PathLike, *, check_files: bool = False) -> list[Sample]:
    """The samples of a JSONL manifest; bad lines are skipped with a warning (see :func:`load_manifest`,
    which also returns them)."""
    return load_manifest(path, check_files=check_files).samples


def _relative(p: PathLike | None, base: Path) -> str | None:
    """``p`` (relative to the working directory, as for ``open``) relative to ``base`` when under it."""
    if p is None:
        return None
    p = Path(os.path.abspath(p))
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return p.as_posix()


def write_manifest(samples: Iterable[Sample], path: PathLike) -> Path:
    """Write samples as a JSONL manifest, atomically; returns the path.

    Sample paths are read as ``open`` would (relative ones against the working directory); those under the
    manifest's folder are written relative to it, others absolute. Raises
    ``ValueError`` for a sample whose image or mask is an array, or whose meta is not JSON-serialisable.
    """
    path = Path(path)
    base = Path(os.path.abspath(path.parent))
    lines = []
    for s in samples:
        for name, value in (("image", s.image), ("mask", s.mask)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ValueError(
                    f"sample {s.id!r}: {name} is a {type(value).__name__}, not a path; save it first"
                )
        record = {
            "id": s.id,
            "image": _relative(s.image, base),
            "mask": _relative(s.mask, base),
            "text": s.text,
            "task": s.task,
            "meta": s.meta,
        }
        try:
            lines.append(json.dumps(record, ensure_ascii=False))
        except TypeError as exc:
            raise ValueError(f"sample {s.id!r}: meta is not JSON-serialisable ({exc})") from exc
    from segr1.data.io import atomic_write_text

    return atomic_write_text(path, "".join(line + "\n" for line in lines))
