"""One photo through the API: upload bytes → image (with limits) → the JSON answer.

:func:`answer` is what ``POST /api/predict`` computes, in the request's thread or in a worker
process (:mod:`fer.apps.workers`); :class:`BadImage` carries the HTTP status a bad upload gets;
:func:`warm_up` loads what it needs before the first request.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fer.inference.predict import jsonable_faces

#: Decoded images larger than this (width x height) are refused (413): a small PNG can
#: decode to gigabytes, and faces in a photo this big are found just as well after resizing.
MAX_PIXELS = 40_000_000

class BadImage(ValueError):
    """The upload is not a usable image; carries the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status

    def __reduce__(self):  # back from a worker process with its status
        return type(self), (str(self), self.status)


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


def answer(raw: bytes, max_pixels: int = MAX_PIXELS,
           analyze: Callable[[np.ndarray], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """``{"faces", "width", "height", "ms"}`` for an uploaded image; :class:`BadImage` if unusable.
    ``analyze`` defaults to :func:`fer.analyze`, looked up on each call (tests replace it)."""
    image = decode_upload(raw, max_pixels=max_pixels)
    if analyze is None:
        import fer

        analyze = fer.analyze
    start = time.perf_counter()
    faces = analyze(image)
    ms = (time.perf_counter() - start) * 1000
    return {"faces": jsonable_faces(faces), "width": int(image.shape[1]), "height": int(image.shape[0]),
            "ms": round(ms, 1)}


def warm_up() -> None:
    """Load the bundled model and the face detector now, so a missing one fails at start-up
    with its message, and the first photo does not wait for them."""
    import fer
    from fer.inference import predict

    predict.default_classifier().predict_proba(np.zeros((1, 48, 48), np.uint8))
    fer.analyze(np.zeros((120, 160, 3), np.uint8))  # detector; no face, so no classifier
