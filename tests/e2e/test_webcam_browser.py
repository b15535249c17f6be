"""The live webcam in a real browser: Debian's chromium (Playwright, ``executable_path``) with a
fake camera playing a Y4M clip of a real face, against JupyterLab, Notebook 7 and the web page,
each started here on 127.0.0.1 and stopped by the fixture.

What a person would check: frames reach the kernel, answers come back, the overlay shows a label
over a live video; the base64 fallback works when buffers are dropped; a denied or missing
camera and a busy kernel each show their message; the page's webcam view and upload both label a
face. The figures (predictions/s, round trip) are printed for the record, never asserted on.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from fer.config import CLASSES, NOTEBOOKS_DIR, SHARED_DIR

sys.path.insert(0, str(Path(__file__).parent))
import browser  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]

NB04 = "04_webcam_demo.ipynb"
WAIT_S = 180  # a cold kernel imports TensorFlow and loads the model first


def _notebook(*sources: str) -> str:
    cells = [{"cell_type": "code", "execution_count": None, "id": str(i), "metadata": {}, "outputs": [],
              "source": s.strip().splitlines(keepends=True)} for i, s in enumerate(sources)]
    return json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}})


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The Jupyter root: copies of notebook 04 (an interactive run saves outputs; the committed
    notebook must stay stripped) and scratch notebooks for the error paths."""
    root = tmp_path_factory.mktemp("jupyter")
    shutil.copy(NOTEBOOKS_DIR / NB04, root / NB04)
    (root / "transports.ipynb").write_text(_notebook("""
from IPython.display import display
from fer.apps import webcam

class DroppedBuffers(webcam.Webcam):
    \"\"\"What a widget manager that drops binary buffers (Colab's, on some paths) does.\"\"\"
    @staticmethod
    def frame_bytes(content, buffers):
        return webcam.Webcam.frame_bytes(content, [])

auto = DroppedBuffers(transport="auto", runtime="kernel")
forced = webcam.Webcam(transport="base64", runtime="kernel")
strict = DroppedBuffers(transport="buffers", runtime="kernel")
display(auto, forced, strict)
"""))
    (root / "slow.ipynb").write_text(_notebook("""
import time
import fer
from fer.apps import webcam

stall = {"seconds": 0.0}  # the test sets it: the kernel then takes that long to answer a frame

def analyze(image):
    time.sleep(stall.pop("seconds", 0.0))
    stall["seconds"] = 0.0
    return fer.analyze(image)

cam = webcam.Webcam(analyze=analyze)
cam
"""))
    (root / "one.ipynb").write_text(_notebook("from fer.apps import webcam\ncam = webcam.Webcam()\ncam"))
    return root


@pytest.fixture(scope="module")
def y4m(root) -> Path:
    return browser.write_y4m(browser.camera_frames(), root / "camera.y4m")


@pytest.fixture(scope="module")
def lab(root):
    with browser.jupyter("lab", root, root / "lab.log") as url:
        yield url


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1300, "height": 1100})
    page = context.new_page()
    yield page
    context.close()


def _overlay_has_drawing(view) -> bool:
    return view.locator(".fer-live-overlay").evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 === 3 && v > 0)")


def _video_frames(view) -> int:
    return view.locator("video").evaluate("v => v.getVideoPlaybackQuality().totalVideoFrames")


def _assert_live(view, stats: dict, kernel: bool = True) -> None:
    labels = [x for x in stats["labels"].split(",") if x]
    assert labels and set(labels) <= set(CLASSES), stats
    assert int(stats["predictions"]) > 0
    if kernel:  # the kernel's own count of frames came back with the answers
        assert int(stats["received"]) >= int(stats["predictions"]), stats
    assert stats["message"] == "", view.locator(".fer-live-message").inner_text()
    assert _overlay_has_drawing(view)


def _record(name: str, stats: dict, extra: str = "") -> None:
    print(f"\n[{name}] {float(stats['fps']):.1f} predictions/s, round trip p50 {float(stats['rttP50Ms']):.0f} ms "
          f"p95 {float(stats['rttP95Ms']):.0f} ms, encode p50 {float(stats['encodeP50Ms']):.0f} ms, "
          f"model {float(stats['kernelMs']):.0f} ms, transport {stats.get('transport') or '-'} {extra}")


def _screenshot(view, name: str, tmp_dir: Path) -> None:
    view.scroll_into_view_if_needed()
    view.screenshot(path=str(tmp_dir / name))
    if os.environ.get("FER_SCREENSHOT_DIR"):  # e.g. to refresh the README's picture
        shutil.copy(tmp_dir / name, Path(os.environ["FER_SCREENSHOT_DIR"]) / name)


