"""The web demo: request handler bounds and messages, output types, the Gradio app and its HTTP API.

The request handler is tested directly; one local server (module fixture, a fake red-blob policy and
GrabCut) serves the API tests: gradio_client, the two-step curl flow (done with httpx), refused uploads
and a small concurrent load test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1.app.fakes import RedBlobPolicy, iou, red_disc_scene
from segr1.app.handler import (
    DemoInputError,
    DemoLimits,
    check_task_text,
    handle_request,
    load_upload,
    prune_outputs,
    write_mask,
)

REPO = Path(__file__).resolve().parents[1]

# Gradio's queue statistics use pandas options that pandas 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


# ---------------------------------------------------------------- helpers


def save_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def grabcut():
    from segr1.segmenters import load_segmenter

    return load_segmenter("grabcut")


@pytest.fixture(scope="module")
def pipelines(grabcut):
    from segr1.app.demo import make_pipelines

    return make_pipelines(RedBlobPolicy(frame=256), grabcut)


@pytest.fixture
def scene(tmp_path):
    image, mask = red_disc_scene(240, 160, 150, 80, 40, seed=1)
    return save_png(tmp_path / "disc.png", image), mask


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- limits and checks


@pytest.mark.parametrize(
    "kwargs",
    [{"max_upload_mb": 0}, {"max_pixels": 0}, {"max_text_chars": 0}, {"concurrency": 0}, {"max_queue": 0}],
)
def test_limits_reject_non_positive_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        DemoLimits(**kwargs)


def test_limits_bytes():
    assert DemoLimits(max_upload_mb=2).max_upload_bytes == 2 * 1024 * 1024


def test_check_task_text():
    limits = DemoLimits(max_text_chars=20)
    assert check_task_text("foreground", "  ", limits) is None
    assert check_task_text("referring", "  the red disc ", limits) == "the red disc"
    with pytest.raises(DemoInputError, match="referring expression"):
        check_task_text("referring", "", limits)
    with pytest.raises(DemoInputError, match="question"):
        check_task_text("reasoning", None, limits)
    with pytest.raises(DemoInputError, match="at most 20"):
        check_task_text("referring", "x" * 21, limits)
    with pytest.raises(DemoInputError, match="unknown task"):
        check_task_text("prerl", "x", limits)


# ---------------------------------------------------------------- uploads


def test_load_upload_reads_rgb_from_grey_and_rgba(tmp_path):
    grey = save_png(tmp_path / "g.png", np.full((5, 7), 9, np.uint8))
    rgba = save_png(tmp_path / "a.png", np.full((5, 7, 4), 200, np.uint8))
    for path in (grey, rgba):
        arr = load_upload(path, DemoLimits())
        assert arr.shape == (5, 7, 3) and arr.dtype == np.uint8


def test_load_upload_refuses_missing_file(tmp_path):
    with pytest.raises(DemoInputError, match="no image"):
        load_upload(None, DemoLimits())
    with pytest.raises(DemoInputError, match="missing"):
        load_upload(tmp_path / "gone.png", DemoLimits())


def test_load_upload_refuses_too_many_bytes(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)  # incompressible
    path = save_png(tmp_path / "n.png", noise)
    limits = DemoLimits(max_upload_mb=4096 / 2**20)
    with pytest.raises(DemoInputError, match="MiB"):
        load_upload(path, limits)


def test_load_upload_refuses_too_many_pixels_before_decoding(tmp_path, monkeypatch):
    import segr1.data.io as io_mod

    path = save_png(tmp_path / "big.png", np.zeros((30, 40, 3), np.uint8))
    decoded = []
    monkeypatch.setattr(
        io_mod, "read_image", lambda *a, **k: decoded.append(a) or np.zeros((1, 1, 3), np.uint8)
    )
    with pytest.raises(DemoInputError, match=r"40x30 = 1,200 pixels.*at most 1,000"):
        load_upload(path, DemoLimits(max_pixels=1000))
    assert decoded == []


def test_load_upload_refuses_decompression_bomb_header(tmp_path):
    # a tiny file that declares a 100000 x 100000 canvas
    path = tmp_path / "bomb.png"
    Image.new("1", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width, height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR CRC over type + 13 data bytes
    path.write_bytes(bytes(data))
    with pytest.raises(DemoInputError, match="pixels"):
        load_upload(path, DemoLimits())


@pytest.mark.parametrize(
    "content",
    [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, b""],
    ids=["text", "png-magic-only", "empty"],
)
def test_load_upload_refuses_non_images(tmp_path, content):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(DemoInputError, match="not an image"):
        load_upload(path, DemoLimits())


def test_load_upload_refuses_truncated_image(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DemoInputError, match="corrupt or truncated"):
        load_upload(path, DemoLimits())


# ---------------------------------------------------------------- handler


def test_handle_request_outputs(pipelines, scene, tmp_path):
    path, gt = scene
    r = handle_request(pipelines, path, "foreground", "ignored", DemoLimits(), tmp_path / "out")
    assert r.overlay.shape == (160, 240, 3) and r.overlay.dtype == np.uint8
    assert r.mask_path.parent == tmp_path / "out" and r.mask_path.name.startswith("disc-")
    mask_file = np.asarray(Image.open(r.mask_path))
    assert mask_file.shape == (160, 240) and set(np.unique(mask_file)) <= {0, 255}
    assert iou(mask_file > 128, gt) > 0.8
    assert r.answer.startswith("<think>") and "<bbox>" in r.answer
    assert r.status.startswith("ok: mask covers") and "1 box, 1 point" in r.status
    details = json.loads(json.dumps(r.details))  # JSON-serialisable
    assert details["task"] == "foreground" and details["text"] is None
    assert details["error"] is None and details["image_size"] == [240, 160]
    assert details["frame"] == 256 and len(details["prompt"]["boxes"]) == 1
    box = details["prompt"]["boxes"][0]  # image frame: around the disc at (150, 80), r 40
    assert 100 <= box[0] <= 115 and 145 <= box[2] <= 195
    assert set(details["timings"]) >= {"generate_s", "segment_s", "total_s"}


def test_handle_request_referring_passes_text(grabcut, scene, tmp_path):
    from segr1.app.demo import make_pipelines

    seen = []

    class Recording(RedBlobPolicy):
        def generate(self, images, instructions, **kw):
            seen.extend(instructions)
            return super().generate(images, instructions, **kw)

    pipes = make_pipelines(Recording(), grabcut)
    r = handle_request(pipes, scene[0], "referring", "the red disc", DemoLimits(), tmp_path)
    assert r.details["text"] == "the red disc" and any("the red disc" in s for s in seen)


def test_handle_request_unparsable_answer_is_a_status_not_an_error(pipelines, tmp_path):
    path = save_png(tmp_path / "grey.png", np.full((50, 60, 3), 100, np.uint8))
    r = handle_request(pipelines, path, "foreground", "", DemoLimits(), tmp_path)
    assert r.status.startswith("no mask: unparsable answer")
    assert r.details["error"] == "unparsable answer" and r.details["mask_area"] == 0
    assert not np.asarray(Image.open(r.mask_path)).any()


def test_handle_request_checks_text_before_reading_the_image(pipelines, tmp_path):
    with pytest.raises(DemoInputError, match="needs"):
        handle_request(pipelines, tmp_path / "never-read.png", "reasoning", "", DemoLimits(), tmp_path)


def test_handle_request_task_not_offered(pipelines, scene, tmp_path):
    only = {"foreground": pipelines["foreground"]}
    with pytest.raises(DemoInputError, match="not available"):
        handle_request(only, scene[0], "referring", "x", DemoLimits(), tmp_path)


def test_write_mask_unique_safe_names_and_prune(tmp_path):
    mask = np.zeros((3, 4), bool)
    a, b = write_mask(mask, tmp_path, "../evil name"), write_mask(mask, tmp_path, "../evil name")
    assert a != b and a.parent == tmp_path and b.parent == tmp_path
    old = time.time() - 7200
    os.utime(a, (old, old))
    assert prune_outputs(tmp_path, 3600) == 1
    assert not a.exists() and b.exists()


# ---------------------------------------------------------------- app wiring


def test_make_pipelines_share_models_and_use_policy_frame(grabcut):
    from segr1.app.demo import LockedPolicy, make_pipelines

    pipes = make_pipelines(RedBlobPolicy(frame=320), grabcut)
    assert sorted(pipes) == ["foreground", "reasoning", "referring"]
    assert len({id(p.policy) for p in pipes.values()}) == 1
    assert isinstance(pipes["foreground"].policy, LockedPolicy)
    assert all(p.segmenter is grabcut and p.frame == 320 for p in pipes.values())
    no_frame = RedBlobPolicy()
    no_frame.frame = None
    assert make_pipelines(no_frame, grabcut)["referring"].frame == 1024


def test_locked_policy_lets_one_caller_in_at_a_time():
    from segr1.app.demo import LockedPolicy

    class Probe:
        name, frame = "probe", None
        inside = peak = 0

        def generate(self, images, instructions, **kw):
            Probe.inside += 1
            Probe.peak = max(Probe.peak, Probe.inside)
            time.sleep(0.02)
            Probe.inside -= 1
            return [["x"] for _ in images]

    locked = LockedPolicy(Probe())
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: locked.generate([None], ["i"]), range(8)))
    assert Probe.peak == 1 and locked.name == "probe"


def test_find_examples_reads_refs(tmp_path):
    from segr1.app.demo import find_examples

    for name in ("b.png", "a.png"):
        save_png(tmp_path / name, np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "refs.jsonl").write_text('{"image": "b.png", "text": "the cat"}\nnot json\n')
    rows = find_examples(tmp_path)
    assert rows == [
        (str(tmp_path / "a.png"), "foreground", ""),
        (str(tmp_path / "b.png"), "referring", "the cat"),
    ]


def test_default_examples_repo_then_synthetic(tmp_path):
    from segr1.app.demo import default_examples

    if (REPO / "examples" / "refs.jsonl").is_file():
        rows = default_examples()
        assert any(task == "referring" and text for _, task, text in rows)
    rows = default_examples(tmp_path)  # an empty folder -> synthetic scenes
    assert [task for _, task, _ in rows] == ["foreground", "foreground", "referring"]
    assert all(Path(p).is_file() for p, _, _ in rows) and rows[2][2]


def test_build_app_validates_pipelines(pipelines):
    from segr1.app.demo import build_app

    with pytest.raises(ValueError, match="pipelines"):
        build_app({"prerl": pipelines["foreground"]}, examples=[])
    with pytest.raises(TypeError):
        build_app(42, examples=[])  # type: ignore[arg-type]


def test_build_app_accepts_a_factory_called_once_per_task(pipelines):
    from segr1.app.demo import build_app

    calls = []
    app = build_app(lambda task: calls.append(task) or pipelines[task], examples=[])
    assert calls == ["foreground", "referring", "reasoning"]
    endpoint = app.get_api_info()["named_endpoints"]["/segment"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == ["image", "task", "text"]
    assert [p["parameter_has_default"] for p in endpoint["parameters"]] == [False, True, True]
    assert [r["label"] for r in endpoint["returns"]] == [
        "Overlay",
        "Mask (PNG)",
        "Answer",
        "Prompts",
        "Status",
    ]


def test_guarded_image_refuses_large_inline_image_and_non_images(tmp_path):
    import gradio as gr
    from gradio.data_classes import ImageData

    from segr1.app.demo import guard_image_uploads

    comp = guard_image_uploads(gr.Image(type="filepath", render=False), max_bytes=100)
    with pytest.raises(gr.Error, match="larger than"):
        comp.preprocess(ImageData(url="data:image/png;base64," + "A" * 400))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(gr.Error, match="not an image"):
        comp.preprocess(ImageData(path=str(bad), orig_name="bad.png"))
    good = save_png(tmp_path / "good.png", np.zeros((4, 4, 3), np.uint8))
    assert comp.preprocess(ImageData(path=str(good), orig_name="good.png")) == str(good)
    assert comp.preprocess(None) is None


def test_importing_the_app_writes_no_files():
    """Gradio writes a .pyi next to any module defining a Component subclass; ours must define none."""
    import segr1.app.demo as demo_mod

    assert not Path(demo_mod.__file__).with_suffix(".pyi").exists()


# ---------------------------------------------------------------- command


def test_command_usage_errors(capsys, tmp_path):
    from segr1.commands import demo as cmd

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    for argv, message in [
        (["--port", "0"], "--port"),
        (["--max-upload-mb", "0"], "max_upload_mb"),
        (["--examples", str(tmp_path / "nope")], "--examples"),
        (["--max-new-tokens", "0"], "--max-new-tokens"),
    ]:
        assert cmd.run(parser.parse_args(argv)) == 2
        assert message in capsys.readouterr().err


def test_command_loads_once_and_launches(monkeypatch, pipelines, tmp_path):
    import segr1.app.demo as demo_mod
    from segr1.commands import demo as cmd

    loads, launches = [], []
    monkeypatch.setattr(demo_mod, "load_pipelines", lambda *a, **k: loads.append((a, k)) or pipelines)
    monkeypatch.setattr(
        demo_mod, "launch", lambda app, host, port, limits, **k: launches.append((host, port, limits))
    )
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    args = parser.parse_args(
        ["--port", "7999", "--max-pixels", "1000", "--examples", str(tmp_path), "--frame", "64"]
    )
    assert cmd.run(args) == 0
    assert loads == [((None, "grabcut"), {"device": None, "frame": 64})]  # the budget: the style's
    ((host, port, limits),) = launches
    assert (host, port, limits.max_pixels) == ("127.0.0.1", 7999, 1000)


# ---------------------------------------------------------------- the HTTP API on a local server


@pytest.fixture(scope="module")
def server(pipelines, tmp_path_factory):
    """A launched demo on 127.0.0.1 (fake red-blob policy, GrabCut); yields its base URL."""
    from segr1.app.demo import build_app, launch

    limits = DemoLimits(max_upload_mb=1, max_pixels=1_000_000, concurrency=2, max_queue=16)
    app = build_app(pipelines, examples=[], limits=limits, out_dir=tmp_path_factory.mktemp("masks"))
    port = free_port()
    launch(app, "127.0.0.1", port, limits, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def test_api_predict(client, scene):
    from gradio_client import handle_file

    path, gt = scene
    overlay, mask_file, answer, details, status = client.predict(handle_file(str(path)), api_name="/segment")
    assert np.asarray(Image.open(overlay)).shape == (160, 240, 3)
    assert Path(mask_file).name.endswith("_mask.png")
    assert iou(np.asarray(Image.open(mask_file)) > 128, gt) > 0.8
    assert "<bbox>" in answer and status.startswith("ok")
    assert details["image_size"] == [240, 160] and details["error"] is None


def test_api_bad_upload_gets_a_message(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not pixels")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(bad)), "foreground", "", api_name="/segment")
    big = save_png(tmp_path / "big.png", np.zeros((1100, 1000, 3), np.uint8))
    with pytest.raises(AppError, match="1,100,000 pixels"):
        client.predict(handle_file(str(big)), "foreground", "", api_name="/segment")


def test_api_upload_over_max_size_is_refused(server):
    import httpx

    blob = np.random.default_rng(0).bytes(1024 * 1024 + 10)
    r = httpx.post(f"{server}/gradio_api/upload", files={"files": ("x.png", blob, "image/png")}, timeout=30)
    assert r.status_code == 413


def sse_events(text: str) -> list[tuple[str, object]]:
    """Parse a server-sent-events body into (event, decoded data) pairs."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields.get("event", ""), json.loads(fields.get("data", "null"))))
    return events


