"""The demo's request handler: one uploaded image + task + text -> overlay, mask PNG, answer, prompts.

Pure of Gradio, so it is unit-tested without a server. Uploads are untrusted: the file size is checked
before the file is opened, the pixel count from the header before the pixels are decoded, and every
failure to read becomes a :class:`DemoInputError` whose message is meant for the person who uploaded
(the Gradio layer shows it as a ``gr.Error``). Coordinates in the results are in the IMAGE frame
(pixels, x right, y down, boxes xyxy) unless a key says ``model_frame``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from segr1.pipeline import SegResult

logger = logging.getLogger(__name__)

DEMO_TASKS: tuple[str, ...] = ("foreground", "referring", "reasoning")
TEXT_TASKS: tuple[str, ...] = ("referring", "reasoning")
MASK_SUFFIX = "_mask.png"


class DemoInputError(ValueError):
    """A request the demo refuses (bad upload, missing text, ...); the message is shown to the user."""


class Pipeline(Protocol):
    """What the handler needs of ``segr1.pipeline.SegR1Pipeline``: ``task`` and ``(image, text) -> SegResult``."""

    task: str

    def __call__(self, images: np.ndarray, texts: str | None = None) -> SegResult: ...


@dataclass(frozen=True)
class DemoLimits:
    """Bounds on what one request may ask for and on how many run at once.

    Attributes:
        max_upload_mb: largest accepted upload, in MiB (also Gradio's ``max_file_size``).
        max_pixels: largest accepted width x height of an uploaded image (checked before decoding).
        max_text_chars: longest accepted instruction text.
        concurrency: requests processed at the same time (the policy itself runs one at a time).
        max_queue: requests waiting in Gradio's queue before new ones are refused ("queue is full").
        keep_outputs_s: mask PNGs written for downloads are deleted after this many seconds.
        request_timeout_s: a request still running after this many seconds gets a "took too long" message
            (the segmenter bounds its own work, so the computation behind it ends too).
    """

    max_upload_mb: float = field(default=10.0, metadata={"help": "largest upload in MiB"})
    max_pixels: int = field(default=4096 * 4096, metadata={"help": "largest width x height of an upload"})
    max_text_chars: int = field(default=1000, metadata={"help": "longest instruction text"})
    concurrency: int = field(default=2, metadata={"help": "requests processed at once"})
    max_queue: int = field(default=32, metadata={"help": "requests waiting before new ones are refused"})
    keep_outputs_s: float = field(default=3600.0, metadata={"help": "lifetime of downloadable mask files"})
    request_timeout_s: float = field(default=120.0, metadata={"help": "longest time one request may take"})

    def __post_init__(self) -> None:
        if not self.max_upload_mb > 0:
            raise ValueError(f"max_upload_mb must be > 0, got {self.max_upload_mb}")
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive int, got {self.max_pixels!r}")
        if self.max_text_chars < 1:
            raise ValueError(f"max_text_chars must be >= 1, got {self.max_text_chars}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")
        if not self.keep_outputs_s > 0:
            raise ValueError(f"keep_outputs_s must be > 0, got {self.keep_outputs_s}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass
class DemoResponse:
    """What one request returns.

    Attributes:
        overlay: (H, W, 3) uint8 RGB, the image with the mask, boxes and points drawn (image frame); each
            object in its own colour when the answer holds several.
        mask_path: PNG file, 0/255, (H, W) like the image, for download.
        answer: the policy's raw answer text (its coordinates are in the MODEL frame).
        details: JSON-serialisable: task, text, prompts in the image and model frames, frame, image size,
            mask area, the objects (``instances``: boxes, points, labels and mask area of each), error, timings
            (``SegResult.to_dict`` without the answer).
        status: one human-readable line (mask area, or why there is no mask).
    """

    overlay: np.ndarray
    mask_path: Path
    answer: str
    details: dict[str, Any]
    status: str


def check_task_text(task: str, text: str | None, limits: DemoLimits) -> str | None:
    """Validate the task and the instruction text; returns the stripped text (None when empty).

    Raises:
        DemoInputError: unknown task, missing text for ``referring``/``reasoning``, or text too long.
    """
    if task not in DEMO_TASKS:
        raise DemoInputError(f"unknown task {task!r}; choose one of {', '.join(DEMO_TASKS)}")
    text = (text or "").strip() or None
    if text is not None and len(text) > limits.max_text_chars:
        raise DemoInputError(
            f"the instruction is {len(text)} characters long; this demo accepts at most {limits.max_text_chars}"
        )
    if task in TEXT_TASKS and text is None:
        what = "a referring expression (e.g. 'the red circle')" if task == "referring" else "a question"
        raise DemoInputError(f"the {task} task needs {what}: type it in the instruction box")
    return text


def load_upload(path: str | os.PathLike[str] | None, limits: DemoLimits) -> np.ndarray:
    """Read an uploaded image file as (H, W, 3) uint8 RGB (EXIF orientation applied), within ``limits``.

    Raises:
        DemoInputError: no file, file too large in bytes or pixels, or not a decodable image.
    """
    from segr1.data.io import read_image

    if path is None or str(path) == "":
        raise DemoInputError("no image: upload an image (PNG, JPEG, WebP, ...) or pick an example")
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise DemoInputError("the uploaded file is missing on the server; upload it again") from exc
    if size > limits.max_upload_bytes:
        raise DemoInputError(
            f"the upload is {size / 2**20:.1f} MiB; this demo accepts images up to {limits.max_upload_mb:g} MiB"
        )
    check_upload_header(p, limits.max_pixels)
    try:
        return read_image(p, max_pixels=limits.max_pixels)
    except OSError as exc:  # corrupt or truncated data behind a valid header
        logger.info("rejected upload %s: %s", p.name, exc)
        raise DemoInputError("the image file is corrupt or truncated; it could not be decoded") from exc


def check_upload_header(source: str | os.PathLike[str] | BinaryIO, max_pixels: int | None) -> tuple[int, int]:
    """(W, H) of an uploaded image from its header alone (no pixel is decoded), within ``max_pixels``.

    ``source``: a file path or a binary stream. Raises :class:`DemoInputError` for too many pixels (also a
    header over Pillow's decompression-bomb limit) or a file Pillow cannot identify.
    """
    limit = max_pixels or None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:  # reads the header only
                width, height = im.size
    except Image.DecompressionBombError as exc:
        raise DemoInputError(
            "the image has too many pixels (its header declares a decompression-bomb size); this demo "
            f"accepts at most {limit or Image.MAX_IMAGE_PIXELS:,} pixels"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DemoInputError(
            "the upload is not an image this demo can read (use PNG, JPEG, WebP, BMP or TIFF)"
        ) from exc
    if limit is not None and width * height > limit:
        raise DemoInputError(
            f"the image is {width}x{height} = {width * height:,} pixels, too many pixels: this demo accepts "
            f"at most {limit:,} pixels (e.g. {_square_side(limit)}x{_square_side(limit)})"
        )
    return width, height


def _square_side(pixels: int) -> int:
    return int(pixels**0.5)


def handle_request(
    pipelines: Mapping[str, Pipeline],
    image_path: str | os.PathLike[str] | None,
    task: str,
    text: str | None,
    limits: DemoLimits,
    out_dir: str | os.PathLike[str],
) -> DemoResponse:
    """Segment one uploaded image with the pipeline of ``task``.

    Args:
        pipelines: task name -> pipeline, for the tasks in :data:`DEMO_TASKS` the demo offers.
        image_path: the uploaded image file.
        task: "foreground", "referring" or "reasoning".
        text: the referring expression or question (ignored by "foreground").
        limits: upload and text bounds.
        out_dir: folder for the downloadable mask PNG (old files there are pruned).

    Returns:
        a :class:`DemoResponse`; an unparsable answer or an empty mask is a normal response whose
        ``status`` says so, not an error.

    Raises:
        DemoInputError: a request the demo refuses (see :func:`check_task_text`, :func:`load_upload`).
    """
    text = check_task_text(task, text, limits)
    if task not in TEXT_TASKS:
        text = None  # the foreground instruction has no slot for it
    if task not in pipelines:
        raise DemoInputError(f"the {task} task is not available in this demo")
    image = load_upload(image_path, limits)
    pipeline = pipelines[task]
    t0 = time.perf_counter()
    result = run_with_time_limit(lambda: pipeline(image, text), limits.request_timeout_s)
    total_s = time.perf_counter() - t0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prune_outputs(out_dir, limits.keep_outputs_s)
    mask_path = write_mask(result.mask, out_dir, stem=Path(image_path).stem if image_path else "image")
    details = {"task": task, "text": text, **result.to_dict()}
    details.pop("answer", None)  # returned on its own
    details["timings"]["total_s"] = round(total_s, 6)
    return DemoResponse(
        overlay=result.overlay,
        mask_path=mask_path,
        answer=result.answer,
        details=details,
        status=describe(result),
    )


class RequestTimeout(DemoInputError):
    """A request that did not finish within ``DemoLimits.request_timeout_s``."""


def run_with_time_limit(work: Callable[[], Any], timeout_s: float) -> Any:
    """``work()`` in a daemon thread; its result, or :class:`RequestTimeout` after ``timeout_s`` seconds.

    The thread cannot be killed: a timed-out computation finishes in the background (the policy's answer
    budget and the segmenter's own time bound keep that short) and its result is dropped.
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="segr1-demo-request", daemon=True).start()
    if not done.wait(timeout_s):
        raise RequestTimeout(
            f"the request took longer than {timeout_s:g} s and was given up; try a smaller or simpler image"
        )
    if "error" in box:
        raise box["error"]
    return box["result"]


def describe(result: SegResult) -> str:
    """One line for people: the mask's area and prompt counts, or why there is no mask."""
    n_boxes, n_points = len(result.prompt.boxes), len(result.prompt.points)
    prompts = f"{n_boxes} box{'es' if n_boxes != 1 else ''}, {n_points} point{'s' if n_points != 1 else ''}"
    n_objects = len(getattr(result, "instances", None) or ())
    if n_objects > 1:
        prompts += f"; {n_objects} objects, each in its own colour"
    if result.error is None:
        area = 100.0 * float(np.count_nonzero(result.mask)) / max(result.mask.size, 1)
        return f"ok: mask covers {area:.1f}% of the image ({prompts})"
    return f"no mask: {result.error} ({prompts})"


def write_mask(mask: np.ndarray, out_dir: Path, stem: str = "image") -> Path:
    """Write ``mask`` (H, W) bool as a 0/255 PNG with a unique name in ``out_dir``; returns its path."""
    from segr1.data.io import write_mask_png

    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:64] or "image"
    return write_mask_png(
        np.asarray(mask, dtype=bool), out_dir / f"{safe}-{uuid.uuid4().hex[:12]}{MASK_SUFFIX}"
    )


def prune_outputs(out_dir: Path, max_age_s: float, now: float | None = None) -> int:
    """Delete mask files in ``out_dir`` older than ``max_age_s`` seconds; returns how many were deleted."""
    now = time.time() if now is None else now
    removed = 0
    for path in out_dir.glob(f"*{MASK_SUFFIX}"):
        try:
            if now - path.stat().st_mtime > max_age_s:
                path.unlink()
                removed += 1
        except OSError:  # removed by a concurrent request
            continue
    return removed
