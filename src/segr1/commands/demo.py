"""Start the Seg-R1 web demo and its HTTP API (Gradio).

Open http://HOST:PORT in a browser: upload an image or pick an example, choose the task, type the
instruction; the page shows the overlay (mask, boxes, points), the mask as a downloadable PNG, the model's
answer text and the parsed prompts. The same function is the HTTP API endpoint /segment (Gradio's API;
see docs/demo.md for the gradio_client and curl examples, or the "Use via API" link at the page's foot).

The policy and the segmenter load once, at start. Requests are queued (--concurrency at once, at most
--max-queue waiting); uploads are bounded by --max-upload-mb and --max-pixels, and a refused upload gets
a message, not a crash.

Default model (no --model): the embedded tiny policy, which runs offline on CPU (see `segr1 segment -h`);
for real photos pass --model geshang/Seg-R1-7B (the segmenter then defaults to
sam2-hf:facebook/sam2.1-hiera-large). The checkpoint is prompted in its prompt style (seg-r1, the release's
texts, unless it records another); each task builds its evaluation instruction. --protocol seg-r1 runs the
release demo's rule instead: the typed text verbatim, a system prompt chosen by whether it says "segment" or
"mask", a 1024 frame and a 1024-token budget (docs/fidelity.md).

Examples:
  segr1 demo
  segr1 demo --model geshang/Seg-R1-7B --device cuda
  segr1 demo --model geshang/Seg-R1-7B --protocol seg-r1      # the release demo's prompting
  segr1 demo --host 0.0.0.0 --port 8080 --max-upload-mb 5
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from segr1.commands._common import (
    add_fidelity_arguments,
    add_model_arguments,
    check_fidelity_arguments,
    debug_requested,
    error_message,
)

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``segr1 demo`` options to ``parser``."""
    add_model_arguments(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for all interfaces)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=10.0, metavar="MB", help="largest upload in MiB (default: 10)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=4096 * 4096,
        metavar="N",
        help="largest width x height of an uploaded image (default: 16777216 = 4096x4096)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=2, metavar="N", help="requests processed at once (default: 2)"
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=32,
        metavar="N",
        help="requests waiting before new ones are refused with 'queue is full' (default: 32)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="a request still running after S seconds is answered 'took too long' (default: 120)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        metavar="N",
        help="answer length budget (default: the prompt style's; 256 for the embedded tiny model)",
    )
    add_fidelity_arguments(parser)
    parser.add_argument(
        "--frame",
        type=int,
        default=None,
        metavar="N",
        help="side of the square frame the model sees (default: the model's own, else 768/1024 per task)",
    )
    parser.add_argument(
        "--examples",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of example images (+ refs.jsonl for referring texts) (default: the repository's examples/, "
        "else a few synthetic scenes)",
    )
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")


def _usage_error(message: str) -> int:
    print(f"segr1 demo: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run ``segr1 demo``: load the models, build the app and serve it until interrupted."""
    if not 0 < args.port < 65536:
        return _usage_error(f"--port must be in 1..65535, got {args.port}")
    if args.frame is not None and args.frame < 1:
        return _usage_error(f"--frame must be a positive number of pixels, got {args.frame}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        return _usage_error(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    error = check_fidelity_arguments(args, "demo")
    if error:
        return _usage_error(error)
    if args.examples is not None and not args.examples.is_dir():
        return _usage_error(f"--examples {args.examples} is not a folder")
    from segr1.app.handler import DemoLimits

    try:
        limits = DemoLimits(
            max_upload_mb=args.max_upload_mb,
            max_pixels=args.max_pixels,
            concurrency=args.concurrency,
            max_queue=args.max_queue,
            request_timeout_s=args.request_timeout,
        )
    except ValueError as exc:
        return _usage_error(
            f"{exc} (options --max-upload-mb, --max-pixels, --concurrency, --max-queue, --request-timeout)"
        )

    try:
        import gradio  # noqa: F401
    except ImportError:
        return _usage_error("the demo needs Gradio: pip install 'segr1[demo]'")
    from segr1.app.demo import build_app, default_examples, launch, load_pipelines
    from segr1.defaults import default_segmenter

    segmenter = args.segmenter or default_segmenter(args.model)
    logger.info("loading policy %s and segmenter %s", args.model or "(embedded default)", segmenter)
    pipeline_kwargs = demo_pipeline_kwargs(args)
    try:
        pipelines = load_pipelines(args.model, segmenter, device=args.device, **pipeline_kwargs)
    except (ValueError, OSError) as exc:  # a bad --model / --segmenter / --device value, unloadable weights
        if debug_requested(args):
            raise
        return _usage_error(error_message(exc))  # one line; the traceback only with --debug
    app = build_app(
        pipelines, examples=default_examples(args.examples), limits=limits, note=_model_note(args.model)
    )
    logger.info("serving on http://%s:%d (Ctrl+C to stop)", args.host, args.port)
    launch(app, args.host, args.port, limits, block=True, share=args.share)
    return 0


def demo_pipeline_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """The ``SegR1Pipeline`` options of the demo: frame and budget when given, the prompt style, the protocol,
    and the stage: ``demo`` (the release demo's prompting) when the protocol's ``demo_prompt`` is
    ``release``, else ``eval`` (each task's evaluation instruction)."""
    from segr1.protocol import get_protocol

    kwargs: dict[str, object] = {}
    if args.max_new_tokens is not None:
        kwargs["max_new_tokens"] = args.max_new_tokens
    if args.frame is not None:
        kwargs["frame"] = args.frame
    if args.prompt_style is not None:
        kwargs["prompt_style"] = args.prompt_style
    if getattr(args, "answer_format", None) is not None:
        kwargs["answer_format"] = args.answer_format
    if args.protocol is not None:
        kwargs["protocol"] = args.protocol
        if get_protocol(args.protocol, "demo").demo_prompt == "release":
            kwargs["stage"] = "demo"
    return kwargs


def _model_note(model: str | None) -> str | None:
    """A header line warning that the default model is untrained, when it is."""
    if model is not None:
        return None
    from segr1.policies import shipped_policy_available

    if shipped_policy_available():
        return (
            "this is the embedded tiny policy trained on synthetic scenes; it does well only on simple "
            "synthetic-like images. Start the demo with --model geshang/Seg-R1-7B for real photos."
        )
    return (
        "no trained policy is shipped yet, so this runs an UNTRAINED tiny model: its answers are mostly "
        "unparsable and masks mostly empty. Start the demo with --model geshang/Seg-R1-7B for real use."
    )