def curl_flow(server: str, image: Path, task: str, text: str) -> list[tuple[str, object]]:
    """The docs/demo.md curl recipe, with httpx: upload, POST /call/segment, GET the event stream."""
    import httpx

    with httpx.Client(base_url=server, timeout=60) as http:
        with image.open("rb") as f:
            (uploaded,) = http.post(
                "/gradio_api/upload", files={"files": (image.name, f, "image/png")}
            ).json()
        body = {"data": [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, task, text]}
        event_id = http.post("/gradio_api/call/segment", json=body).json()["event_id"]
        return sse_events(http.get(f"/gradio_api/call/segment/{event_id}").text)


def test_curl_flow(server, scene):
    import httpx

    path, gt = scene
    events = curl_flow(server, path, "referring", "the red disc")
    kind, data = events[-1]
    assert kind == "complete", events
    overlay, mask, answer, details, status = data
    assert mask["url"].startswith(server) and mask["path"].endswith("_mask.png")
    png = httpx.get(mask["url"], timeout=30).content
    assert iou(np.asarray(Image.open(io.BytesIO(png))) > 128, gt) > 0.8
    assert details["task"] == "referring" and details["text"] == "the red disc" and status.startswith("ok")


def test_curl_flow_error_event(server, scene):
    kind, data = curl_flow(server, scene[0], "reasoning", "")[-1]
    assert kind == "error" and "needs a question" in data["error"]