def test_jupyterlab_runs_notebook_04_live(lab, root, page, tmp_path):
    # notebook 04's Webcam() runs the models in the browser (runtime "auto" where LiteRT.js loads);
    # the kernel path is what the other tests here run (runtime="kernel")
    kernel = browser.run_all(page, lab, "lab", NB04)
    view = page.locator(".fer-live").first
    stats = browser.wait_for_predictions(view, 20, WAIT_S)
    _assert_live(view, stats, kernel=False)
    assert stats["where"].startswith("in the browser")

    # the video plays at the camera's rate (15 fps), whatever the prediction rate
    before = _video_frames(view)
    page.wait_for_timeout(2000)
    assert _video_frames(view) - before >= 15, "the live video is not playing at the camera's rate"

    # the kernel's side: frames counted, the latest faces kept, the browser's figures synced
    counts = json.loads(browser.kernel_run(root, kernel, "import json; print(json.dumps("
                                           "[cam.browser_reports, cam.active_runtime, cam.faces, cam.stats]))"))
    reports, active, faces, synced = counts
    assert active == "browser" and reports >= 3 and faces and faces[0]["label"] in CLASSES
    assert synced.get("running") is True and synced.get("predictions", 0) > 0

    # steady state, the notebook's other cells done: the figures for the record
    page.wait_for_timeout(10_000)
    _record("JupyterLab, browser mode", browser.live_stats(view))
    _screenshot(page.locator(".jp-Cell", has=view), "webcam_jupyterlab.png", tmp_path)  # the cell and its widget

    # stop() from Python releases the camera in the browser; start() reopens it
    browser.kernel_run(root, kernel, "cam.stop()")
    page.wait_for_function("e => e.dataset.running === 'false'", arg=view.element_handle(), timeout=10_000)
    assert view.locator("video").evaluate("v => v.srcObject === null")
    n = int(browser.live_stats(view)["predictions"])
    browser.kernel_run(root, kernel, "cam.start()")
    browser.wait_for_predictions(view, n + 5, 30)


def test_a_kernel_that_stops_answering_is_shown_and_the_video_stays_live(lab, root, page):
    kernel = browser.run_all(page, lab, "lab", "slow.ipynb")
    view = page.locator(".fer-live").first
    browser.wait_for_predictions(view, 10, WAIT_S)
    browser.kernel_run(root, kernel, "stall['seconds'] = 7")
    page.wait_for_function("e => e.dataset.message === 'slow'", arg=view.element_handle(), timeout=10_000)
    assert "kernel has not answered" in view.locator(".fer-live-message").inner_text()
    frames = _video_frames(view)
    page.wait_for_timeout(1000)
    assert _video_frames(view) > frames + 5  # still playing
    n = int(browser.live_stats(view)["predictions"])
    browser.wait_for_predictions(view, n + 5, 20)  # the answer came; the next frames follow
    assert browser.live_stats(view)["message"] == ""
    assert _overlay_has_drawing(view)


def test_base64_forced_and_automatic_fallback(lab, page):
    browser.run_all(page, lab, "lab", "transports.ipynb")
    views = page.locator(".fer-live")
    auto, forced, strict = (views.nth(i) for i in range(3))
    for view in (auto, forced):
        stats = browser.wait_for_predictions(view, 15, WAIT_S)
        _assert_live(view, stats)
        assert stats["transport"] == "base64"
    # buffers forced while the manager drops them: a message that names the fix, no answer
    page.wait_for_function("e => e.dataset.message === 'predict'", arg=strict.element_handle(), timeout=30_000)
    assert "transport='base64'" in strict.locator(".fer-live-message").inner_text()
    assert browser.live_stats(strict)["predictions"] == "0"
    strict.locator(".fer-live-toggle").click()  # leave the kernel to the base64 view alone
    auto.locator(".fer-live-toggle").click()
    page.wait_for_timeout(12_000)
    _record("JupyterLab, base64 fallback", browser.live_stats(forced))


@pytest.mark.parametrize(("flags", "code", "words"), [
    (("--deny-permission-prompts",), "denied", "permission was denied"),
    ((), "none", "No camera was found"),
], ids=["denied", "no-camera"])
def test_camera_problems_show_their_message(lab, root, playwright, flags, code, words):
    # no fake UI (so the permission prompt is answered by the flag), and for "none" no fake device
    args = [*flags, "--no-sandbox"] + (["--use-fake-device-for-media-stream"] if code == "denied" else [])
    b = playwright.chromium.launch(executable_path=browser.chromium_path(), headless=True, args=args)
    try:
        page = b.new_page()
        kernel = browser.run_all(page, lab, "lab", "one.ipynb")
        view = page.locator(".fer-live").first
        view.wait_for(timeout=WAIT_S * 1000)
        page.wait_for_function("([e, c]) => e.dataset.message === c", arg=[view.element_handle(), code], timeout=30_000)
        text = view.locator(".fer-live-message").inner_text()
        assert words in text and "Start camera" in text
        page.wait_for_timeout(1000)  # the widget's state reaches the kernel
        state = json.loads(browser.kernel_run(root, kernel, "import json; print(json.dumps([cam.running, cam.error]))"))
        assert state[0] is False and words in state[1], state
    finally:
        b.close()


