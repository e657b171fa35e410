"""End-to-end: the demo on 127.0.0.1 driven in headless Chromium (Debian's /usr/bin/chromium + Playwright).

Upload an image, submit, wait for the overlay, the mask download and the status; refuse a request with no
instruction (an error toast, not a crash); run an example. Screenshots go to ``test-artifacts/demo-browser/``
at the repository root (and the test's tmp_path). The app runs a fake red-blob policy with GrabCut, so the
mask is checked against the ground truth.

Needs: ``apt-get install chromium`` and ``pip install playwright`` (no ``playwright install``: the system
Chromium is used). Skipped with the reason when either is missing.
"""

from __future__ import annotations

import io
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1.app.fakes import RedBlobPolicy, iou, red_disc_scene

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "demo-browser"
# The flags that work on this workplace's closed network (no background connections, no sandbox as root).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the Python driver is missing: pip install playwright (uses /usr/bin/chromium)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    image, mask = red_disc_scene(320, 240, 200, 110, 50, seed=3)
    path = folder / "red-disc.png"
    Image.fromarray(image).save(path)
    return path, mask


@pytest.fixture(scope="module")
def server(scene, tmp_path_factory):
    from segr1.app.demo import build_app, launch, make_pipelines
    from segr1.app.handler import DemoLimits
    from segr1.segmenters import load_segmenter

    limits = DemoLimits(max_upload_mb=2, concurrency=1)
    pipelines = make_pipelines(RedBlobPolicy(frame=256), load_segmenter("grabcut"))
    examples = [(str(scene[0]), "referring", "the red disc")]
    app = build_app(pipelines, examples=examples, limits=limits, out_dir=tmp_path_factory.mktemp("masks"))
    port = free_port()
    launch(app, "127.0.0.1", port, limits, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # a new, empty user-data-dir
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            yield page
        finally:
            context.close()


def screenshot(page, name: str, tmp_path: Path, full_page: bool = True) -> Path:
    """PNG into tmp_path, copied to test-artifacts/demo-browser/ (``full_page=False``: the viewport, which
    shows fixed-position error toasts)."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=full_page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return path


def wait_for_status(page, prefix: str) -> str:
    page.wait_for_function(
        "p => (document.querySelector('#segr1-status textarea') || {}).value?.startsWith(p)", arg=prefix
    )
    return page.input_value("#segr1-status textarea")


def wait_for_toast(page, text: str) -> str:
    """Wait for an error toast containing ``text`` to finish sliding in; returns the toast's text."""
    page.wait_for_selector(f"[data-testid=toast-body] >> text={text}")
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=toast-body]')].some(t => {
               const r = t.getBoundingClientRect();
               return r.left >= 0 && r.right <= window.innerWidth && getComputedStyle(t).opacity === '1';
           })"""
    )
    return page.inner_text("[data-testid=toast-body]")


def test_upload_submit_shows_overlay_and_mask(server, browser_page, scene, tmp_path):
    page = browser_page
    path, gt = scene
    page.goto(server)
    page.set_input_files("#segr1-image input[type=file]", str(path))
    page.wait_for_selector("#segr1-image img")  # the upload's preview
    page.click("#segr1-submit")
    page.wait_for_selector("#segr1-overlay img")
    link = page.wait_for_selector("#segr1-mask a[download]")
    status = wait_for_status(page, "ok")
    assert "mask covers" in status
    assert link.get_attribute("download").endswith("_mask.png")
    png = page.request.get(link.get_attribute("href")).body()
    mask = np.asarray(Image.open(io.BytesIO(png))) > 128
    assert mask.shape == gt.shape and iou(mask, gt) > 0.8
    assert "<bbox>" in page.input_value("#segr1-answer textarea")
    assert '"boxes"' in page.inner_text("#segr1-prompts")
    overlay_src = page.get_attribute("#segr1-overlay img", "src")
    assert overlay_src and "gradio_api/file=" in overlay_src
    screenshot(page, "01-upload-segment.png", tmp_path)


def test_missing_instruction_shows_a_message(server, browser_page, scene, tmp_path):
    page = browser_page
    page.goto(server)
    page.click("#segr1-task label:has-text('reasoning')")
    page.set_input_files("#segr1-image input[type=file]", str(scene[0]))
    page.wait_for_selector("#segr1-image img")
    page.click("#segr1-submit")
    assert "type it in the instruction box" in wait_for_toast(page, "needs a question")
    assert page.input_value("#segr1-status textarea") == ""
    screenshot(page, "02-missing-instruction.png", tmp_path, full_page=False)


def test_corrupt_upload_shows_a_message(server, browser_page, tmp_path):
    page = browser_page
    page.goto(server)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    page.set_input_files("#segr1-image input[type=file]", str(fake))
    page.click("#segr1-submit")
    wait_for_toast(page, "not an image this demo can read")
    screenshot(page, "03-corrupt-upload.png", tmp_path, full_page=False)


def test_example_fills_inputs_and_segments(server, browser_page, tmp_path):
    page = browser_page
    page.goto(server)
    page.get_by_text("the red disc").first.click()
    page.wait_for_function("() => document.querySelector('#segr1-text textarea').value === 'the red disc'")
    page.wait_for_selector("#segr1-image img")
    page.click("#segr1-submit")
    status = wait_for_status(page, "ok")
    assert "1 box, 1 point" in status
    assert '"referring"' in page.inner_text("#segr1-prompts")
    screenshot(page, "04-example-referring.png", tmp_path)