def test_load_concurrent_requests_all_answered_correctly(client, tmp_path):
    """N concurrent API requests, each on its own scene: every answer is right and belongs to its request."""
    from gradio_client import handle_file

    n = 6
    scenes = []
    for i in range(n):
        w, h = 200 + 16 * i, 150 + 8 * i
        image, gt = red_disc_scene(w, h, 50 + 17 * i, 60 + 7 * i, 25 + 2 * i, seed=i)
        scenes.append((save_png(tmp_path / f"s{i}.png", image), gt))
    t0 = time.perf_counter()
    jobs = [client.submit(handle_file(str(p)), "foreground", "", api_name="/segment") for p, _ in scenes]
    results = [job.result(timeout=60) for job in jobs]
    elapsed = time.perf_counter() - t0
    for (_, gt), (overlay, mask_file, _answer, details, status) in zip(scenes, results, strict=True):
        assert details["image_size"] == [gt.shape[1], gt.shape[0]]
        assert status.startswith("ok")
        assert iou(np.asarray(Image.open(mask_file)) > 128, gt) > 0.8
        assert np.asarray(Image.open(overlay)).shape == (*gt.shape, 3)
    assert elapsed < 60


def test_policy_never_runs_twice_at_once_under_load(grabcut, tmp_path):
    """Two concurrent requests through the handler share one LockedPolicy without overlapping in it."""
    from segr1.app.demo import make_pipelines

    inside, peak, lock = [0], [0], threading.Lock()

    class Slow(RedBlobPolicy):
        def generate(self, images, instructions, **kw):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1
            return super().generate(images, instructions, **kw)

    pipes = make_pipelines(Slow(frame=64), grabcut)
    image, _ = red_disc_scene(80, 60, 40, 30, 12)
    path = save_png(tmp_path / "s.png", image)
    with ThreadPoolExecutor(3) as pool:
        out = list(
            pool.map(
                lambda _: handle_request(pipes, path, "foreground", "", DemoLimits(), tmp_path), range(3)
            )
        )
    assert peak[0] == 1 and all(r.status.startswith("ok") for r in out)


