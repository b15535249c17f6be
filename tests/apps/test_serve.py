"""The web app through Flask's test client: the page, /healthz, /api/predict and its errors,
/video_feed's answers without a working source, and ``python -m fer serve``'s options.

The model is replaced by a stub (``create_app(analyze=...)`` or a monkeypatched
``fer.analyze``) so these tests are fast and test the app, not the model; one test runs the real
``fer.analyze`` with the committed model (fer/weights/main.keras) on a real face. The real server
(waitress, worker processes, the MJPEG stream) is tested in ``test_server.py``.
"""

from __future__ import annotations

import io
import json
import struct
import time
import zlib

import cv2
import numpy as np
import pytest

import fer
from fer.apps import serve
from fer.config import CLASSES


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def _stub_faces(image: np.ndarray) -> list[dict]:
    """Two faces, with numpy scalars as real code may return them."""
    h, w = image.shape[:2]
    probs = np.full(7, 0.05, np.float32)
    probs[CLASSES.index("happy")] = 0.7
    return [
        {"box": np.array([1, 2, w // 2, h // 2]), "label": "happy", "probs": dict(zip(CLASSES, probs, strict=True)),
         "score": np.float32(0.5)},
        {"box": [0, 0, 5, 5], "label": "sad", "probs": {c: float(c == "sad") for c in reversed(CLASSES)}},
    ]


@pytest.fixture
def seen() -> list[np.ndarray]:
    return []


@pytest.fixture
def client(seen):
    def analyze(image):
        seen.append(image)
        return _stub_faces(image)

    app = serve.create_app(analyze=analyze, max_upload_bytes=2**20, max_pixels=2_000_000)
    return app.test_client()


def _post(client, data: bytes | None, field: str = "image", filename: str = "photo.png"):
    payload = {} if data is None else {field: (io.BytesIO(data), filename)}
    return client.post("/api/predict", data=payload, content_type="multipart/form-data")


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def test_page_has_upload_webcam_and_script(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'type="file"' in html and "webcam" in html.lower() and "app.js" in html
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.data) > 500
        r.close()
    assert b"live.js" in client.get("/static/app.js").data  # the webcam view is the shared module
    assert b"getUserMedia" in client.get("/static/live.js").data


def test_predict_returns_the_faces_as_plain_json(client, seen):
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    response = _post(client, _png(image))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["width"], body["height"]) == (80, 60) and body["ms"] >= 0
    first, second = body["faces"]
    assert first["box"] == [1, 2, 40, 30] and first["label"] == "happy"
    assert list(first["probs"]) == list(CLASSES)
    assert first["probs"]["happy"] == pytest.approx(0.7) and first["score"] == 0.5
    assert list(second["probs"]) == list(CLASSES)  # re-ordered into class order
    # the model got the uploaded pixels, as BGR
    assert len(seen) == 1 and np.array_equal(seen[0], image)


def test_grayscale_and_jpeg_uploads_become_bgr(client, seen):
    gray = np.full((50, 50), 128, np.uint8)
    ok, jpg = cv2.imencode(".jpg", gray)
    assert _post(client, jpg.tobytes(), filename="x.jpg").status_code == 200
    assert seen[-1].shape == (50, 50, 3)


def test_default_analyze_is_fer_analyze_looked_up_per_request(monkeypatch):
    calls = []
    monkeypatch.setattr(fer, "analyze", lambda image, **kw: calls.append(image.shape) or [])
    response = _post(serve.create_app().test_client(), _png(np.zeros((10, 12, 3), np.uint8)))
    assert response.status_code == 200 and response.get_json()["faces"] == []
    assert calls == [(10, 12, 3)]


@pytest.mark.parametrize(
    ("data", "field", "status", "words"),
    [
        (None, "image", 400, "field 'image'"),
        (b"", "image", 400, "empty"),
        (b"x" * 100, "photo", 400, "field 'image'"),
        (b"%PDF-1.4 definitely not an image", "image", 415, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image", 415, "not an image"),  # a broken PNG
        (_jpeg(np.full((120, 160, 3), 90, np.uint8))[:400], "image", 415, "not an image"),  # a truncated JPEG
        (b"x" * (2**20 + 10), "image", 413, "larger than"),
    ],
)
def test_bad_uploads_get_a_json_4xx(client, seen, data, field, status, words):
    response = _post(client, data, field=field)
    assert response.status_code == status
    assert words in response.get_json()["error"]
    assert seen == []  # never reached the model


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be huge: the header alone must get it refused."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def test_too_many_pixels_is_413_before_decoding(client, seen):
    response = _post(client, _png_header_only(50_000, 50_000))
    assert response.status_code == 413 and "megapixel" in response.get_json()["error"]
    big = _png(np.zeros((1500, 1500), np.uint8))  # small file, 2.25 MP > the 2 MP limit
    assert _post(client, big).status_code == 413
    assert seen == []


def test_unknown_route_and_wrong_method_are_json(client):
    assert client.get("/nope").get_json()["error"].startswith("Not Found")
    response = client.get("/api/predict")
    assert response.status_code == 405 and "error" in response.get_json()


def test_a_model_failure_is_json_not_a_trace():
    from fer.inference.predict import ModelFileError

    def missing(image):
        raise ModelFileError("no bundled model in fer/weights; train one")

    def broken(image):
        raise RuntimeError("boom")

    def no_detector(image):
        from fer.inference.faces import DetectorUnavailable

        raise DetectorUnavailable("no face detector: pip install ai-edge-litert")

    png = _png(np.zeros((8, 8, 3), np.uint8))
    response = _post(serve.create_app(analyze=missing).test_client(), png)
    assert response.status_code == 503 and "train one" in response.get_json()["error"]
    response = _post(serve.create_app(analyze=no_detector).test_client(), png)
    assert response.status_code == 503 and "pip install" in response.get_json()["error"]
    response = _post(serve.create_app(analyze=broken).test_client(), png)
    assert response.status_code == 500 and "Traceback" not in response.get_data(as_text=True)
    assert "RuntimeError" in response.get_json()["error"]
    nan = [{"box": [0, 0, 1, 1], "label": "sad", "probs": {c: float("nan") for c in CLASSES}}]
    response = _post(serve.create_app(analyze=lambda image: nan).test_client(), png)
    assert response.status_code == 500 and "non-finite" in response.get_json()["error"]
    json.loads(response.data, parse_constant=pytest.fail)  # strict JSON: no bare NaN


def test_healthz_reports_the_bundled_model(client, monkeypatch, tmp_path):
    from fer.inference import predict

    monkeypatch.setattr(predict, "WEIGHTS_DIR", tmp_path)
    body = client.get("/healthz")
    assert body.status_code == 503 and body.get_json()["status"] == "no-model"
    assert str(tmp_path) in body.get_json()["model"]["error"]  # says where it looked
    (tmp_path / "main.keras").write_bytes(b"model")
    (tmp_path / "main.json").write_text('{"name": "main", "arch": "resnet", "params": 123, '
                                        '"data": {"validation": "public_test"}, '
                                        '"metrics": {"validation": {"accuracy_single": 0.7}}}')
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok"
    assert body["model"] == {"available": True, "file": "main.keras", "size_bytes": 5, "name": "main",
                                  "arch": "resnet", "params": 123, "validation_accuracy": 0.7,
                                  "validation_split": "public_test"}


def test_cli_serve_binds_localhost_by_default_and_passes_its_options(monkeypatch):
    from fer import cli

    calls = []
    monkeypatch.delenv("FER_TOKEN", raising=False)
    monkeypatch.setattr(serve, "serve", lambda **kw: calls.append(kw))
    assert cli.main(["serve"]) == 0
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "8080", "--threads", "3", "--workers", "0",
                     "--source", "clip.mp4", "--max-viewers", "2", "--max-upload-mb", "2.5"]) == 0
    generated = calls[1].pop("token")  # off loopback: a token, generated, so printed
    assert isinstance(generated, str) and len(generated) >= 32
    assert calls == [
        {"host": "127.0.0.1", "port": 5000, "threads": 12, "workers": None, "source": None, "max_viewers": 8,
         "max_upload_mb": 10, "debug": False, "token": None, "show_token": False},
        {"host": "0.0.0.0", "port": 8080, "threads": 3, "workers": 0, "source": "clip.mp4", "max_viewers": 2,
         "max_upload_mb": 2.5, "debug": False, "show_token": True},
    ]