def test_notebook7_runs_notebook_04_live(root, page):
    with browser.jupyter("notebook", root, root / "notebook7.log") as url:
        browser.run_all(page, url, "notebook", NB04)
        view = page.locator(".fer-live").first
        stats = browser.wait_for_predictions(view, 15, WAIT_S)
        _assert_live(view, stats, kernel=False)  # notebook 04 runs the models in the browser
        assert stats["where"].startswith("in the browser")
        page.wait_for_timeout(12_000)  # past the first answers, which waited for the model to load
        _record("Notebook 7, browser mode", browser.live_stats(view))


def test_an_ipywidgets_7_kernel_runs_the_widget_both_ways(root, page, monkeypatch):
    # Colab's kernels have ipywidgets 7.7: the kernel side here is that version (on PYTHONPATH,
    # ahead of the project's ipywidgets 8), the page JupyterLab 4's widget manager.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [browser.ipywidgets7_path(), os.environ.get("PYTHONPATH")])))
    (root / "ipywidgets7.ipynb").write_text(_notebook(
        "import ipywidgets\nfrom IPython.display import display\nfrom fer.apps import webcam\n"
        "a, b = webcam.Webcam(runtime='kernel'), webcam.Webcam(transport='base64', runtime='kernel')\n"
        "c = webcam.Webcam()\ndisplay(a, b, c)"))
    with browser.jupyter("lab", root, root / "lab-ipywidgets7.log") as url:
        kernel = browser.run_all(page, url, "lab", "ipywidgets7.ipynb")
        views = page.locator(".fer-live")
        for i, transport in enumerate(("buffers", "base64")):
            stats = browser.wait_for_predictions(views.nth(i), 15, WAIT_S)
            _assert_live(views.nth(i), stats)
            assert stats["transport"] == transport
        stats = browser.wait_for_predictions(views.nth(2), 15, WAIT_S)  # the models in the browser
        _assert_live(views.nth(2), stats, kernel=False)
        assert stats["where"].startswith("in the browser")
        page.wait_for_timeout(1500)  # a report or more reaches the kernel
        version, answered, reports = json.loads(browser.kernel_run(root, kernel, (
            "import json; print(json.dumps([ipywidgets.__version__, a.frames_answered + b.frames_answered, "
            "c.browser_reports]))")))
        assert version.startswith("7.") and answered >= 30 and reports >= 1


@pytest.fixture(scope="module")
def app(root):
    port = browser.free_port()
    cmd = [sys.executable, "-m", "fer", "serve", "--port", str(port)]
    with browser.server(cmd, f"http://127.0.0.1:{port}", root / "serve.log", ready="/healthz",
                        env={"TF_CPP_MIN_LOG_LEVEL": "3"}) as url:
        yield url


def test_page_webcam_view_and_upload_label_a_face(app, page, tmp_path):
    page.goto(app + "/")
    page.click("#camera")
    view = page.locator("#live .fer-live")
    stats = browser.wait_for_predictions(view, 15, 60)
    _assert_live(view, stats, kernel=False)
    assert "Stop webcam" in page.inner_text("#camera")
    assert any(c in page.inner_text("#faces") for c in CLASSES)
    page.wait_for_timeout(5000)
    _record("web page", browser.live_stats(view))

    photo = SHARED_DIR / "media" / "happy.jpg"
    if not photo.is_file():
        import cv2
        from skimage import data as skdata

        photo = tmp_path / "astronaut.png"
        cv2.imwrite(str(photo), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    page.set_input_files("#file", str(photo))
    page.wait_for_function("() => /1 face in/.test(document.getElementById('status').textContent)", timeout=30_000)
    assert page.locator("#live").is_hidden() and "Start webcam" in page.inner_text("#camera")
    assert any(c in page.inner_text("#faces .face-title") for c in CLASSES)
    assert page.locator("#canvas").evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v > 0)")


def test_page_over_plain_http_from_another_host_says_how_to_reach_the_camera(app, playwright, y4m):
    # a host name that is not localhost, mapped to 127.0.0.1: a plain-http page that is no secure context
    b = browser.launch(playwright, y4m, ("--host-resolver-rules=MAP fer-demo.test 127.0.0.1",))
    try:
        page = b.new_page()
        page.goto(app.replace("127.0.0.1", "fer-demo.test") + "/")
        assert page.evaluate("() => window.isSecureContext") is False
        page.click("#camera")
        view = page.locator("#live .fer-live")
        page.wait_for_function("e => e.dataset.message === 'insecure'", arg=view.element_handle(), timeout=10_000)
        text = view.locator(".fer-live-message").inner_text()
        port = app.rsplit(":", 1)[1]
        assert "https" in text and f"ssh -L {port}:localhost:{port} fer-demo.test" in text
        assert "Start webcam" in page.inner_text("#camera")
    finally:
        b.close()
