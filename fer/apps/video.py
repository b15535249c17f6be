"""Video in: a file or a webcam as OpenCV frames, with one clear error when it cannot be read.

Shared by the video command (:mod:`fer.apps.annotate`), the web app's stream, the webcam
widget's kernel camera and the notebooks' replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np


class SourceError(RuntimeError):
    """The video file or camera cannot be read; the message says which and why."""


def open_source(source: str | int):
    """A ``cv2.VideoCapture`` for a file path or a webcam index, or :class:`SourceError`."""
    import cv2

    if isinstance(source, int) or str(source).isdigit():
        cap = _quietly(cv2.VideoCapture, int(source))  # no backend-by-backend warnings: one message below
        if not cap.isOpened():
            raise SourceError(f"no camera at index {source}: check it is connected and not used by another program.")
        return cap
    path = Path(source)
    if not path.exists():
        raise SourceError(f"{path}: no such file.")
    if path.is_dir():
        raise SourceError(f"{path} is a folder; pass a video file.")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"{path}: not a video OpenCV can read (try an .mp4 or .avi).")
    return cap


def _quietly(fn, *args):
    """``fn(*args)`` with OpenCV's own log below errors (each video backend warns as it fails)."""
    import cv2

    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        return fn(*args)
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        return fn(*args)
    finally:
        log.setLogLevel(level)


def frames(cap) -> Iterator[np.ndarray]:
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield frame