@pytest.mark.parametrize(("argv", "environ", "token", "shown"), [
    (["--host", "0.0.0.0", "--token", "abc"], {"FER_TOKEN": "env"}, "abc", False),  # a given token is not echoed
    (["--host", "0.0.0.0"], {"FER_TOKEN": "env"}, "env", False),
    (["--token", "abc"], {}, "abc", False),  # on loopback too, when one is given
    (["--host", "0.0.0.0", "--no-token"], {"FER_TOKEN": "env"}, None, False),
    (["--host", "localhost"], {}, None, False),
])
def test_cli_serve_takes_its_token_from_the_flag_then_fer_token(monkeypatch, argv, environ, token, shown):
    from fer import cli

    calls = []
    monkeypatch.delenv("FER_TOKEN", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(serve, "serve", lambda **kw: calls.append(kw))
    assert cli.main(["serve", *argv]) == 0
    assert (calls[0]["token"], calls[0]["show_token"]) == (token, shown)


@pytest.mark.parametrize(("argv", "words"), [
    (["--debug", "--host", "0.0.0.0"], "development server"),
    (["--source", "no-such-clip.mp4"], "no such video file"),
    (["--max-upload-mb", "0"], "must be positive"),
    (["--threads", "0"], "at least 1"),
    (["--max-viewers", "0"], "at least 1"),
    (["--workers", "-1"], "0 or more"),
    (["--host", "0.0.0.0", "--token", "abc", "--no-token"], "--token and --no-token contradict"),
    (["--host", "0.0.0.0", "--token", ""], "--token is empty"),
])
def test_cli_serve_refuses_bad_options_before_loading_anything(monkeypatch, capsys, argv, words):
    from fer import cli
    from fer.apps import uploads

    loaded = []
    monkeypatch.setattr(uploads, "warm_up", lambda: loaded.append(1))
    monkeypatch.setattr(serve, "warm_up", lambda: loaded.append(1))
    assert cli.main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.splitlines()) == 1 and loaded == []


