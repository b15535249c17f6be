"""The web app's server-side video: one reader thread per source, annotated frames as MJPEG.

``python -m fer serve --source 0`` (a camera index) or ``--source clip.mp4`` (a file, looped)
makes one :class:`VideoStream`. Its reader thread reads the source, finds and classifies every
face (labels smoothed per face as ``python -m fer annotate`` does), draws them and encodes the
frame as JPEG once; every viewer of ``GET /video_feed`` gets that same JPEG, so a second
browser costs no second analysis and never steals the first one's frames. The thread reads only
while someone watches. A camera that cannot be opened, or stops, becomes ``state == "error"``
with a message (shown on the page and in ``/healthz``); a viewer waits at most
``open_timeout`` seconds for a first frame, never forever. :meth:`VideoStream.stop` releases the
camera; the server calls it when it stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fer.apps.video import SourceError, open_source
from fer.inference.overlay import Smoother, draw

log = logging.getLogger(__name__)

BOUNDARY = "frame"
MIMETYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
#: JPEG quality of the streamed frames (80: ~35 KB at 640x360, no visible blocks).
JPEG_QUALITY = 80


def is_camera(source: str | int) -> bool:
    return isinstance(source, int) or str(source).isdigit()


def describe(source: str | int) -> str:
    """How the page and /healthz name a source: ``camera 0`` or the file's name (not its path)."""
    return f"camera {int(source)}" if is_camera(source) else Path(str(source)).name


