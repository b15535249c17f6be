"""The models in the browser, in a real browser: Debian's chromium (Playwright) with the fake camera.

- the widget's browser mode in JupyterLab: the models run in the page (LiteRT.js), the overlay is
  drawn, the kernel gets the latest faces a few times a second and never a frame; a model file
  that does not load makes it fall back to the kernel and say why;
- the static demo (``python -m fer export --web``) served from a tmp folder by ``python -m
  http.server`` on 127.0.0.1: ready, the webcam labelled in the browser with ``data-faces`` and
  "N predictions/s", a photo labelled, a broken model file's message, a denied or missing
  camera's message;
- the web app's page switched to "models run in this browser".

Rates are printed for the record (benchmarks/browser_runtime.py measures them), never asserted on.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from fer.apps.web import export_web
from fer.config import CLASSES, SHARED_DIR

sys.path.insert(0, str(Path(__file__).parent))
import browser  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]

WAIT_S = 180  # a cold kernel imports the package and sends the runtime first


def _notebook(*sources: str) -> str:
    cells = [{"cell_type": "code", "execution_count": None, "id": str(i), "metadata": {}, "outputs": [],
              "source": s.strip().splitlines(keepends=True)} for i, s in enumerate(sources)]
    return json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}})


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser-mode")
    (root / "browser.ipynb").write_text(_notebook("from fer.apps import webcam\ncam = webcam.Webcam()\ncam"))
    (root / "broken.ipynb").write_text(_notebook('''
from fer.apps import webcam

class BrokenModel(webcam.Webcam):
    """A classifier file that arrives damaged (a half-copied or replaced file)."""
    def asset_bytes(self, name):
        return b"not a model" if name == "lite.tflite" else super().asset_bytes(name)

cam = BrokenModel()
cam
'''))
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


def _overlay_faces(view) -> list[dict]:
    return json.loads(view.locator(".fer-live-overlay").get_attribute("data-faces") or "[]")


def _assert_faces(faces: list[dict], width: int, height: int) -> None:
    assert faces, "no face in data-faces"
    for face in faces:
        x, y, w, h = face["box"]
        assert 0 <= x and 0 <= y and w > 10 and h > 10 and x + w <= width and y + h <= height, face
        assert face["label"] in CLASSES and set(face["probs"]) == set(CLASSES)
        assert face["label"] == max(face["probs"], key=face["probs"].get)
        assert abs(sum(face["probs"].values()) - 1) < 1e-3


def test_the_widget_runs_the_models_in_the_browser_and_reports_to_the_kernel(lab, root, page):
    kernel = browser.run_all(page, lab, "lab", "browser.ipynb")
    view = page.locator(".fer-live").first
    stats = browser.wait_for_predictions(view, 30, WAIT_S)
    assert stats["where"] == "in the browser (lite)" and stats["message"] == "", stats
    assert "in the browser (lite)" in view.locator(".fer-live-stats").inner_text()
    _assert_faces(_overlay_faces(view), *browser.Y4M_SIZE)
    before = json.loads(browser.kernel_run(root, kernel, "import json; print(json.dumps([cam.browser_reports]))"))[0]
    page.wait_for_timeout(4000)
    state = json.loads(browser.kernel_run(root, kernel, (
        "import json; print(json.dumps([cam.browser_reports, cam.frames_received, cam.active_runtime, cam.faces, "
        "cam.stats]))")))
    reports, received, active, faces, synced = state
    assert active == "browser" and received == 0  # no frame went to the kernel
    # throttled: at most report_fps (5) a second, while predictions run at the camera's rate
    assert 4 <= reports - before <= 5 * 4 + 2, (before, reports)
    assert faces and faces[0]["label"] in CLASSES and synced["predictions"] > reports
    print(f"\n[widget, browser mode] {browser.live_stats(view)['fps']} predictions/s, "
          f"{reports - before} reports to the kernel in 4 s")

    # runtime="kernel" from Python: the same view sends frames to the kernel instead
    browser.kernel_run(root, kernel, "cam.runtime = 'kernel'")
    page.wait_for_function("e => e.dataset.where === 'in the kernel'", arg=view.element_handle(), timeout=10_000)
    n = int(browser.live_stats(view)["predictions"])
    browser.wait_for_predictions(view, n + 5, 60)
    received = json.loads(browser.kernel_run(root, kernel, "import json; print(json.dumps(cam.frames_received))"))
    assert received >= 5


def test_a_model_file_that_does_not_load_falls_back_to_the_kernel(lab, root, page):
    kernel = browser.run_all(page, lab, "lab", "broken.ipynb")
    view = page.locator(".fer-live").first
    page.wait_for_function("e => (e.dataset.where || '').startsWith('in the kernel')",
                           arg=view.element_handle(), timeout=WAIT_S * 1000)
    bar = view.locator(".fer-live-stats").inner_text()
    assert "browser runtime did not load" in bar and "lite.tflite" in bar, bar
    stats = browser.wait_for_predictions(view, 10, WAIT_S)
    assert [x for x in stats["labels"].split(",") if x]
    active, why, received = json.loads(browser.kernel_run(
        root, kernel, "import json; print(json.dumps([cam.active_runtime, cam.runtime_error, cam.frames_received]))"))
    assert active == "kernel" and "lite.tflite" in why and received >= 10


# --------------------------------------------------------------------------- the static demo


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The exported folder, served by python -m http.server on 127.0.0.1 (stopped after)."""
    folder = tmp_path_factory.mktemp("site")
    export_web(folder)
    port = browser.free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)]
    with browser.server(cmd, f"http://127.0.0.1:{port}", folder.parent / f"{folder.name}.log", ready="/index.html") as url:
        yield url, folder


