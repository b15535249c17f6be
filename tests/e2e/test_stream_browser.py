"""The page's server-video panel in a real browser: Debian's chromium (Playwright,
``executable_path``) against ``python -m fer serve --source ...`` started here on 127.0.0.1.

What a person would check: with a video file as the source the panel plays the annotated video
(frames arrive and change) and says it is live, beside the upload view that still works; a video
that cannot load is said so and tried again; a camera that does not exist shows its message at
once, without asking for the video; without --source the page has no panel at all.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import pytest

import fer
from fer.apps import demo

sys.path.insert(0, str(Path(__file__).parent))
import browser  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]

#: This checkout's root: the servers run its code (an editable install elsewhere would not).
ROOT = Path(fer.__file__).resolve().parents[1]
TIMEOUT_MS = 15_000
VIEWPORT = {"width": 1280, "height": 800}

# a hash of the picture the <img> shows now (it is same-origin, so the canvas stays readable)
FRAME_HASH = """img => {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, c.width, c.height).data;
  let h = 0, sum = 0;
  for (let i = 0; i < data.length; i += 4) { h = (h * 31 + data[i] + data[i + 1] + data[i + 2]) >>> 0; sum += data[i]; }
  return {hash: h, sum, width: c.width, height: c.height};
}"""


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stream")


@pytest.fixture(scope="module")
def clip(root) -> Path:
    return demo.astronaut_clip(root / "clip.mp4", seconds=4, fps=15)  # a real face, drifting


@pytest.fixture(scope="module")
def y4m(root) -> Path:  # the fake camera browser.launch wants; these tests never open it
    return browser.write_y4m(list(demo.astronaut_frames(15)), root / "camera.y4m")


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    yield page
    context.close()


def _serve(root: Path, name: str, *args: str):
    """``python -m fer serve`` on a free port with no worker processes (they only take uploads
    elsewhere, and cost a start-up each), this checkout's code on the subprocess's path."""
    port = browser.free_port()
    cmd = [sys.executable, "-m", "fer", "serve", "--port", str(port), "--workers", "0", *args]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return browser.server(cmd, f"http://127.0.0.1:{port}", root / f"{name}.log", ready="/healthz",
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": path})


def _stream_state(url: str) -> dict:
    with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
        return json.load(r)["stream"]


@pytest.fixture(scope="module")
def clip_app(root, clip):
    with _serve(root, "serve-clip", "--source", str(clip)) as url:
        yield url


@pytest.fixture(scope="module")
def no_camera_app(root):
    with _serve(root, "serve-camera9", "--source", "9") as url:
        yield url


def _screenshot(page, tmp_path: Path) -> Path:
    """The page as a person sees it at 1280x800: into docs/images/ only under FER_SCREENSHOTS=1
    (refreshing the README's picture), else into the test's own folder."""
    folder = ROOT / "docs" / "images" if os.environ.get("FER_SCREENSHOTS") == "1" else tmp_path
    path = folder / "web_stream.png"
    page.screenshot(path=str(path))
    return path


def test_the_page_plays_the_server_video_beside_the_upload_view(clip_app, clip, page, tmp_path):
    feeds = []
    page.on("request", lambda r: feeds.append(r.url) if "/video_feed" in r.url else None)
    page.goto(clip_app + "/")
    assert page.text_content("#stream-title").strip() == f"Server video · {clip.name}"
    img = page.locator("#stream")
    assert img.get_attribute("alt")
    page.wait_for_function("() => document.getElementById('stream').naturalWidth > 0", timeout=TIMEOUT_MS)
    page.wait_for_function("() => /^Live, \\d+ frames\\/s, 1 viewer/.test("
                           "document.getElementById('stream-status').textContent)", timeout=TIMEOUT_MS)
    status = page.locator("#stream-status")
    assert status.get_attribute("role") == "status" and "error" not in status.get_attribute("class")

    first = img.evaluate(FRAME_HASH)
    page.wait_for_timeout(1000)
    second = img.evaluate(FRAME_HASH)
    assert (first["width"], first["height"]) == (640, 360) and first["sum"] > 0
    assert first["hash"] != second["hash"], "the server video shows the same frame a second later"
    state = _stream_state(clip_app)
    assert state["state"] == "live" and state["viewers"] == 1 and state["frames"] > 15, state

    # the upload view is still there and still works
    assert page.locator("#file").count() == 1 and page.locator("#drop").is_visible()
    assert page.locator("#live").is_hidden() and "Start webcam" in page.inner_text("#camera")
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), next(demo.astronaut_frames(1)))
    page.set_input_files("#file", str(photo))
    page.wait_for_function("() => /1 face in/.test(document.getElementById('status').textContent)",
                           timeout=TIMEOUT_MS)
    assert page.locator("#faces .face-title").count() == 1
    page.wait_for_timeout(2500)  # a poll or two after the upload: the stream is still live
    assert page.inner_text("#stream-status").startswith("Live")
    assert len(feeds) == 1, feeds  # one request for the whole visit: no retries, no reconnections
    shot = _screenshot(page, tmp_path)
    print(f"\n[screenshot] {shot} ({shot.stat().st_size / 1024:.0f} KB); stream {_stream_state(clip_app)}")


def test_a_video_that_does_not_load_is_said_and_tried_again(clip_app, page):
    page.route("**/video_feed*", lambda route: route.fulfill(
        status=503, content_type="application/json", body='{"error": "6 viewers already watch clip.mp4"}'))
    page.goto(clip_app + "/")
    page.wait_for_function("() => document.getElementById('stream-status').classList.contains('error')",
                           timeout=TIMEOUT_MS)
    assert "did not load" in page.inner_text("#stream-status")
    assert page.locator("#stream").is_hidden()
    page.unroute("**/video_feed*")  # the next try (after 5 s) gets the video
    page.wait_for_function("() => document.getElementById('stream').naturalWidth > 0 && "
                           "/^Live/.test(document.getElementById('stream-status').textContent)", timeout=TIMEOUT_MS)
    assert page.locator("#stream").is_visible()
    assert "error" not in page.locator("#stream-status").get_attribute("class")


def test_a_missing_camera_shows_its_message_without_asking_for_the_video(no_camera_app, page):
    state = _stream_state(no_camera_app)
    assert state["state"] == "error" and "no camera at index 9" in state["error"], state
    feeds = []
    page.on("request", lambda r: feeds.append(r.url) if "/video_feed" in r.url else None)
    page.goto(no_camera_app + "/")
    status = page.locator("#stream-status")
    assert "no camera at index 9" in status.inner_text()  # in the page as served, before any poll
    assert "error" in status.get_attribute("class").split()
    assert status.is_visible() and page.locator("#stream").is_hidden()
    assert page.text_content("#stream-title").strip() == "Server video · camera 9"
    page.wait_for_timeout(2500)  # a poll later: still the message, still no request for the video
    assert "no camera at index 9" in status.inner_text() and "error" in status.get_attribute("class").split()
    assert feeds == []
    assert page.locator("#file").count() == 1 and page.locator("#drop").is_visible()


def test_a_camera_that_fails_while_the_page_is_open_shows_its_message(no_camera_app, page):
    # the page as it is served while the source is still fine (src set, no message), then the
    # source fails: the <img>'s error and the poll of /healthz show why
    def as_if_starting(route):
        response = route.fetch()
        html = response.text().replace('data-state="error"', 'data-state="starting"')
        html = html.replace('class="status error"', 'class="status"').replace('id="stream" hidden', 'id="stream" src="/video_feed"')
        route.fulfill(response=response, body=html)

    feeds = []
    page.on("requestfailed", lambda r: feeds.append(r.url) if "/video_feed" in r.url else None)
    page.on("requestfinished", lambda r: feeds.append(r.url) if "/video_feed" in r.url else None)
    page.route(lambda url: urlsplit(url).path == "/", as_if_starting)
    page.goto(no_camera_app + "/")
    page.wait_for_function("() => /no camera at index 9/.test(document.getElementById('stream-status').textContent)",
                           timeout=TIMEOUT_MS)
    assert "error" in page.locator("#stream-status").get_attribute("class").split()
    assert page.locator("#stream").is_hidden() and feeds  # it did ask for the video, and got a 503


def test_without_a_source_the_page_has_no_stream_panel(root, page):
    with _serve(root, "serve-plain") as url:
        page.goto(url + "/")
        page.wait_for_selector("#file", state="attached", timeout=TIMEOUT_MS)
        assert page.locator("#stream").count() == 0 and page.locator("#server-stream").count() == 0
        assert page.locator("#stream-status").count() == 0
        assert page.locator("#drop").is_visible() and page.locator("#camera").is_visible()
        page.wait_for_timeout(500)
        assert "Model ready" in page.inner_text("#status")