def test_only_loopback_hosts_count_as_local():
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert serve.is_loopback(host), host
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.org"):
        assert not serve.is_loopback(host), host


@pytest.mark.parametrize("kind", ["image/jpeg", "image/png", "application/octet-stream"])
def test_predict_takes_a_raw_image_body(client, seen, kind):
    image = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    data = _png(image) if kind != "image/jpeg" else _jpeg(image)
    response = client.post("/api/predict", data=data, content_type=kind)
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["width"], response.get_json()["height"]) == (30, 40)
    assert seen[-1].shape == (40, 30, 3)


@pytest.mark.parametrize(("data", "kind", "status", "words"), [
    (b"", "image/jpeg", 400, "empty"),
    (b"not a jpeg at all", "image/jpeg", 415, "not an image"),
    (b"hello", "text/plain", 415, "raw image/jpeg"),
    (b"x" * (2**20 + 10), "image/jpeg", 413, "larger than 1 MB"),
])
def test_bad_raw_bodies_get_a_json_4xx(client, seen, data, kind, status, words):
    response = client.post("/api/predict", data=data, content_type=kind)
    assert response.status_code == status
    assert words in response.get_json()["error"]
    assert seen == []


def test_the_upload_limit_is_set_at_start_up():
    app = serve.create_app(analyze=_stub_faces, max_upload_bytes=int(0.5 * 2**20))
    client = app.test_client()
    assert "0.5 MB" in client.get("/").get_data(as_text=True)
    small = _png(np.zeros((10, 10, 3), np.uint8))
    assert _post(client, small).status_code == 200
    response = _post(client, small + b"\0" * 2**19)
    assert response.status_code == 413 and "0.5 MB" in response.get_json()["error"]


def test_video_feed_without_a_source_says_how_to_set_one(client):
    response = client.get("/video_feed")
    assert response.status_code == 404 and "--source" in response.get_json()["error"]
    assert "stream" not in client.get("/healthz").get_json()
    assert 'id="stream"' not in client.get("/").get_data(as_text=True)


def test_a_camera_that_cannot_open_is_a_message_not_a_hang():
    from fer.apps.stream import VideoStream

    stream = VideoStream(97, analyze=_stub_faces).start()  # no machine has 98 cameras
    try:
        client = serve.create_app(analyze=_stub_faces, stream=stream).test_client()
        for _ in range(100):
            if stream.status()["state"] == "error":
                break
            time.sleep(0.1)
        response = client.get("/video_feed")
        assert response.status_code == 503 and "no camera at index 97" in response.get_json()["error"]
        health = client.get("/healthz")
        body = health.get_json()
        assert health.status_code == 200 and body["status"] == "degraded"  # the API still answers
        assert body["stream"]["state"] == "error" and "no camera at index 97" in body["stream"]["error"]
        assert "no camera at index 97" in client.get("/").get_data(as_text=True)
    finally:
        stream.stop()


def test_real_analyze_end_to_end():
    """The real detector and the committed model behind the endpoint (fails if fer/weights lacks it)."""
    from skimage import data as skimage_data

    client = serve.create_app().test_client()
    health = client.get("/healthz").get_json()
    assert health["status"] == "ok" and health["model"]["file"] == "main.keras", health
    blank = _post(client, _png(np.full((240, 320, 3), 200, np.uint8)))
    assert blank.status_code == 200 and blank.get_json()["faces"] == []
    astronaut = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)  # one smiling face
    response = _post(client, _png(astronaut), filename="astronaut.png")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["width"], body["height"]) == (512, 512) and len(body["faces"]) == 1
    (face,) = body["faces"]
    x, y, w, h = face["box"]
    assert 0 <= x < x + w <= 512 and 0 <= y < y + h <= 512
    assert sum(face["probs"].values()) == pytest.approx(1, abs=1e-3) and face["label"] == "happy"
    # the endpoint answers exactly what the library does on the same pixels
    (direct,) = fer.analyze(astronaut)
    assert face["box"] == direct["box"] and face["label"] == direct["label"]
    assert face["probs"] == pytest.approx(direct["probs"], abs=1e-6)


