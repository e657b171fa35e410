"""The Gradio demo: upload an image, pick a task, type an instruction; get the overlay, the mask as a PNG,
the answer text and the parsed prompts. The same function is the HTTP API endpoint ``/segment``.

Models load once (:func:`load_pipelines`: one policy and one segmenter shared by the three task
pipelines); :func:`build_app` only wires them into a ``gr.Blocks`` and never loads anything, so tests
pass fake pipelines. Requests go through Gradio's queue (``DemoLimits.concurrency`` at once, at most
``DemoLimits.max_queue`` waiting); the policy, which is not thread-safe, runs one request at a time
while the segmenter of another request may run beside it.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import html
import io
import json
import logging
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np

from segr1.app.handler import DEMO_TASKS, DemoInputError, DemoLimits, Pipeline, handle_request

if TYPE_CHECKING:
    from PIL import Image

    from segr1.pipeline import SegR1Pipeline

logger = logging.getLogger(__name__)

API_NAME = "segment"
REPO_EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE_SEED = 9000  # synthetic examples: a seed outside the training seeds

PipelineSource = Mapping[str, Pipeline] | Callable[[str], Pipeline]
ExampleRow = tuple[str, str, str]  # (image path, task, text)


class LockedPolicy:
    """A policy wrapper that lets one thread at a time into ``generate`` (policies are not thread-safe)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.name: str = getattr(policy, "name", type(policy).__name__)
        self.frame: int | None = getattr(policy, "frame", None)
        # e.g. the system turn the checkpoint records
        self.metadata: dict[str, Any] = getattr(policy, "metadata", None) or {}
        self._lock = threading.Lock()

    def generate(
        self,
        images: Sequence[Image.Image],
        instructions: Sequence[str],
        num_samples: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
        system: str | None = None,
        **order: Any,
    ) -> list[list[str]]:
        """``Policy.generate`` under a lock: images in the model frame -> answers (model frame). ``order``:
        ``image_first=False`` for a text-first style (passed on only when given)."""
        with self._lock:
            return self.policy.generate(
                images,
                instructions,
                num_samples=num_samples,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                system=system,
                **order,
            )

    def generate_detailed(
        self,
        images: Sequence[Image.Image],
        instructions: Sequence[str],
        num_samples: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
        system: str | None = None,
        **order: Any,
    ) -> Any:
        """``segr1.policies.generate_with_info`` under the lock (answers and which ones hit the budget)."""
        from segr1.policies import generate_with_info

        with self._lock:
            return generate_with_info(
                self.policy,
                images,
                instructions,
                num_samples=num_samples,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                system=system,
                **order,
            )


def make_pipelines(
    policy: Any, segmenter: Any, tasks: Sequence[str] = DEMO_TASKS, **pipeline_kwargs: Any
) -> dict[str, SegR1Pipeline]:
    """One ``SegR1Pipeline`` per task sharing ``policy`` (wrapped in a :class:`LockedPolicy`) and ``segmenter``.

    The model frame is the policy's own ``frame`` when it records one (the frame it was trained at), else
    the prompt style's (768 foreground, 1024 referring/reasoning; 1024 at the seg-r1 demo stage);
    ``pipeline_kwargs`` (e.g. ``frame``, ``max_new_tokens``, ``prompt_style``, ``protocol``, ``stage``) go to
    every ``SegR1Pipeline``.
    """
    from segr1.pipeline import SegR1Pipeline

    locked = policy if isinstance(policy, LockedPolicy) else LockedPolicy(policy)
    frame = locked.frame if isinstance(locked.frame, int) else None
    kwargs = {"frame": frame, **pipeline_kwargs}
    return {task: SegR1Pipeline(locked, segmenter, task=task, **kwargs) for task in tasks}


def load_pipelines(
    model: str | None = None,
    segmenter: str | None = None,
    device: str | None = None,
    **pipeline_kwargs: Any,
) -> dict[str, SegR1Pipeline]:
    """Load the policy and the segmenter ONCE and build the demo's task pipelines (see :func:`make_pipelines`).

    Args:
        model: policy spec for ``segr1.policies.load_policy`` (None = the embedded tiny default).
        segmenter: spec for ``segr1.segmenters.load_segmenter`` ("grabcut", "sam2-hf:<id|folder>", ...);
            None: GrabCut for the embedded policy, SAM2.1-hiera-large for any other
            (`segr1.defaults.default_segmenter`).
        device: "cuda", "cpu", ...; None lets each backend choose.
    """
    from segr1.defaults import default_segmenter
    from segr1.policies import load_policy
    from segr1.protocol import get_protocol, segmenter_options
    from segr1.segmenters import load_segmenter

    policy = load_policy(model, device=device)
    options = segmenter_options(get_protocol(pipeline_kwargs.get("protocol"), "demo"))
    seg = load_segmenter(segmenter or default_segmenter(model), device=device, **options)
    return make_pipelines(policy, seg, **pipeline_kwargs)


