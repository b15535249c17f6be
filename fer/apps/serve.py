"""The local web app: upload a photo or use the webcam, see every face's expression.

``create_app()`` builds the Flask app; ``serve()`` (``python -m fer serve``) runs it under
waitress, a production WSGI server, on 127.0.0.1 unless a host is asked for. Routes:

- ``GET /``: one page (``fer/templates/index.html`` + ``fer/static/``) that sends a photo, or
  webcam frames at a few per second, and draws boxes, labels and probability bars; with a
  server-side source, also the annotated stream;
- ``POST /api/predict``: multipart field ``image``, or a raw ``image/jpeg``/``image/png`` body →
  ``{"faces": [...], "width", "height", "ms"}`` with each face as :func:`fer.analyze` returns it;
- ``GET /video_feed``: the ``--source`` camera or file, annotated, as MJPEG (:mod:`fer.apps.stream`);
- ``GET /healthz``: ``{"status", "model", "stream"}`` for monitoring, without running the model;
- ``GET /models/<name>``: the shipped ``.tflite`` files, for the page's browser mode (the models
  run in the browser under LiteRT.js, from ``/static/litert/``; :mod:`fer.apps.web`).

Off loopback the server asks for an access token on every route but ``/healthz``
(:mod:`fer.apps.access`: ``?token=`` then a cookie, or ``Authorization: Bearer``).

Uploads are analysed by worker processes (:mod:`fer.apps.workers`, one per core) while waitress's
threads do the HTTP; with ``--workers 0`` (and in ``create_app()`` by default) they are analysed
in the request threads, in parallel too: the detector and the classifier keep one interpreter per
concurrent caller (:class:`fer.inference.runtimes.InterpreterPool`), not one behind a lock. Why this shape,
measured: docs/performance.md ("The web app under load"). Every error a client can cause is a
JSON ``{"error": ...}`` with a 4xx status, never a trace.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from fer.apps import uploads
from fer.apps.access import is_loopback, login_urls, protect
from fer.apps.stream import MIMETYPE, VideoStream
from fer.apps.uploads import MAX_PIXELS, BadImage, warm_up
from fer.apps.workers import Workers, WorkersUnavailable
from fer.config import CLASSES, MAX_UPLOAD_MB, MAX_VIEWERS, PACKAGE_DIR, SERVE_THREADS
from fer.inference.predict import ModelOutputError

#: Uploads larger than this are refused (413) before they are read into memory
#: (``python -m fer serve --max-upload-mb``).
MAX_UPLOAD_BYTES = int(MAX_UPLOAD_MB * 2**20)
#: Raw request bodies taken as an image (besides the multipart field ``image``).
RAW_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "application/octet-stream")
Analyze = Callable[[np.ndarray], list[dict[str, Any]]]


def model_info() -> dict[str, Any]:
    """What /healthz reports: the bundled model file and its card, without loading TensorFlow."""
    from fer.inference import cards
    from fer.inference.predict import ModelFileError, bundled_path

    try:
        path = bundled_path()
    except ModelFileError as err:
        return {"available": False, "error": str(err)}
    card = cards.read(path)
    info: dict[str, Any] = {"available": True, "file": path.name, "size_bytes": path.stat().st_size}
    for key in ("name", "arch", "params", "sha256", "date"):
        if key in card:
            info[key] = card[key]
    metrics = (card.get("metrics") or {}).get("validation") or {}
    if "accuracy_single" in metrics:  # with the split it was measured on, so it is not misread
        info["validation_accuracy"] = metrics["accuracy_single"]
        info["validation_split"] = (card.get("data") or {}).get("validation")
    return info


def create_app(analyze: Analyze | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_PIXELS, stream: VideoStream | None = None,
               workers: Workers | None = None, token: str | None = None) -> Flask:
    """Build the app. ``analyze`` defaults to :func:`fer.analyze` (looked up per request, so a
    test can monkeypatch it); ``stream`` is the ``--source`` video behind ``/video_feed``;
    ``workers`` (:class:`fer.apps.workers.Workers`) analyse uploads in other processes; with a
    ``token``, every route but ``/healthz`` asks for it (:func:`fer.apps.access.protect`)."""
    # templates/ and static/ are the package's, shared with the webcam widget and the reports
    app = Flask(__name__, template_folder=PACKAGE_DIR / "templates", static_folder=PACKAGE_DIR / "static")
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes
    app.json.sort_keys = False  # keep probabilities in class order
    limit = f"{max_upload_bytes / 2**20:g} MB"
    if token is not None:
        protect(app, token)

    @app.get("/")
    def index():
        return render_template("index.html", classes=CLASSES, max_mb=f"{max_upload_bytes / 2**20:g}",
                               stream=stream.status() if stream is not None else None, runtime="server")
    app.add_url_rule("/models/<name>", "model_file", _model_file)

    @app.get("/healthz")
    def healthz():
        info = model_info()
        body: dict[str, Any] = {"status": "ok" if info["available"] else "no-model", "model": info}
        if stream is not None:
            body["stream"] = stream.status()
            if info["available"] and body["stream"]["state"] == "error":
                body["status"] = "degraded"  # the API answers; the video source does not
        return jsonify(body), 200 if info["available"] else 503

    @app.post("/api/predict")
    def predict():
        try:
            raw = _upload_bytes()
            if workers is not None:
                return jsonify(workers.answer(raw, max_pixels))
            return jsonify(uploads.answer(raw, max_pixels, analyze))
        except BadImage as err:
            return _error(str(err), err.status)

    @app.get("/video_feed")
    def video_feed():
        if stream is None:
            return _error("no video source: start the server with --source 0 (a camera) or --source clip.mp4.", 404)
        status = stream.status()
        if status["state"] in ("error", "stopped"):
            return _error(status["error"] or f"{stream.name} has stopped.", 503)
        frames = stream.viewer()
        if frames is None:
            return _error(f"{stream.max_viewers} viewers already watch {stream.name}; try again later.", 503)
        return Response(VideoStream.mjpeg(frames), mimetype=MIMETYPE,
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        if err.code == 413:
            return _error(f"the upload is larger than {limit}; send a smaller photo.", 413)
        return _error(f"{err.name}: {err.description}", err.code or 500)

    @app.errorhandler(Exception)
    def unexpected(err: Exception):
        from fer.inference.faces import DetectorUnavailable
        from fer.inference.predict import ModelFileError

        if isinstance(err, ModelFileError | DetectorUnavailable | WorkersUnavailable):  # the message says the fix
            return _error(str(err), 503)
        app.logger.exception("prediction failed")
        if isinstance(err, ModelOutputError):
            return _error(str(err), 500)
        return _error(f"the server could not analyse this image ({type(err).__name__}); see the server log.", 500)

    return app


def _model_file(name: str):
    """``GET /models/<name>``: the page's browser mode fetches the shipped models here
    (:func:`fer.apps.web.asset_path` is the list); the runtime is under ``/static/litert/``."""
    from fer.apps.web import RUNTIME_FILES, WebAssetError, asset_path

    try:
        if name in RUNTIME_FILES:
            raise WebAssetError(f"{name} is under /static/litert/, not /models/")
        path = asset_path(name)
    except WebAssetError as err:
        return _error(str(err), 404)
    return send_file(path, mimetype="application/octet-stream", max_age=3600)


def _upload_bytes() -> bytes:
    """The image of a request: the multipart field ``image``, or a raw image body."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is None:
            raise BadImage("no file in the multipart field 'image'; send the photo as image=@photo.jpg.")
        return upload.read()
    if request.mimetype in RAW_TYPES:
        return request.get_data(cache=False)
    raise BadImage(f"send the photo as the multipart field 'image' or as a raw image/jpeg or image/png body, "
                   f"not {request.mimetype or 'a body without a Content-Type'}.", status=415)


