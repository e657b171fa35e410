"""Load test of the demo's HTTP API: N concurrent /segment requests through gradio_client.

Starts a demo server in a subprocess on 127.0.0.1 (or uses --url), sends one request per scene
sequentially (warm-up and single-request latency), then N requests from --concurrency client threads,
checks every answer and prints latency percentiles (p50/p90/p99, seconds, measured at the client from
submit to result) and throughput (requests per second of wall time).

Checks on every answer: the overlay and the mask PNG have the scene's size, the JSON details name that size
and no error from the handler; the answer text and the mask are identical to the warm-up answer for the same
scene (decoding is greedy, so a mismatch means requests got mixed up); with the fake red-blob policy, the
mask also matches the scene's red disc (IoU >= 0.8).

Scenes: --scenes red discs on a textured background (segr1.app.fakes.red_disc_scene), --size WxH.

Policies (--policy):
  red-blob  a fake policy that boxes the red pixels: measures the server, the queue, the uploads and
            GrabCut without a model (fast, answers checkable against the ground truth)
  model     the real pipeline: --model (default: the embedded tiny policy) + --segmenter

Examples:
  python benchmarks/demo_load.py --policy red-blob --requests 64 --concurrency 8
  python benchmarks/demo_load.py --policy model --requests 12 --concurrency 4
  python benchmarks/demo_load.py --url http://127.0.0.1:7860 --requests 32   # a running `segr1 demo`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger("demo_load")


@dataclass
class Outcome:
    """One request: which scene, latency in seconds, and what was wrong with the answer (empty = correct)."""

    scene: int
    latency_s: float
    problems: list[str] = field(default_factory=list)
    answer: str | None = None
    server_timings: dict[str, float] = field(default_factory=dict)
    mask_sha: str | None = None
    status: str | None = None


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}") from exc
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got {text!r}")
    return w, h


def make_scenes(n: int, size: tuple[int, int], out_dir: Path) -> list[tuple[Path, np.ndarray]]:
    """``n`` red-disc scenes of ``size`` (W, H) written as PNGs; returns (path, ground-truth mask (H, W) bool)."""
    from segr1.app.fakes import red_disc_scene

    w, h = size
    rng = np.random.default_rng(0)
    scenes = []
    for i in range(n):
        r = float(rng.uniform(0.12, 0.25) * min(w, h))
        cx, cy = float(rng.uniform(r + 2, w - r - 2)), float(rng.uniform(r + 2, h - r - 2))
        image, mask = red_disc_scene(w, h, cx, cy, r, seed=i)
        path = out_dir / f"scene-{i:03d}.png"
        Image.fromarray(image).save(path)
        scenes.append((path, mask))
    return scenes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- server side


def serve(args: argparse.Namespace) -> int:
    """Run the demo server in this process until killed (the subprocess half of this script)."""
    from segr1.app.demo import build_app, launch, load_pipelines, make_pipelines
    from segr1.app.handler import DemoLimits

    limits = DemoLimits(concurrency=args.server_concurrency, max_queue=max(args.requests, 32))
    if args.policy == "red-blob":
        from segr1.app.fakes import RedBlobPolicy
        from segr1.segmenters import load_segmenter

        pipelines = make_pipelines(RedBlobPolicy(frame=256), load_segmenter(args.segmenter))
    else:
        pipelines = load_pipelines(args.model, args.segmenter, max_new_tokens=args.max_new_tokens)
    app = build_app(pipelines, examples=[], limits=limits)
    launch(app, "127.0.0.1", args.serve, limits, block=True, quiet=True)
    return 0


def spawn_server(args: argparse.Namespace, timeout_s: float = 300.0) -> tuple[subprocess.Popen, str]:
    """Start ``serve`` in a subprocess on a free port; returns (process, base URL) once it answers."""
    import httpx

    port = free_port()
    cmd = [
        sys.executable,
        __file__,
        "--serve",
        str(port),
        "--policy",
        args.policy,
        "--segmenter",
        args.segmenter,
    ]
    cmd += ["--server-concurrency", str(args.server_concurrency), "--requests", str(args.requests)]
    cmd += ["--max-new-tokens", str(args.max_new_tokens)]
    if args.model:
        cmd += ["--model", args.model]
    log = open(Path(tempfile.gettempdir()) / f"segr1-demo-load-server-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}; see {log.name}")
        try:
            if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the server did not answer within {timeout_s:.0f} s; see {log.name}")


# ---------------------------------------------------------------- client side


def one_request(client: Any, scene_index: int, path: Path, gt: np.ndarray, check_gt: bool) -> Outcome:
    """Send one /segment request and check its answer (size, error, ground truth when asked)."""
    from gradio_client import handle_file

    from segr1.app.fakes import iou

    t0 = time.perf_counter()
    try:
        overlay, mask_file, answer, details, status = client.predict(
            handle_file(str(path)), "foreground", "", api_name="/segment"
        )
    except Exception as exc:
        return Outcome(
            scene_index, time.perf_counter() - t0, [f"request failed: {type(exc).__name__}: {exc}"]
        )
    latency = time.perf_counter() - t0
    out = Outcome(scene_index, latency, answer=answer, status=status)
    out.server_timings = {k: float(v) for k, v in (details.get("timings") or {}).items()}
    h, w = gt.shape
    overlay_arr = np.asarray(Image.open(overlay))
    mask_arr = np.asarray(Image.open(mask_file))
    out.mask_sha = hashlib.sha256((mask_arr > 128).tobytes()).hexdigest()
    if overlay_arr.shape[:2] != (h, w):
        out.problems.append(f"overlay is {overlay_arr.shape[:2]}, expected {(h, w)}")
    if mask_arr.shape != (h, w):
        out.problems.append(f"mask is {mask_arr.shape}, expected {(h, w)}")
    if details.get("image_size") != [w, h]:
        out.problems.append(f"details image_size {details.get('image_size')} != {[w, h]}")
    if check_gt:
        score = iou(mask_arr > 128, gt) if mask_arr.shape == gt.shape else 0.0
        if score < 0.8:
            out.problems.append(f"mask IoU with the scene's disc is {score:.2f} < 0.8 ({status})")
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{q}": float(np.percentile(arr, q)) for q in (50, 90, 99)} | {"max": float(arr.max())}


def server_medians(outcomes: list[Outcome]) -> dict[str, float]:
    """Median of each server-side timing (generate_s, segment_s, total_s) over the answered requests."""
    keys = sorted({k for o in outcomes for k in o.server_timings})
    return {
        k: float(np.median([o.server_timings[k] for o in outcomes if k in o.server_timings])) for k in keys
    }


def run_load(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from gradio_client import Client

    scenes = make_scenes(args.scenes, args.size, Path(tempfile.mkdtemp(prefix="segr1-demo-load-")))
    check_gt = args.policy == "red-blob" and args.url is None
    client = Client(url, verbose=False, max_workers=max(args.concurrency, 1))

    # warm-up, one request per scene, sequential: the reference answers and the single-request latency
    reference = [one_request(client, i, p, gt, check_gt) for i, (p, gt) in enumerate(scenes)]
    problems = [f"warm-up scene {o.scene}: {p}" for o in reference for p in o.problems]

    def job(k: int) -> Outcome:
        i = k % len(scenes)
        out = one_request(client, i, *scenes[i], check_gt)
        ref = reference[i]
        if not out.problems and (out.answer != ref.answer or out.mask_sha != ref.mask_sha):
            out.problems.append("answer or mask differs from the same scene's warm-up answer")
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        outcomes = list(pool.map(job, range(args.requests)))
    wall = time.perf_counter() - t0
    problems += [f"request {k} (scene {o.scene}): {p}" for k, o in enumerate(outcomes) for p in o.problems]
    statuses = sorted({(o.status or "").split(":")[0] for o in outcomes})
    return {
        "requests": args.requests,
        "client_concurrency": args.concurrency,
        "server_concurrency": args.server_concurrency,
        "policy": args.policy if args.url is None else f"server at {args.url}",
        "model": args.model,
        "segmenter": args.segmenter,
        "size": list(args.size),
        "scenes": args.scenes,
        "max_new_tokens": args.max_new_tokens,
        "wrong": sum(bool(o.problems) for o in outcomes),
        "statuses": statuses,
        "single_request_latency_s": percentiles([o.latency_s for o in reference]),
        "warmup_server_s": server_medians(reference),
        "server_s": server_medians(outcomes),
        "latency_s": percentiles([o.latency_s for o in outcomes]),
        "throughput_rps": args.requests / wall,
        "wall_s": wall,
        "problems": problems[:20],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def report(r: dict[str, Any]) -> str:
    lat, single = r["latency_s"], r["single_request_latency_s"]
    lines = [
        f"demo load test: {r['requests']} requests, {r['client_concurrency']} client threads, server "
        f"concurrency {r['server_concurrency']}, policy {r['policy']}"
        + (
            f" ({r['model'] or 'embedded default'}, max_new_tokens {r['max_new_tokens']})"
            if r["policy"] == "model"
            else ""
        )
        + f", segmenter {r['segmenter']}, {r['scenes']} scenes {r['size'][0]}x{r['size'][1]}",
        f"  answered correctly: {r['requests'] - r['wrong']}/{r['requests']}   statuses: {', '.join(r['statuses'])}",
        f"  latency (s) under load: p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  max {lat['max']:.3f}",
        f"  single request (s, sequential warm-up): p50 {single['p50']:.3f}  max {single['max']:.3f}",
        "  server time per request, median (s): "
        + "  ".join(f"{k} {v:.3f}" for k, v in r["server_s"].items())
        + "   (warm-up: "
        + "  ".join(f"{k} {v:.3f}" for k, v in r["warmup_server_s"].items())
        + ")",
        f"  throughput: {r['throughput_rps']:.2f} requests/s over {r['wall_s']:.1f} s",
        f"  {r['machine']}, {r['date']}",
    ]
    lines += [f"  PROBLEM {p}" for p in r["problems"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=64, help="requests in the concurrent burst (default 64)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument(
        "--server-concurrency", type=int, default=2, help="the server's --concurrency (default 2)"
    )
    parser.add_argument("--policy", choices=("red-blob", "model"), default="red-blob")
    parser.add_argument("--model", default=None, help="policy spec for --policy model (default: embedded)")
    parser.add_argument("--segmenter", default="grabcut")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--scenes", type=int, default=8, help="distinct scenes (default 8)")
    parser.add_argument(
        "--size", type=parse_size, default=(320, 240), help="scene size WxH (default 320x240)"
    )
    parser.add_argument("--url", default=None, help="use a running demo instead of starting one")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)  # the server subprocess
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.serve is not None:
        return serve(args)
    if args.requests < 1 or args.concurrency < 1 or args.scenes < 1:
        print("--requests, --concurrency and --scenes must be >= 1", file=sys.stderr)
        return 2
    proc = None
    url = args.url
    try:
        if url is None:
            proc, url = spawn_server(args)
        result = run_load(args, url)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 1 if result["wrong"] or result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
