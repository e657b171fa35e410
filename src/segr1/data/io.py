"""Reading and writing images and masks, safely.

Image files are untrusted input: every reader checks the pixel count *before* decoding (a small PNG can
declare a 100 000 x 100 000 canvas), applies the EXIF orientation (as OpenCV's ``imread`` and every
photo viewer do, so masks annotated on the displayed photo line up) and turns any decoding failure into an
:class:`ImageReadError` that names the file. Missing files raise :class:`FileNotFoundError`. Both are
``OSError`` subclasses, so a batch job can record and count them with one ``except OSError``.

Mask convention (the PySODMetrics / benchmark one): a mask file is read as 8-bit values and a pixel is
foreground when its value is ``> 128``. Single-channel files (``L``, ``1``, ``I;16``) use their only channel;
multi-channel files (``RGB``, ``RGBA``, ``LA``, palette ``P``) use their **first** channel (red, or the
luminance of ``LA``), not a luminance mix. 16-bit files are scaled to 8 bits first (``v >> 8``). A mask file
whose values are only 0 and 1 reads as empty under this rule; :func:`read_mask` warns when it sees one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
"""File extensions (lower case, with the dot) treated as images when scanning folders."""

MAX_IMAGE_PIXELS: int = 178_956_970
"""Default bound on width x height of a file read by :func:`read_image`/:func:`read_mask`.

Twice Pillow's own warning threshold (about a 13 000 x 13 000 image). Change it module-wide by assigning
``segr1.data.io.MAX_IMAGE_PIXELS``, or per call with ``max_pixels=``; ``None`` or 0 disables the bound.
"""


class ImageReadError(OSError):
    """An image or mask file that exists but cannot be decoded (corrupt, truncated, not an image, too big)."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a non-hidden path whose extension (any case) is in :data:`IMAGE_EXTENSIONS`."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def _open(path: str | os.PathLike[str], max_pixels: int | None) -> Image.Image:
    """Open, bound-check, fully decode and EXIF-transpose one file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {str(p)!r}")
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                w, h = im.size
                if limit and w * h > limit:
                    raise ImageReadError(
                        f"{str(p)!r} is {w}x{h} = {w * h} pixels, over the limit of {limit}; "
                        "raise segr1.data.io.MAX_IMAGE_PIXELS (or pass max_pixels=) if the file is trusted"
                    )
                im.load()
                out = ImageOps.exif_transpose(im)
                if out is im:
                    out = im.copy()
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            f"{str(p)!r} exceeds Pillow's Image.MAX_IMAGE_PIXELS ({exc}); raise that limit too if the file is trusted"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow's failure modes on bad data
        raise ImageReadError(f"cannot read image {str(p)!r}: {type(exc).__name__}: {exc}") from exc
    return out


def _to_uint8_array(im: Image.Image) -> np.ndarray:
    """(H, W) or (H, W, C) uint8 array of a decoded image; 16/32-bit integer modes scaled to 8 bits."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode == "1":
        return np.asarray(im, dtype=np.uint8) * 255
    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im).astype(np.int64)
        if im.mode == "I" and arr.max(initial=0) <= 255:
            return np.clip(arr, 0, 255).astype(np.uint8)
        return np.clip(arr >> 8, 0, 255).astype(np.uint8)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    if im.mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array (image frame, EXIF orientation applied).

    Grey images are replicated to 3 channels; alpha is dropped (not composited); 16-bit images are scaled
    to 8 bits. ``max_pixels`` bounds W x H (default :data:`MAX_IMAGE_PIXELS`, 0 = no bound).

    Raises:
        FileNotFoundError: no such file.
        ImageReadError: the file cannot be decoded or has too many pixels.
    """
    arr = _to_uint8_array(_open(path, max_pixels))
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 2:  # LA
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif arr.shape[2] > 3:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def read_mask(
    path: str | os.PathLike[str], *, threshold: int = 128, max_pixels: int | None = None
) -> np.ndarray:
    """Read a mask file as an (H, W) bool array: 8-bit value of the first channel ``> threshold``.

    See the module docstring for the channel rule. Logs a warning when the file holds only the values 0
    and 1 (a 0/1 label map, which reads as all-False with the default threshold of 128).

    Raises:
        FileNotFoundError: no such file.
        ImageReadError: the file cannot be decoded or has too many pixels.
    """
    im = _open(path, max_pixels)
    if im.mode == "1":
        return np.asarray(im, dtype=bool).copy()
    raw_max = int(np.asarray(im).max(initial=0)) if im.mode.startswith("I;16") else None
    arr = _to_uint8_array(im)
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    if raw_max is None:
        raw_max = int(arr.max(initial=0))
    if raw_max == 1 and threshold >= 1:
        logger.warning("mask %s holds only 0/1 values; with threshold %d it reads as empty", path, threshold)
    return arr > threshold


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import (os.umask can only be read by setting it)


def user_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: ``0o666`` less the process umask at import.

    ``tempfile.mkstemp`` creates files ``0o600``; the atomic writers here chmod their temporary file to this
    before moving it into place, so outputs are as readable as any other file the user writes.
    """
    return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]):
    """Yield a temporary path next to ``path`` (mode :func:`user_file_mode`); move it onto ``path`` when the
    block succeeds, remove it otherwise. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, user_file_mode())
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (temporary file, fsync, rename; see :func:`atomic_path`)."""
    out = Path(path)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return out


_atomic_path = atomic_path


def write_mask_png(mask: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an (H, W) bool mask as an 8-bit single-channel PNG with values 0 and 255 (atomically).

    Parent folders are created. A non-bool array is refused (binarise it yourself: ``pred > 0.5``).
    """
    arr = np.asarray(mask)
    if arr.dtype != bool:
        raise TypeError(f"write_mask_png expects a bool mask, got dtype {arr.dtype}; binarise it first")
    if arr.ndim != 2:
        raise ValueError(f"write_mask_png expects an (H, W) mask, got shape {arr.shape}")
    out = Path(path)
    with _atomic_path(out) as tmp:
        Image.fromarray(arr.astype(np.uint8) * 255).save(tmp, format="PNG")
    return out


def write_image(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an (H, W, 3) uint8 RGB array atomically; the format follows the extension (PNG, JPEG, ...)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"write_image expects an (H, W, 3) uint8 array, got {arr.dtype} {arr.shape}")
    out = Path(path)
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"unknown image extension {out.suffix!r} in {str(out)!r}; use .png or .jpg")
    with _atomic_path(out) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format=fmt)
    return out