@pytest.mark.slow
def test_load_pipelines_with_the_embedded_default_policy(tmp_path):
    """The real models: one policy + GrabCut shared by the three pipelines, framed as the policy says."""
    from segr1.app.demo import load_pipelines

    pipes = load_pipelines(None, "grabcut", max_new_tokens=16)
    policy = pipes["foreground"].policy
    assert all(p.policy is policy and p.segmenter is pipes["foreground"].segmenter for p in pipes.values())
    if isinstance(policy.frame, int):
        assert all(p.frame == policy.frame for p in pipes.values())
    path = save_png(tmp_path / "s.png", red_disc_scene(96, 64, 40, 30, 15)[0])
    r = handle_request(pipes, path, "reasoning", "what is red?", DemoLimits(), tmp_path)
    assert r.overlay.shape == (64, 96, 3) and r.mask_path.is_file()
    assert r.status.startswith(("ok", "no mask"))


def test_demo_pipelines_use_the_system_turn_the_policy_records():
    from segr1.app.demo import make_pipelines

    class Recorded:
        name, frame, metadata = "recorded", 224, {"system_prompt": None}

        def generate(self, *args, **kwargs):  # pragma: no cover - not called
            raise AssertionError

    pipelines = make_pipelines(Recorded(), object())
    assert all(p.system is None for p in pipelines.values())