def _error(message: str, status: int):
    return jsonify(error=message), status


def serve(host: str = "127.0.0.1", port: int = 5000, threads: int = SERVE_THREADS, workers: int | None = None,
          source: str | None = None, max_upload_mb: float = MAX_UPLOAD_MB, max_viewers: int = MAX_VIEWERS,
          debug: bool = False, warm: bool = True, token: str | None = None, show_token: bool = True) -> None:
    """Run the app under waitress (``debug``: Flask's development server, loopback only).

    ``workers`` processes (default: one per CPU core; 0: none) analyse the uploads while
    ``threads`` waitress threads handle HTTP. ``source`` (a camera index or a video file) is opened
    once, here, and streamed at ``/video_feed`` to up to ``max_viewers`` viewers, each on a thread
    of its own (so they never take the uploads' threads); no request can name another source. The
    camera is released and the workers stop when the server stops. With a ``token`` (the CLI's
    :func:`fer.apps.access.resolve_token`), every route but ``/healthz`` asks for it, and the URLs
    to open are printed with it (with ``?token=...`` in its place unless ``show_token``); without
    one, a host that is not loopback gets a warning.
    """
    if debug and not is_loopback(host):
        raise ValueError(f"--debug runs Flask's development server, which must not face a network; "
                         f"drop --debug to serve on {host}.")
    if max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be positive, not {max_upload_mb:g}")
    if threads < 1 or max_viewers < 1:
        raise ValueError(f"--threads and --max-viewers must be at least 1, not {threads} and {max_viewers}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 0:
        raise ValueError(f"--workers must be 0 or more, not {workers}")
    stream = VideoStream(source, max_viewers=max_viewers) if source is not None else None  # checks a file
    pool = None
    try:
        if warm:
            print("loading the model...", flush=True)
            warm_up()  # here too: the stream analyses in this process, and a first run converts the model
        if workers and not debug:
            pool = Workers(workers)
            pool.warm()
        if stream is not None:
            stream.start()
        app = create_app(max_upload_bytes=int(max_upload_mb * 2**20), stream=stream, workers=pool, token=token)
        if token is None and not is_loopback(host):
            print(f"warning: serving on {host} without an access token (--no-token): anyone who can reach "
                  "this machine can use the app (it has no authentication).", file=sys.stderr)
        if debug:
            _print_login([(host, port)], token, show_token)
            app.run(host=host, port=port, threaded=True, debug=True, use_reloader=False)
            return
        _run_waitress(app, host, port, threads, pool, stream, token, show_token)
    finally:
        if stream is not None:
            stream.stop()
        if pool is not None:
            pool.close()


def _run_waitress(app: Flask, host: str, port: int, threads: int, pool: Workers | None,
                  stream: VideoStream | None, token: str | None = None, show_token: bool = True) -> None:
    from waitress import create_server

    viewers = stream.max_viewers if stream is not None else 0
    server = create_server(app, host=host, port=port, threads=threads + viewers, ident="fer-study",
                           channel_timeout=30)
    addresses = _addresses(server)
    where = ", ".join(f"http://{h}:{p}" for h, p in addresses)
    n = pool.processes if pool else 0
    how = [f"{threads} threads", f"{n or 'no'} worker process{'' if n == 1 else 'es'}"]
    if stream is not None:
        how.append(f"streaming {stream.name} at /video_feed to up to {viewers} viewers")
    print(f"Serving on {where} (waitress; {', '.join(how)}). Ctrl+C stops.", flush=True)
    _print_login(addresses, token, show_token)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm) if main else None  # kill, systemd, docker stop
    try:
        server.run()
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        if stream is not None:
            stream.stop()  # ends every viewer's response, so their threads finish before the sockets close
        server.task_dispatcher.shutdown(timeout=5)
        server.close()


def _print_login(addresses: list[tuple[str, int]], token: str | None, show_token: bool) -> None:
    """As Jupyter does: the URLs to open, with the token in them."""
    if token is None:
        return
    urls = "\n".join(f"    {url}" for url in login_urls(addresses, token, show_token))
    print(f"Open the app with its access token (the page then keeps it in a cookie; scripts send "
          f"'Authorization: Bearer <token>'):\n{urls}", flush=True)


class _Stopped(Exception):
    """SIGTERM arrived: leave ``server.run()`` so the camera and the workers are let go."""


def _stop_on_sigterm(signum, frame):
    raise _Stopped


def _addresses(server) -> list[tuple[str, int]]:
    """The (host, port) pairs a waitress server listens on (several with a host name)."""
    servers = getattr(server, "effective_listen", None)
    if servers:
        return [(f"[{h}]" if ":" in h else h, p) for h, p in servers]
    return [(server.effective_host, server.effective_port)]