def test_cli_serve_without_a_model_fails_before_listening(monkeypatch, capsys):
    import waitress

    from fer import cli
    from fer.inference import predict

    def no_model():
        raise predict.ModelFileError("no bundled model in fer/weights; train one with --ship")

    listened = []
    monkeypatch.setattr(predict, "default_classifier", no_model)
    monkeypatch.setattr(waitress, "create_server", lambda *a, **kw: listened.append(kw))
    assert cli.main(["serve", "--workers", "0"]) == 2
    assert "train one" in capsys.readouterr().err and listened == []


class _FakeWaitress:
    """What ``serve()`` needs of a waitress server, recording how it was made and run."""

    made: list = []

    def __init__(self, app, **kw):
        self.app, self.kw = app, kw
        self.effective_host, self.effective_port = kw["host"], kw["port"]
        self.task_dispatcher = type("Tasks", (), {"shutdown": lambda self, timeout=None: True})()
        _FakeWaitress.made.append(self)

    def run(self):
        assert self.app.test_client().get("/healthz").status_code in (200, 503)

    def close(self):
        self.kw["closed"] = True


def test_serve_runs_waitress_and_warns_when_it_faces_a_network(monkeypatch, capsys):
    import waitress

    _FakeWaitress.made = []
    monkeypatch.setattr(waitress, "create_server", _FakeWaitress)
    import signal

    handler = signal.getsignal(signal.SIGTERM)
    serve.serve(warm=False, workers=0)
    assert signal.getsignal(signal.SIGTERM) is handler  # put back when the server stops
    out = capsys.readouterr()
    assert "Serving on http://127.0.0.1:5000 (waitress; 12 threads, no worker processes)" in out.out
    assert "warning" not in out.err
    serve.serve(host="0.0.0.0", port=8081, threads=3, warm=False, workers=0)
    out = capsys.readouterr()
    assert "warning: serving on 0.0.0.0" in out.err and "no authentication" in out.err
    first, second = _FakeWaitress.made
    assert first.kw["host"] == "127.0.0.1" and first.kw["threads"] == 12 and first.kw["closed"]
    assert second.kw["host"] == "0.0.0.0" and second.kw["port"] == 8081 and second.kw["threads"] == 3


def test_serve_with_a_token_prints_the_urls_to_open_and_asks_for_it(monkeypatch, capsys):
    import socket

    import waitress

    _FakeWaitress.made = []
    monkeypatch.setattr(waitress, "create_server", _FakeWaitress)
    monkeypatch.setattr(socket, "gethostname", lambda: "box")
    serve.serve(host="0.0.0.0", port=8081, warm=False, workers=0, token="t0k")
    out = capsys.readouterr()
    assert "warning" not in out.err  # a token: nothing to warn about
    assert "    http://box:8081/?token=t0k\n    http://127.0.0.1:8081/?token=t0k\n" in out.out
    serve.serve(host="0.0.0.0", port=8081, warm=False, workers=0, token="given", show_token=False)
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8081/?token=..." in out and "given" not in out
    for server in _FakeWaitress.made:  # the app it served asks for the token
        client = server.app.test_client()
        assert client.get("/").status_code == 401 and client.get("/healthz").status_code != 401


def test_stream_viewers_get_threads_of_their_own(monkeypatch, capsys, tmp_path):
    import waitress

    from fer.apps import demo

    clip = demo.astronaut_clip(tmp_path / "clip.mp4", seconds=1.0)
    _FakeWaitress.made = []
    monkeypatch.setattr(waitress, "create_server", _FakeWaitress)
    serve.serve(warm=False, workers=0, threads=4, source=str(clip), max_viewers=3)
    (server,) = _FakeWaitress.made
    assert server.kw["threads"] == 4 + 3
    assert "streaming clip.mp4 at /video_feed to up to 3 viewers" in capsys.readouterr().out


def test_debug_is_flask_s_development_server_on_loopback_only(monkeypatch):
    from flask import Flask

    runs = []
    monkeypatch.setattr(Flask, "run", lambda self, **kw: runs.append(kw))
    serve.serve(warm=False, debug=True)
    assert runs == [{"host": "127.0.0.1", "port": 5000, "threaded": True, "debug": True, "use_reloader": False}]
    with pytest.raises(ValueError, match="development server"):
        serve.serve(host="0.0.0.0", warm=False, debug=True)
