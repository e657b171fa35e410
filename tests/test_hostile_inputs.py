"""Hostile inputs found by a probe: flat images that stall GrabCut, pixel bombs that Gradio decoded before
segr1's limit, temp folders left behind on SIGTERM. Each test failed before its fix."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1.answer import SegPrompt
from segr1.app.handler import DemoInputError, DemoLimits, handle_request, run_with_time_limit
from segr1.segmenters._grabcut_worker import POOL
from segr1.segmenters.grabcut import GrabCutConfig, GrabCutSegmenter, GrabCutTimeout

REPO = Path(__file__).resolve().parents[1]


def box_and_point(n: int) -> SegPrompt:
    return SegPrompt(
        boxes=np.array([[0.05 * n, 0.05 * n, 0.95 * n, 0.95 * n]]),
        points=np.array([[n / 2, n / 2]]),
        labels=np.array([1]),
    )


def near_flat(n: int, odd_pixels: int = 50) -> np.ndarray:
    """White, with a few pixels one level darker: GrabCut's max-flow crawls on it (> 30 s at 400 px)."""
    image = np.full((n, n, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    image[rng.integers(0, n, odd_pixels), rng.integers(0, n, odd_pixels)] = 254
    return image


# ------------------------------------------------------------------------------------------ GrabCut


@pytest.mark.timeout(60)
@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0), (120, 60, 200)])
def test_single_colour_image_returns_at_once(colour):
    image = np.full((600, 600, 3), colour, np.uint8)  # white ran > 190 s in cv2.grabCut
    start = time.perf_counter()
    (mask,) = GrabCutSegmenter().segment(image, [box_and_point(600)])
    assert time.perf_counter() - start < 5
    assert mask.shape == (600, 600) and mask.any()  # the seed: the box


@pytest.mark.timeout(60)
def test_near_flat_image_is_stopped_at_the_deadline_and_the_worker_killed():
    seg = GrabCutSegmenter(GrabCutConfig(timeout_s=2.0))
    before = {w.proc.pid for w in POOL._all}
    start = time.perf_counter()
    with pytest.raises(GrabCutTimeout, match="did not finish within 2 s"):
        seg.segment(near_flat(400), [box_and_point(400)])
    assert time.perf_counter() - start < 8
    assert {w.proc.pid for w in POOL._all} <= before  # the stalled worker is gone
    # the pool recovers: the next call works
    image = np.random.default_rng(1).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    image[20:60, 20:60] = (230, 20, 20)
    (mask,) = seg.segment(image, [SegPrompt(boxes=np.array([[15.0, 15.0, 65.0, 65.0]]))])
    assert mask[40, 40] and not mask[2, 2]


def test_pipeline_records_a_timeout_as_a_failed_segmentation():
    from segr1.pipeline import SegR1Pipeline

    class CenterBox:
        name, frame, metadata = "center", 100, {}

        def generate(
            self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None
        ):
            return [
                [
                    "<think>x</think> <bbox>[5,5,95,95]</bbox>, <points>[[50,50]]</points>, <labels>[1]</labels>"
                ]
            ]

    pipe = SegR1Pipeline(CenterBox(), GrabCutSegmenter(GrabCutConfig(timeout_s=1.0)))
    result = pipe(near_flat(400))
    assert result.error.startswith("segmentation failed: GrabCutTimeout: GrabCut did not finish within 1 s")
    assert not result.mask.any()


def test_worker_gives_the_same_masks_as_in_process_grabcut():
    rng = np.random.default_rng(3)
    image = rng.integers(30, 120, (150, 200, 3), dtype=np.uint8)
    image[40:110, 60:150] = rng.integers(150, 250, (70, 90, 3), dtype=np.uint8)
    prompts = [
        SegPrompt(
            boxes=np.array([[50.0, 30.0, 160.0, 120.0]]),
            points=np.array([[100.0, 70.0]]),
            labels=np.array([1]),
        ),
        SegPrompt(points=np.array([[100.0, 70.0], [10.0, 10.0]]), labels=np.array([1, 0])),
    ]
    local = GrabCutSegmenter(GrabCutConfig(timeout_s=None)).segment(image, prompts)
    pooled = GrabCutSegmenter().segment(image, prompts)
    for a, b in zip(local, pooled, strict=True):
        assert np.array_equal(a, b)


def test_concurrent_calls_use_separate_workers():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)
    prompt = [SegPrompt(boxes=np.array([[20.0, 20.0, 100.0, 100.0]]))]
    seg = GrabCutSegmenter()
    expected = seg.segment(image, prompt)[0]
    with ThreadPoolExecutor(3) as pool:
        masks = list(pool.map(lambda _: seg.segment(image, prompt)[0], range(6)))
    assert all(np.array_equal(m, expected) for m in masks)


# ------------------------------------------------------------------------------------------ demo