class VideoStream:
    """A camera or a looped video file, analysed by one thread and shared by every viewer."""

    def __init__(self, source: str | int, analyze: Callable[[np.ndarray], list[dict[str, Any]]] | None = None,
                 open_timeout: float = 10.0, max_viewers: int = 8, quality: int = JPEG_QUALITY):
        if not is_camera(source):
            path = Path(str(source))
            if not path.is_file():  # a typo fails at start-up, not in the first viewer's browser
                raise SourceError(f"{path}: no such video file." if not path.exists() else f"{path} is not a file.")
        self.source, self.name = source, describe(source)
        self._analyze = analyze
        self.open_timeout, self.max_viewers, self.quality = open_timeout, max_viewers, quality
        self.state, self.error = "starting", None  # starting -> idle/live, or error; stopped at the end
        self.frames_done, self.viewers, self.fps = 0, 0, 0.0
        self._started = time.monotonic()
        self._jpeg: bytes | None = None
        self._cond = threading.Condition()
        self._watched = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fer-stream ({self.name})", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> VideoStream:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading, release the camera or file, and end every viewer's stream."""
        self._stopping.set()
        self._watched.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """What /healthz and the page show: ``{"source", "state", "error", "viewers", "fps"}``."""
        with self._cond:
            self._check_open_timeout()
            return {"source": self.name, "state": self.state, "error": self.error, "viewers": self.viewers,
                    "frames": self.frames_done, "fps": round(self.fps, 1)}

    def _fail(self, message: str) -> None:
        with self._cond:
            if self.state != "stopped":
                self.state, self.error = "error", message
            self._cond.notify_all()
        log.error("video stream %s: %s", self.name, message)

    def _check_open_timeout(self) -> None:  # called with the lock held
        if self.state == "starting" and time.monotonic() - self._started > self.open_timeout:
            self.state = "error"
            self.error = (f"{self.name} did not open within {self.open_timeout:g} s: check it is connected "
                          "and not used by another program, then restart the server.")

    # ------------------------------------------------------------------ the reader thread

    def _run(self) -> None:
        import cv2

        try:
            self._cap = cap = open_source(self.source)
        except SourceError as err:
            return self._fail(str(err))
        except Exception as err:  # a backend that raises instead of reporting
            return self._fail(f"{self.name} could not be opened ({err}).")
        try:
            if is_camera(self.source):
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one from seconds ago
            fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            period = 1.0 / fps if 1 <= fps <= 240 and not is_camera(self.source) else 0.0
            with self._cond:
                if self.state != "starting":  # given up on (open_timeout) or stopped meanwhile
                    return
                self.state = "idle"
                self._cond.notify_all()
            self._loop(cap, period)
        except Exception as err:
            log.exception("video stream %s failed", self.name)
            self._fail(f"analysing {self.name} failed ({type(err).__name__}: {err}); see the server log.")
        finally:
            self._cap.release()
            with self._cond:
                if self.state != "error":
                    self.state = "stopped"
                self._cond.notify_all()

    def _loop(self, cap, period: float) -> None:
        import cv2

        smoother, misses, due, recent = Smoother(), 0, time.monotonic(), []
        while not self._stopping.is_set():
            if not self._watched.wait(0.5):
                with self._cond:
                    if self.state == "live":
                        self.state, self.fps = "idle", 0.0
                smoother, due = Smoother(), time.monotonic()  # a new audience starts afresh
                continue
            ok, frame = cap.read()
            if not ok or frame is None:
                misses += 1
                if is_camera(self.source):
                    return self._fail(f"{self.name} stopped delivering frames (unplugged, or taken by another program).")
                if misses > 1:
                    return self._fail(f"{self.name}: no frames could be read (empty or unsupported video).")
                cap.release()  # the end of the file: start it again
                self._cap = cap = open_source(self.source)
                smoother = Smoother()
                continue
            misses = 0
            faces = smoother.update(self._analyze_frame(frame))
            ok, jpeg = cv2.imencode(".jpg", draw(frame, faces), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            now = time.monotonic()
            recent = [t for t in recent if now - t < 2.0] + [now]
            with self._cond:
                self._jpeg, self.frames_done = jpeg.tobytes(), self.frames_done + 1
                self.fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
                self.state = "live"
                self._cond.notify_all()
            if period:  # a file plays at its own rate (never faster to catch up), not as fast as it is analysed
                due = max(due + period, now)
                self._stopping.wait(max(0.0, due - time.monotonic()))

    def _analyze_frame(self, frame: np.ndarray) -> list[dict[str, Any]]:
        if self._analyze is not None:
            return self._analyze(frame)
        import fer

        return fer.analyze(frame)

    # ------------------------------------------------------------------ viewers

    def viewer(self) -> Viewer | None:
        """A new viewer's JPEG frames (each new frame once, the latest only), or None when
        ``max_viewers`` already watch. It ends when the stream stops or fails; its ``close()``
        (the server calls it when the browser goes away) frees the viewer's place."""
        with self._cond:
            if self.viewers >= self.max_viewers:
                return None
            self.viewers += 1
            self._watched.set()
        return Viewer(self)

    def _next_frame(self, last: bytes | None) -> bytes | None:
        """The first frame newer than ``last``; None once the stream has stopped or failed."""
        with self._cond:
            while True:
                self._cond.wait_for(lambda: self._jpeg is not last or self.state in ("error", "stopped")
                                    or self._stopping.is_set(), timeout=1.0)
                self._check_open_timeout()
                if self.state in ("error", "stopped") or self._stopping.is_set():
                    return None
                if self._jpeg is not last:
                    return self._jpeg

    def _leave(self) -> None:
        with self._cond:
            self.viewers -= 1
            if self.viewers == 0:
                self._watched.clear()

    @staticmethod
    def mjpeg(frames: Viewer) -> MJPEG:
        """JPEG frames → the parts of a ``multipart/x-mixed-replace`` response."""
        return MJPEG(frames)


class Viewer:
    """One viewer's frames: an iterator whose ``close()`` frees its place, started or not."""

    def __init__(self, stream: VideoStream):
        self._stream, self._last, self._open = stream, None, True

    def __iter__(self) -> Viewer:
        return self

    def __next__(self) -> bytes:
        frame = self._stream._next_frame(self._last) if self._open else None
        if frame is None:
            self.close()
            raise StopIteration
        self._last = frame
        return frame

    def close(self) -> None:
        if self._open:
            self._open = False
            self._stream._leave()


class MJPEG:
    """JPEG frames as ``multipart/x-mixed-replace`` parts; ``close()`` closes the frames too
    (a WSGI server calls it when the client goes, even before the first part)."""

    def __init__(self, frames):
        self._frames = frames

    def __iter__(self) -> MJPEG:
        return self

    def __next__(self) -> bytes:
        jpeg = next(self._frames)
        return (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                + jpeg + b"\r\n")

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()