def _ready(page, url: str) -> str:
    page.goto(url + "/")
    page.wait_for_function("() => ['true', 'error'].includes(document.body.dataset.ready)", timeout=30_000)
    return page.evaluate("() => document.body.dataset.ready")


def test_the_static_page_labels_the_webcam_and_a_photo_in_the_browser(site, page, tmp_path):
    url, _ = site
    assert _ready(page, url) == "true", page.inner_text("#status")
    assert "Models ready in this browser" in page.inner_text("#status")
    page.click("#camera")
    view = page.locator("#live .fer-live")
    stats = browser.wait_for_predictions(view, 30, 60)
    assert stats["where"] == "in this browser (lite)" and stats["message"] == ""
    text = view.locator(".fer-live-stats").inner_text()
    assert " predictions/s" in text and float(text.split(" predictions/s")[0].split()[-1]) > 0, text
    _assert_faces(_overlay_faces(view), *browser.Y4M_SIZE)
    print(f"\n[static page] {text}; ready in {page.evaluate('document.body.dataset.loadMs')} ms")

    photo = SHARED_DIR / "media" / "happy.jpg"
    if not photo.is_file():
        import cv2

        from fer.inference.faces import sample_photo

        photo = tmp_path / "astronaut.png"
        cv2.imwrite(str(photo), sample_photo())
    page.set_input_files("#file", str(photo))
    page.wait_for_function("() => /1 face in/.test(document.getElementById('status').textContent)", timeout=30_000)
    assert "in this browser" in page.inner_text("#status")
    import cv2

    h, w = cv2.imread(str(photo)).shape[:2]
    _assert_faces(json.loads(page.locator("#canvas").get_attribute("data-faces")), w, h)


def test_the_static_page_says_when_a_model_file_does_not_load(site, page):
    url, folder = site
    broken = folder.parent / "broken-site"
    shutil.copytree(folder, broken, dirs_exist_ok=True)
    (broken / "models" / "lite.tflite").write_bytes(b"<html>404</html>")  # a host's error page in its place
    port = browser.free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(broken)]
    with browser.server(cmd, f"http://127.0.0.1:{port}", folder.parent / "broken.log", ready="/index.html") as other:
        assert _ready(page, other) == "error"
        status = page.inner_text("#status")
        assert "did not load" in status and "lite.tflite" in status and "export" in status, status
        assert page.locator("#status.error").count() == 1


@pytest.mark.parametrize(("flags", "code", "words"), [
    (("--deny-permission-prompts",), "denied", "permission was denied"),
    ((), "none", "No camera was found"),
], ids=["denied", "no-camera"])
def test_the_static_page_says_why_the_camera_did_not_open(site, playwright, flags, code, words):
    url, _ = site
    args = [*flags, "--no-sandbox"] + (["--use-fake-device-for-media-stream"] if code == "denied" else [])
    b = playwright.chromium.launch(executable_path=browser.chromium_path(), headless=True, args=args)
    try:
        page = b.new_page()
        assert _ready(page, url) == "true"
        page.click("#camera")
        view = page.locator("#live .fer-live")
        page.wait_for_function("([e, c]) => e.dataset.message === c", arg=[view.element_handle(), code], timeout=30_000)
        assert words in view.locator(".fer-live-message").inner_text()
        assert "Start webcam" in page.inner_text("#camera")
    finally:
        b.close()


def test_the_servers_page_runs_the_models_in_the_browser_when_asked(page, tmp_path):
    port = browser.free_port()
    cmd = [sys.executable, "-m", "fer", "serve", "--port", str(port), "--workers", "0"]
    with browser.server(cmd, f"http://127.0.0.1:{port}", tmp_path / "serve.log", ready="/healthz",
                        env={"TF_CPP_MIN_LOG_LEVEL": "3"}) as url:
        page.goto(url + "/")
        page.select_option("#runtime", "browser")
        page.wait_for_function("() => document.body.dataset.ready === 'true'", timeout=30_000)
        page.click("#camera")
        view = page.locator("#live .fer-live")
        stats = browser.wait_for_predictions(view, 20, 60)
        assert stats["where"] == "in this browser (lite)"
        _assert_faces(_overlay_faces(view), *browser.Y4M_SIZE)
        page.select_option("#classifier", "main")  # the ensemble, in the browser too
        page.wait_for_function("() => document.body.dataset.ready === 'true' && document.body.dataset.classifier === 'main'",
                               timeout=30_000)
        n = int(browser.live_stats(view)["predictions"])
        stats = browser.wait_for_predictions(view, n + 10, 60)
        assert stats["where"] == "in this browser (main)"