def grey_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 7).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def bomb_png() -> bytes:
    """A few bytes declaring a 100000 x 100000 canvas (over Pillow's decompression-bomb limit)."""
    buf = io.BytesIO()
    Image.new("1", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = (100_000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def guarded(max_pixels: int = 1_000_000):
    import gradio as gr

    from segr1.app.demo import guard_image_uploads

    return guard_image_uploads(
        gr.Image(type="filepath", image_mode=None, render=False), max_bytes=2**20, max_pixels=max_pixels
    )


def _no_decode(monkeypatch):
    """Fail when any image's pixels are decoded."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_big_grey_upload_is_refused_from_its_header(tmp_path, monkeypatch):
    from gradio import Error
    from gradio.data_classes import ImageData

    path = tmp_path / "grey.png"
    path.write_bytes(grey_png(9000, 9000))  # ~80 KB; Gradio converted it to RGB (+368 MB) before the fix
    comp = guarded()
    _no_decode(monkeypatch)
    with pytest.raises(Error, match="too many pixels"):
        comp.preprocess(ImageData(path=str(path), orig_name="grey.png"))


def test_inline_data_url_is_checked_before_decoding_and_written_as_is(monkeypatch):
    from gradio import Error
    from gradio.data_classes import ImageData

    comp = guarded()
    _no_decode(monkeypatch)
    url = "data:image/png;base64," + base64.b64encode(grey_png(9000, 9000)).decode()
    with pytest.raises(Error, match="too many pixels"):
        comp.preprocess(ImageData(url=url))
    small = grey_png(30, 20)
    path = comp.preprocess(ImageData(url="data:image/png;base64," + base64.b64encode(small).decode()))
    assert Path(path).read_bytes() == small
    with pytest.raises(Error, match="not valid base64"):
        comp.preprocess(ImageData(url="data:image/png;base64,@@@"))


def test_decompression_bomb_is_called_too_many_pixels(tmp_path):
    from gradio import Error
    from gradio.data_classes import ImageData

    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    with pytest.raises(Error, match="too many pixels"):
        guarded().preprocess(ImageData(path=str(path), orig_name="bomb.png"))
    from segr1.app.handler import load_upload

    with pytest.raises(DemoInputError, match="too many pixels"):
        load_upload(path, DemoLimits())


def test_demo_page_hands_uploads_over_undecoded():
    from segr1.app.demo import build_app
    from segr1.app.fakes import RedBlobPolicy

    app = build_app({"foreground": object_pipeline(RedBlobPolicy(frame=64))}, examples=[])
    (image,) = [
        b
        for b in app.blocks.values()
        if type(b).__name__ == "Image"
        and getattr(b, "interactive", None) is not False
        and b.elem_id == "segr1-image"
    ]
    assert image.image_mode is None


def object_pipeline(policy):
    from segr1.pipeline import SegR1Pipeline
    from segr1.segmenters import load_segmenter

    return SegR1Pipeline(policy, load_segmenter("grabcut"), frame=64)


def test_request_time_limit_answers_in_time(tmp_path):
    class Slow:
        task = "foreground"

        def __call__(self, image, text=None):
            time.sleep(5)

    path = tmp_path / "x.png"
    Image.new("RGB", (20, 20)).save(path)
    limits = DemoLimits(request_timeout_s=0.5)
    start = time.perf_counter()
    with pytest.raises(DemoInputError, match="took longer than 0.5 s"):
        handle_request({"foreground": Slow()}, str(path), "foreground", "", limits, tmp_path / "out")
    assert time.perf_counter() - start < 3
    assert run_with_time_limit(lambda: 7, 1.0) == 7
    with pytest.raises(KeyError):
        run_with_time_limit(lambda: {}["x"], 1.0)
    with pytest.raises(ValueError, match="request_timeout_s"):
        DemoLimits(request_timeout_s=0)


@pytest.mark.timeout(180)  # importing the demo takes seconds, and longer on a loaded machine
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_demo_temp_folders_are_removed_on_sigterm_and_sigint(tmp_path, sig):
    script = (  # the folder is printed inside the try, so that Ctrl+C cannot land between the two
        "import sys, time\n"
        "from segr1.app.demo import _temp_dir, exit_cleanly_on_signals\n"
        "exit_cleanly_on_signals()\n"
        "try:\n"
        "    print(_temp_dir('segr1-test-'), flush=True)\n"
        "    time.sleep(120)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    # A shell without job control starts background commands with SIGINT ignored, and Python then installs no
    # Ctrl+C handler: give the child SIGINT's default, as a terminal does, so that a backgrounded run tests it too.
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    folder = Path(proc.stdout.readline().strip())
    assert folder.is_dir()
    proc.send_signal(sig)
    proc.wait(timeout=90)
    assert not folder.exists()