def _temp_dir(prefix: str) -> Path:
    """A new temporary folder, removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def find_examples(folder: str | Path) -> list[ExampleRow]:
    """Example rows from a folder of images: ``*.png``/``*.jpg`` at its top level.

    An image listed in ``refs.jsonl`` (lines ``{"image": "x.png", "text": "the red circle"}``, the layout
    ``segr1 data`` writes) is a referring example with that text; ``"task"`` in the line may say
    ``"reasoning"``; every other image is a foreground example.
    """
    from segr1.data.io import is_image_file

    folder = Path(folder)
    refs: dict[str, tuple[str, str]] = {}
    refs_file = folder / "refs.jsonl"
    if refs_file.is_file():
        for n, line in enumerate(refs_file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                task = row.get("task", "referring")
                refs[Path(row["image"]).name] = (
                    task if task in DEMO_TASKS else "referring",
                    str(row["text"]),
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                logger.warning("%s line %d: not a {'image', 'text'} record; ignored", refs_file, n)
    rows = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p)):
        task, text = refs.get(path.name, ("foreground", ""))
        rows.append((str(path), task, text))
    return rows


def synthetic_examples(out_dir: str | Path, seed: int = EXAMPLE_SEED) -> list[ExampleRow]:
    """Write three synthetic scenes (salient, camouflaged, referring) into ``out_dir``; return example rows."""
    from segr1.data.io import write_image
    from segr1.data.synthetic import scene_at

    rows = []
    for kind in ("salient", "camouflaged", "referring"):
        scene = scene_at(kind, seed, 0, max_size=480)
        path = write_image(scene.image, Path(out_dir) / f"{kind}-0.png")
        rows.append((str(path), "referring" if kind == "referring" else "foreground", scene.text or ""))
    return rows


def default_examples(folder: str | Path | None = None) -> list[ExampleRow]:
    """Examples from ``folder`` (default: the repository's ``examples/``) when it holds images, else a few
    synthetic scenes written to a temporary folder; [] when neither works."""
    folder = Path(folder) if folder is not None else REPO_EXAMPLES_DIR
    if folder.is_dir():
        rows = find_examples(folder)
        if rows:
            return rows
    try:
        return synthetic_examples(_temp_dir("segr1-demo-examples-"))
    except Exception:  # examples are a convenience; the demo works without them
        logger.warning("could not make synthetic examples; the demo starts without examples", exc_info=True)
        return []


def guard_image_uploads(component: gr.Image, max_bytes: int, max_pixels: int | None = None) -> gr.Image:
    """Make ``component`` (a ``gr.Image`` input) check uploads before Gradio decodes anything.

    Gradio opens, and for other modes than the component's or inline ``data:`` URLs fully decodes, the
    upload while preprocessing, before our handler runs: a 79 KB 9000x9000 greyscale PNG cost hundreds of
    MB. The guard reads the header first and refuses too many bytes or pixels (``max_pixels``) with a
    ``gr.Error`` message; an inline image is base64-decoded (bounded by ``max_bytes``), checked and written
    to a file itself, so Gradio never decodes it. An unreadable file gets a message, not an opaque "Error".
    The guard wraps the instance's ``preprocess`` (Gradio calls ``block.preprocess``), not a subclass:
    Gradio writes a ``.pyi`` stub next to the module of every Component subclass at import.
    """
    original = component.preprocess

    def refuse(message: str) -> gr.Error:
        return gr.Error(message, title="Upload refused", print_exception=False)

    def check_header(source: Any) -> None:
        from segr1.app.handler import DemoInputError, check_upload_header

        try:
            check_upload_header(source, max_pixels)
        except DemoInputError as exc:
            raise refuse(str(exc)) from None

    def preprocess(payload: Any) -> Any:
        url = getattr(payload, "url", None) if payload is not None else None
        if isinstance(url, str) and url.startswith("data:"):
            if len(url) * 3 // 4 > max_bytes:
                raise refuse(f"the image is larger than {max_bytes / 2**20:g} MiB")
            data = _decode_data_url(url)
            if data is None:
                raise refuse("the inline image is not valid base64 image data")
            check_header(io.BytesIO(data))
            return str(_write_inline_upload(data, component))
        path = getattr(payload, "path", None) if payload is not None else None
        if isinstance(path, str) and Path(path).is_file():
            check_header(path)
        try:
            return original(payload)
        except gr.Error:
            raise
        except Exception as exc:
            logger.info("rejected an upload Gradio could not open: %s: %s", type(exc).__name__, exc)
            raise refuse(
                "the upload is not an image this demo can read (use PNG, JPEG, WebP, BMP or TIFF)"
            ) from None

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def _decode_data_url(url: str) -> bytes | None:
    """The bytes of a ``data:[<type>];base64,<data>`` URL, or None when it is not one."""
    head, sep, body = url.partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    try:
        return base64.b64decode(body, validate=True)
    except (ValueError, binascii.Error):
        return None


def _write_inline_upload(data: bytes, component: gr.Image) -> Path:
    """Write an inline upload's bytes (already header-checked) into Gradio's cache; returns the file."""
    folder = Path(getattr(component, "GRADIO_CACHE", None) or tempfile.gettempdir()) / "segr1-inline"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.img"
    path.write_bytes(data)
    return path


def _resolve_pipelines(pipelines: PipelineSource) -> dict[str, Pipeline]:
    if isinstance(pipelines, Mapping):
        resolved = dict(pipelines)
    elif callable(pipelines):
        resolved = {task: pipelines(task) for task in DEMO_TASKS}
    else:
        raise TypeError(
            f"pipelines must be a mapping task -> pipeline or a callable, got {type(pipelines).__name__}"
        )
    unknown = sorted(set(resolved) - set(DEMO_TASKS))
    if unknown or not resolved:
        raise ValueError(
            f"pipelines must map some of {DEMO_TASKS} to pipelines; got tasks {sorted(resolved)}"
        )
    return resolved


def _header(pipelines: Mapping[str, Pipeline], limits: DemoLimits, note: str | None) -> str:
    any_pipeline = next(iter(pipelines.values()))
    policy = getattr(getattr(any_pipeline, "policy", None), "name", "?")
    segmenter = getattr(getattr(any_pipeline, "segmenter", None), "name", "?")
    lines = [
        "# Seg-R1 demo",
        "A multimodal model reads the image and the instruction, writes its reasoning and box/point prompts; "
        "a promptable segmenter turns the prompts into a mask.",
        f"Policy: `{policy}` · segmenter: `{segmenter}` · uploads up to {limits.max_upload_mb:g} MiB and "
        f"{limits.max_pixels:,} pixels.",
    ]
    if note:
        lines.append(f"**Note:** {note}")
    return "\n\n".join(lines)


def build_app(
    pipelines: PipelineSource,
    examples: Sequence[Sequence[str]] | None = None,
    limits: DemoLimits | None = None,
    *,
    note: str | None = None,
    out_dir: str | Path | None = None,
) -> gr.Blocks:
    """Build the demo's ``gr.Blocks`` (queued, not launched) around already-loaded pipelines.

    Args:
        pipelines: task -> pipeline for some of "foreground", "referring", "reasoning" (a pipeline is called
            ``pipeline(image (H, W, 3) uint8 RGB, text) -> SegResult``), or a callable task -> pipeline,
            called once per task here.
        examples: rows ``(image path, task, text)``; None -> :func:`default_examples`; [] -> none.
        limits: upload/text bounds and queue sizes (default :class:`DemoLimits`).
        note: an extra line for the page header (e.g. "the default model is untrained").
        out_dir: where downloadable mask PNGs are written (default: a new temporary folder).

    The endpoint ``/segment`` takes ``(image, task, text)`` and returns ``(overlay image, mask PNG file,
    answer text, prompts JSON, status text)``.
    """
    limits = limits or DemoLimits()
    resolved = _resolve_pipelines(pipelines)
    tasks = [t for t in DEMO_TASKS if t in resolved]
    rows = default_examples() if examples is None else [tuple(r) for r in examples]
    rows = [r for r in rows if r[1] in resolved]
    mask_dir = Path(out_dir) if out_dir is not None else _temp_dir("segr1-demo-masks-")

    def segment(image: str | None, task: str, text: str) -> tuple[np.ndarray, str, str, dict[str, Any], str]:
        """Segment the object the task asks for.

        image: the image file; task: foreground, referring or reasoning; text: the referring expression or
        question (ignored by foreground). Returns the overlay (mask, boxes, points), the mask as a 0/255 PNG,
        the model's answer text (model-frame coordinates), the parsed prompts and details as JSON (image
        frame, pixels, boxes xyxy) and a status line.
        """
        try:
            r = handle_request(resolved, image, task, text, limits, mask_dir)
        except DemoInputError as exc:
            logger.info("refused a request: %s", exc)
            message = html.escape(str(exc), quote=False)  # the modal renders HTML; the task may be user text
            raise gr.Error(message, title="Cannot segment this request", print_exception=False) from None
        except Exception as exc:
            logger.exception("request failed (task %r)", task)
            raise gr.Error(
                f"internal error ({type(exc).__name__}); see the server log", title="Error"
            ) from exc
        return r.overlay, str(r.mask_path), r.answer, r.details, r.status

    with gr.Blocks(
        title="Seg-R1 demo", delete_cache=(3600, int(limits.keep_outputs_s)), analytics_enabled=False
    ) as app:
        gr.Markdown(_header(resolved, limits, note))
        with gr.Row():
            with gr.Column():
                image_in = guard_image_uploads(
                    gr.Image(
                        label="Image",
                        type="filepath",
                        image_mode=None,  # hand over the file as uploaded: no decode by Gradio
                        sources=["upload", "clipboard"],
                        elem_id="segr1-image",
                    ),
                    limits.max_upload_bytes,
                    limits.max_pixels,
                )
                task_in = gr.Radio(tasks, value=tasks[0], label="Task", elem_id="segr1-task")
                text_in = gr.Textbox(
                    value="",
                    label="Instruction",
                    placeholder="referring: 'the red circle on the left'; reasoning: a question. "
                    "Ignored for foreground.",
                    max_length=limits.max_text_chars,
                    elem_id="segr1-text",
                )
                button = gr.Button("Segment", variant="primary", elem_id="segr1-submit")
            with gr.Column():
                overlay_out = gr.Image(
                    label="Overlay", type="numpy", format="png", interactive=False, elem_id="segr1-overlay"
                )
                mask_out = gr.File(label="Mask (PNG)", elem_id="segr1-mask")
                status_out = gr.Textbox(label="Status", interactive=False, elem_id="segr1-status")
        with gr.Row():
            answer_out = gr.Textbox(
                label="Answer",
                info="the model's reasoning and prompts as it wrote them (model-frame coordinates)",
                lines=4,
                interactive=False,
                elem_id="segr1-answer",
            )
            with gr.Column():
                gr.Markdown(
                    "Parsed prompts in the image frame (pixels, boxes xyxy), in the model frame, and timings:"
                )
                prompts_out = gr.JSON(label="Prompts", elem_id="segr1-prompts")
        if rows:
            gr.Examples(
                examples=[list(r) for r in rows], inputs=[image_in, task_in, text_in], label="Examples"
            )
        button.click(
            segment,
            inputs=[image_in, task_in, text_in],
            outputs=[overlay_out, mask_out, answer_out, prompts_out, status_out],
            api_name=API_NAME,
            concurrency_limit=limits.concurrency,
        )
    app.queue(max_size=limits.max_queue, default_concurrency_limit=limits.concurrency)
    return app


def launch(
    app: gr.Blocks,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    limits: DemoLimits | None = None,
    *,
    block: bool = True,
    **launch_kwargs: Any,
) -> gr.Blocks:
    """Serve ``app`` on ``host:port`` with uploads bounded by ``limits.max_upload_mb``.

    ``block=False`` returns once the server is up (tests, benchmarks); close it with ``app.close()``.
    """
    limits = limits or DemoLimits()
    if block:
        exit_cleanly_on_signals()
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=limits.max_upload_bytes,
        prevent_thread_lock=not block,
        show_error=True,
        **launch_kwargs,
    )
    return app


def exit_cleanly_on_signals(signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> bool:
    """Turn SIGTERM (and SIGHUP) into a normal exit, so the demo's temporary folders (removed at exit) do not
    leak when the server is stopped with ``kill``; Ctrl+C (SIGINT) already exits normally. Only the main
    thread can install handlers: returns False (and does nothing) elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        return False

    def stop(signum: int, frame: Any) -> None:
        logger.info("stopping on signal %d", signum)
        sys.exit(128 + signum)

    for sig in signals:
        signal.signal(sig, stop)
    return True
