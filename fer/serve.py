"""The local web app: upload a photo or use the webcam, see every face's expression.

``create_app()`` builds the Flask app (``python -m fer serve`` runs it on 127.0.0.1 by
default, so nothing is exposed to the network unless asked). Routes:

- ``GET /``: one page (``fer/templates/index.html`` + ``fer/static/``) that sends a photo, or
  webcam frames at a few per second, and draws boxes, labels and probability bars;
- ``POST /api/predict``: multipart field ``image`` → ``{"faces": [...], "width", "height", "ms"}``
  with each face as :func:`fer.analyze` returns it;
- ``GET /healthz``: ``{"status", "model"}`` for monitoring, without running the model.

Every error a client can cause is a JSON ``{"error": ...}`` with a 4xx status, never a trace.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from fer.config import CLASSES
from fer.predict import ModelOutputError, jsonable_faces

#: Uploads larger than this are refused (413) before they are read into memory.
MAX_UPLOAD_BYTES = 10 * 2**20
#: Decoded images larger than this (width x height) are refused (413): a small PNG can
#: decode to gigabytes, and faces in a photo this big are found just as well after resizing.
MAX_PIXELS = 40_000_000

Analyze = Callable[[np.ndarray], list[dict[str, Any]]]


class BadImage(ValueError):
    """The upload is not a usable image; carries the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_upload(raw: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes → BGR uint8 array, refusing empty, undecodable and oversized images.

    The size is read from the header first (Pillow, lazily) so a decompression bomb is refused
    before it is decoded.
    """
    import cv2

    if not raw:
        raise BadImage("the uploaded file is empty; choose a JPEG or PNG photo.")
    try:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # our own limit below, with our own message
        with Image.open(io.BytesIO(raw)) as header:
            width, height = header.size
        if width * height > max_pixels:
            raise BadImage(
                f"the image is {width}x{height} pixels, more than the {max_pixels // 10**6} "
                "megapixel limit; resize it and try again.", status=413)
    except BadImage:
        raise
    except Exception:  # Pillow cannot read the header: let OpenCV try the bytes
        pass
    try:
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise BadImage("the uploaded file is not an image OpenCV can read; send a JPEG or PNG.", status=415)
    if image.shape[0] * image.shape[1] > max_pixels:
        raise BadImage(f"the image is {image.shape[1]}x{image.shape[0]} pixels, over the limit.", status=413)
    return image


def model_info() -> dict[str, Any]:
    """What /healthz reports: the bundled model file and its card, without loading TensorFlow."""
    from fer import cards
    from fer.predict import ModelFileError, bundled_path

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


def _default_analyze(image: np.ndarray) -> list[dict[str, Any]]:
    import fer

    return fer.analyze(image)


def create_app(analyze: Analyze | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_PIXELS) -> Flask:
    """Build the app. ``analyze`` defaults to :func:`fer.analyze` (looked up per request, so a
    test can monkeypatch it). One analysis runs at a time: on a CPU, frames sharing the cores
    all finish later, and a webcam client only wants the answer for its latest frame."""
    app = Flask(__name__)  # templates/ and static/ beside this file, inside the package
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes
    app.json.sort_keys = False  # keep probabilities in class order
    lock = threading.Lock()

    @app.get("/")
    def index():
        return render_template("index.html", classes=CLASSES, max_mb=max_upload_bytes // 2**20)

    @app.get("/healthz")
    def healthz():
        info = model_info()
        return jsonify(status="ok" if info["available"] else "no-model", model=info), (
            200 if info["available"] else 503)

    @app.post("/api/predict")
    def predict():
        upload = request.files.get("image")
        if upload is None:
            return _error("no file in the multipart field 'image'; send the photo as image=@photo.jpg.", 400)
        try:
            image = decode_upload(upload.read(), max_pixels=max_pixels)
        except BadImage as err:
            return _error(str(err), err.status)
        with lock:
            start = time.perf_counter()
            faces = (analyze or _default_analyze)(image)
            ms = (time.perf_counter() - start) * 1000
        return jsonify(faces=jsonable_faces(faces), width=int(image.shape[1]), height=int(image.shape[0]),
                       ms=round(ms, 1))

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        if err.code == 413:
            return _error(f"the upload is larger than {max_upload_bytes // 2**20} MB; send a smaller photo.", 413)
        return _error(f"{err.name}: {err.description}", err.code or 500)

    @app.errorhandler(Exception)
    def unexpected(err: Exception):
        from fer.faces import DetectorUnavailable
        from fer.predict import ModelFileError

        if isinstance(err, ModelFileError | DetectorUnavailable):  # the message says the fix
            return _error(str(err), 503)
        app.logger.exception("prediction failed")
        if isinstance(err, ModelOutputError):
            return _error(str(err), 500)
        return _error(f"the server could not analyse this image ({type(err).__name__}); see the server log.", 500)

    return app


def _error(message: str, status: int):
    return jsonify(error=message), status


def serve(host: str = "127.0.0.1", port: int = 5000, warm: bool = True) -> None:
    """Run the app with Flask's threaded server (a local demo, not a production deployment).

    ``warm`` loads the bundled model and the face detector first, so a missing model or
    detector fails here with a clear message, and the first photo does not wait ~10 s for
    TensorFlow to load.
    """
    if warm:
        from fer import predict

        predict.default_classifier().predict_proba(np.zeros((1, 48, 48), np.uint8))
        _default_analyze(np.zeros((120, 160, 3), np.uint8))  # detector; no face, so no classifier
    create_app().run(host=host, port=port, threaded=True)
