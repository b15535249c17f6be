"""The server-side video stream and the real server: ``fer.apps.stream.VideoStream`` on a generated
clip, then ``python -m fer serve`` (waitress, worker processes) on 127.0.0.1 with two MJPEG
viewers at once, a bounded load of concurrent uploads, and a clean stop.

The clip is scikit-image's astronaut (a real face) drifting over a grey background, written by
``fer.apps.demo.astronaut_clip``, so these tests need neither ../shared nor a camera.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

import fer
import fer.apps.serve
from fer.apps import demo, loadtest, stream
from fer.apps.stream import VideoStream
from fer.apps.video import SourceError
from fer.config import CLASSES

sys.path.insert(0, str(Path(__file__).parent))
import browser  # noqa: E402

#: Where this checkout's ``fer`` is, for servers started as subprocesses.
CODE_DIR = str(Path(fer.__file__).resolve().parents[1])


def _one_face(image: np.ndarray) -> list[dict]:
    h, w = image.shape[:2]
    probs = dict.fromkeys(CLASSES, 0.05) | {"happy": 0.7}
    return [{"box": [w // 4, h // 4, w // 3, h // 3], "label": "happy", "probs": probs}]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return demo.astronaut_clip(tmp_path_factory.mktemp("clip") / "astronaut.mp4", seconds=2.0, fps=15.0)


def _take(frames, n: int, timeout: float = 20.0) -> list[bytes]:
    """The first ``n`` frames of a viewer, or all of them with ``n=0`` (in a thread, so a hang
    fails the test instead)."""
    got: list[bytes] = []

    def read():
        for jpeg in frames:
            got.append(jpeg)
            if n and len(got) >= n:
                break

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"only {len(got)} of {n} frames in {timeout} s"
    return got


def _wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --------------------------------------------------------------------------- VideoStream


def test_two_viewers_share_one_reader_and_each_gets_every_new_frame(clip):
    calls = []
    s = VideoStream(clip, analyze=lambda f: calls.append(1) or _one_face(f)).start()
    try:
        a, b = s.viewer(), s.viewer()
        results = {}
        threads = [threading.Thread(target=lambda k=k, v=v: results.__setitem__(k, _take(v, 8)))
                   for k, v in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results["a"]) == len(results["b"]) == 8
        for jpeg in results["a"] + results["b"]:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (360, 640, 3)  # the clip's frames, annotated
        assert len(set(results["a"])) == 8  # a new frame each time, never the same one twice
        # one analysis per frame, however many watch (two viewers, not two readers)
        assert len(calls) <= s.frames_done + 1
        status = s.status()
        assert status["source"] == "astronaut.mp4" and status["state"] == "live" and status["viewers"] == 2
    finally:
        s.stop()


def test_a_viewer_that_leaves_takes_nothing_from_the_others(clip):
    s = VideoStream(clip, analyze=_one_face).start()
    try:
        a, b = s.viewer(), s.viewer()
        _take(a, 3)
        a.close()  # what the server does when that browser goes away
        assert s.status()["viewers"] == 1
        assert len(_take(b, 5)) == 5
        b.close()
        assert s.status()["viewers"] == 0
        _wait(lambda: s.status()["state"] == "idle")  # nobody watches: the source is not read
        done = s.frames_done
        time.sleep(0.5)
        assert s.frames_done == done
        assert len(_take(s.viewer(), 3)) == 3  # and a newcomer starts it again
    finally:
        s.stop()


def test_a_file_plays_in_a_loop(clip):
    seen = []

    def analyze(frame):
        seen.append(1)
        return _one_face(frame)

    s = VideoStream(clip, analyze=analyze).start()  # 30 frames at 15 fps
    try:
        assert len(_take(s.viewer(), 40, timeout=30)) == 40  # more frames than the file has
    finally:
        s.stop()
    assert len(seen) >= 40


def test_stop_ends_every_viewer_and_releases_the_source(clip):
    s = VideoStream(clip, analyze=_one_face).start()
    v = s.viewer()
    _take(v, 2)
    s.stop()
    _take(v, 0)  # the viewer's generator ends (a hang would fail here)
    assert next(v, None) is None
    assert not s._thread.is_alive() and s.status()["state"] == "stopped"
    assert list(s.viewer()) == []  # a late viewer ends at once


def test_viewers_beyond_the_limit_are_refused(clip):
    s = VideoStream(clip, analyze=_one_face, max_viewers=2).start()
    try:
        first, second = s.viewer(), s.viewer()
        assert first is not None and second is not None and s.viewer() is None
        first.close()  # never read: a browser that left before its first frame
        third = s.viewer()
        assert third is not None and s.viewer() is None
        VideoStream.mjpeg(third).close()  # what the server closes when a client goes
        assert s.status()["viewers"] == 1 and s.viewer() is not None
    finally:
        s.stop()


def test_a_missing_file_fails_at_start_up(tmp_path):
    with pytest.raises(SourceError, match="no such video file"):
        VideoStream(tmp_path / "nope.mp4")
    with pytest.raises(SourceError, match="not a file"):
        VideoStream(tmp_path)


def test_a_camera_that_never_opens_gives_up_after_open_timeout(monkeypatch):
    gate = threading.Event()

    def hangs(source):
        gate.wait(10)
        raise SourceError("too late")

    monkeypatch.setattr(stream, "open_source", hangs)
    s = VideoStream(0, analyze=_one_face, open_timeout=0.5).start()
    try:
        started = time.monotonic()
        assert list(s.viewer()) == []  # the viewer ends instead of waiting for ever
        assert time.monotonic() - started < 5
        status = s.status()
        assert status["state"] == "error" and "did not open within 0.5 s" in status["error"]
    finally:
        gate.set()
        s.stop()


def test_an_analysis_failure_stops_the_stream_with_its_message(clip):
    def broken(frame):
        raise RuntimeError("model exploded")

    s = VideoStream(clip, analyze=broken).start()
    try:
        assert list(s.viewer()) == []
        status = s.status()
        assert status["state"] == "error" and "model exploded" in status["error"]
    finally:
        s.stop()


def test_mjpeg_parts_carry_their_length_and_close_the_viewer():
    closed = []

    def frames():
        try:
            yield b"\xff\xd8one\xff\xd9"
            yield b"\xff\xd8two\xff\xd9"
        finally:
            closed.append(True)

    parts = VideoStream.mjpeg(frames())
    assert iter(parts) is parts
    first = next(parts)
    assert first.startswith(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 7\r\n\r\n")
    assert first.endswith(b"\xff\xd8one\xff\xd9\r\n")
    parts.close()
    assert closed == [True]


# --------------------------------------------------------------------------- the real server


@pytest.fixture(scope="module")
def server(clip, tmp_path_factory):
    """``python -m fer serve --source clip`` with its defaults: waitress and worker processes."""
    port = browser.free_port()
    log = tmp_path_factory.mktemp("server") / "serve.log"
    cmd = [sys.executable, "-m", "fer", "serve", "--port", str(port), "--source", str(clip), "--workers", "2"]
    env = {"PYTHONPATH": CODE_DIR, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with browser.server(cmd, f"http://127.0.0.1:{port}", log, ready="/healthz", env=env) as url:
        yield url, port, log


def _mjpeg_frames(port: int, n: int, out: list, timeout: float = 30.0) -> None:
    """Read ``n`` JPEG parts from /video_feed into ``out``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/video_feed")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("multipart/x-mixed-replace; boundary=frame")
        while len(out) < n:
            line = response.fp.readline()
            if not line:
                return
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":")[1])
                response.fp.readline()  # the blank line before the JPEG
                out.append(response.fp.read(size))
    finally:
        conn.close()


@pytest.mark.slow
def test_two_browsers_watch_the_server_stream_at_once(server):
    url, port, _ = server
    got: dict[str, list] = {"a": [], "b": []}
    threads = [threading.Thread(target=_mjpeg_frames, args=(port, 10, got[k]), daemon=True) for k in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for frames in got.values():
        assert len(frames) == 10
        assert all(f.startswith(b"\xff\xd8") and f.endswith(b"\xff\xd9") for f in frames)
    # both gone: the server sees it and frees their places
    _wait(lambda: _health(url)["stream"]["viewers"] == 0, timeout=15)


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def _health(url: str) -> dict:
    import json

    with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
        return json.load(r)


@pytest.mark.slow
def test_concurrent_uploads_under_load_get_no_errors(server):
    url, _, _ = server
    result = loadtest.load(url, loadtest.sample_jpeg(), clients=4, seconds=4.0)
    assert result["errors"] == 0, result["error_kinds"]
    assert result["requests"] >= 8 and result["faces_per_response"] == 1.0
    raw = loadtest.load(url, loadtest.sample_jpeg(), clients=2, seconds=1.0, raw=True)  # a raw image/jpeg body
    assert raw["errors"] == 0 and raw["requests"] >= 1


@pytest.mark.slow
def test_the_worker_processes_answer_bad_uploads_with_their_json_4xx(server):
    url, port, _ = server
    bomb = _png_claiming(50_000, 50_000)
    for body, kind, status, words in [(b"garbage", "image/jpeg", 415, "not an image"),
                                      (b"", "image/png", 400, "empty"),
                                      (bomb, "image/png", 413, "megapixel"),
                                      (b"\xff\xd8" + b"\0" * (30 * 2**20), "image/jpeg", 413, "larger than 10 MB")]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/api/predict", body, {"Content-Type": kind})
        response = conn.getresponse()
        assert response.status == status and words.encode() in response.read()
        conn.close()
    assert _health(url)["status"] == "ok"


@pytest.mark.slow
def test_sigterm_stops_the_server_its_workers_and_the_stream(clip, tmp_path):
    port = browser.free_port()
    cmd = [sys.executable, "-m", "fer", "serve", "--port", str(port), "--source", str(clip), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": CODE_DIR, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait(lambda: _answers(port), timeout=120)
        children = _children(proc.pid)
        assert len(children) >= 2, log.read_text()  # the workers (and multiprocessing's tracker)
        viewer: list = []
        t = threading.Thread(target=_mjpeg_frames, args=(port, 10_000, viewer, 30.0), daemon=True)
        t.start()
        _wait(lambda: len(viewer) >= 3, timeout=30)  # a viewer is watching when the server is told to stop
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
        t.join(10)
        assert not t.is_alive()  # the viewer's stream ended, it was not left hanging
        _wait(lambda: not any(Path(f"/proc/{c}").exists() for c in children), timeout=10)
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
            return True
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.slow
def test_bench_url_load_tests_a_running_server_and_says_when_there_is_none(server, capsys):
    import json

    from fer import cli

    url, _, _ = server
    assert cli.main(["bench", "--url", url, "--clients", "2", "--seconds", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["errors"] == 0 and result["requests"] >= 1 and result["faces_per_response"] == 1.0
    closed = f"http://127.0.0.1:{browser.free_port()}"
    assert cli.main(["bench", "--url", closed, "--clients", "1", "--seconds", "0.3"]) == 2
    assert "answered no request" in capsys.readouterr().err
    assert cli.main(["bench", "--url", "ftp://example.org", "--seconds", "0.3"]) == 2
    assert "http://" in capsys.readouterr().err


@pytest.mark.slow
def test_a_server_started_with_a_token_asks_every_route_but_healthz_for_it(tmp_path):
    port = browser.free_port()
    cmd = [sys.executable, "-m", "fer", "serve", "--port", str(port), "--workers", "0", "--token", "abc"]
    env = {"PYTHONPATH": CODE_DIR, "TF_CPP_MIN_LOG_LEVEL": "3", "FER_TOKEN": ""}
    log = tmp_path / "serve.log"
    with browser.server(cmd, f"http://127.0.0.1:{port}", log, ready="/healthz", env=env):
        def ask(method: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                body = loadtest.sample_jpeg() if method == "POST" else None
                conn.request(method, path, body, {"Content-Type": "image/jpeg", **(headers or {})})
                response = conn.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            finally:
                conn.close()

        assert ask("GET", "/healthz")[0] == 200  # monitoring needs no token
        status, _, body = ask("POST", "/api/predict")
        assert status == 401 and b"Authorization: Bearer" in body
        assert ask("POST", "/api/predict", {"Authorization": "Bearer wrong"})[0] == 401
        status, _, body = ask("POST", "/api/predict", {"Authorization": "Bearer abc"})
        assert status == 200 and b'"faces"' in body
        assert ask("GET", "/")[0] == 401
        status, headers, _ = ask("GET", "/?token=abc")
        assert status == 303 and headers["Location"] == "/"
        assert ask("GET", "/", {"Cookie": headers["Set-Cookie"].split(";")[0]})[0] == 200
        base = f"http://127.0.0.1:{port}"  # the load test passes the printed URL's token as the header
        assert loadtest.load(f"{base}/?token=abc", loadtest.sample_jpeg(), clients=1, seconds=0.5)["errors"] == 0
        assert loadtest.load(base, loadtest.sample_jpeg(), clients=1, seconds=0.5)["error_kinds"].keys() == {"HTTP 401"}
    printed = log.read_text()
    assert f"http://127.0.0.1:{port}/?token=..." in printed and "token=abc" not in printed  # a given token is not echoed


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced_and_its_request_gets_a_503():
    from fer.apps.workers import Workers, WorkersUnavailable

    workers = Workers(1)
    try:
        (pid,) = workers.warm()
        jpeg = loadtest.sample_jpeg()
        assert len(workers.answer(jpeg, 40_000_000)["faces"]) == 1
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2])
        with pytest.raises(WorkersUnavailable, match="try again"):
            workers.answer(jpeg, 40_000_000)
        assert len(workers.answer(jpeg, 40_000_000)["faces"]) == 1  # a fresh worker answers
        client = fer.apps.serve.create_app(workers=workers).test_client()
        os.kill(workers.warm()[0], signal.SIGKILL)
        time.sleep(0.5)
        response = client.post("/api/predict", data=jpeg, content_type="image/jpeg")
        assert response.status_code == 503 and "try again" in response.get_json()["error"]
    finally:
        workers.close()
