"""The live webcam in a notebook: a browser-camera widget, a kernel-side camera, and a replay of a
video through the same pipeline for reports.

- :class:`Webcam` (anywidget; JupyterLab, Notebook 7, Colab): the *browser* opens the camera and
  plays it; frames go to the kernel downscaled as JPEG, one at a time; the kernel answers with
  the faces, and the browser draws them over the live video. Its front end is
  ``fer/static/live.js`` (shared with the web app's page) plus ``fer/static/widget.js``.
- :class:`KernelCamera`: the *kernel* reads a camera (or a video file) with OpenCV in a thread,
  for kernels that run where the camera is (VS Code, a local Jupyter).
- :func:`replay`: a video through the widget's pipeline (downscale, JPEG, analyse, smooth), as a
  table and a few annotated frames: what the live view does, for a non-interactive run.

Every path analyses frames with :class:`FrameAnalyzer`, so they give the same answers.
"""

from __future__ import annotations

import base64
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import numpy as np
import traitlets as t

from fer.config import CLASSES, PACKAGE_DIR, SHARED_DIR

STATIC = PACKAGE_DIR / "static"
#: The sample video the demo replays when ``../shared`` is beside the checkout.
SAMPLE_VIDEO = SHARED_DIR / "media" / "woman2.mp4"

log = logging.getLogger(__name__)
Analyze = Callable[[np.ndarray], list[dict[str, Any]]]
Faces = list[dict[str, Any]]

class FrameError(ValueError):
    """A frame that cannot be analysed (not a decodable image)."""


def _default_analyze(image: np.ndarray) -> Faces:
    import fer

    return fer.analyze(image)


class FrameAnalyzer:
    """Encoded or decoded frame → JSON-ready faces: ``fer.analyze`` (or ``analyze``; the detector
    and the model runtimes are thread-safe), with per-face smoothing across frames
    (``fer.annotate.Smoother``: a steady label per person that still follows a real change)
    unless ``smooth=False``. One analyzer serves one stream of frames."""

    def __init__(self, analyze: Analyze | None = None, smooth: bool = True):
        from fer.annotate import Smoother

        self.analyze = analyze or _default_analyze
        self.smoother = Smoother() if smooth else None

    @staticmethod
    def decode(raw: bytes) -> np.ndarray:
        import cv2

        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None
        if image is None:
            raise FrameError(f"the frame ({len(raw)} bytes) is not a JPEG or PNG OpenCV can decode")
        return image

    def __call__(self, image: np.ndarray) -> Faces:
        from fer.predict import jsonable_faces

        faces = jsonable_faces(self.analyze(image))
        return self.smoother.update(faces) if self.smoother is not None else faces


def _bundle() -> str:
    # One ES module: anywidget loads a single module, so widget.js is appended to live.js
    # (the page loads live.js on its own). No CDN, no bundler; works offline.
    return (STATIC / "live.js").read_text() + "\n" + (STATIC / "widget.js").read_text()


class Webcam(anywidget.AnyWidget):
    """The browser's camera, analysed by this kernel, drawn live over the video.

    ``display(Webcam())`` returns at once; the browser asks for the camera and starts. The kernel
    answers each frame in its widget-message handler (no thread, no loop in a cell). Whether it
    answers while another cell runs depends on the kernel (ipykernel 7 did in this project's
    tests); when it does not, the widget says the kernel is busy, and the video keeps playing.

    Read ``faces`` (the latest answer), ``frames_received`` / ``frames_answered``, ``stats``
    (the browser's predictions/s and round trip, updated once a second) and ``error`` (the
    message the widget shows, "" when none). ``on_result(faces)`` is called after each answer;
    ``observe(fn, "faces")`` works too. ``stop()`` releases the camera; ``start()`` reopens it.
    """

    _esm = _bundle()
    _css = (STATIC / "live.css").read_text()

    running = t.Bool(True, help="camera on (set by the browser too: Start/Stop, permission denied)").tag(sync=True)
    mirror = t.Bool(True, help="show the video mirrored, as a selfie camera").tag(sync=True)
    max_fps = t.Float(10.0, help="at most this many frames a second go to the kernel").tag(sync=True)
    max_side = t.Int(640, help="frames are downscaled to this longest side before sending").tag(sync=True)
    jpeg_quality = t.Float(0.8, help="JPEG quality of the frames sent, 0-1").tag(sync=True)
    transport = t.Enum(("auto", "buffers", "base64"), "auto",
                       help="binary buffers, falling back to base64 text when they do not arrive").tag(sync=True)
    device_id = t.Unicode("", help="the browser's camera (deviceId); '' for the default").tag(sync=True)
    stats = t.Dict(help="the browser's figures: fps, rtt_p50_ms, rtt_p95_ms, kernel_ms, transport").tag(sync=True)
    error = t.Unicode("", help="the message the widget shows, '' when none").tag(sync=True)

    faces = t.List(help="the latest answer: [{box, label, probs, id}] in the frame's pixels")
    frames_received = t.Int(0)
    frames_answered = t.Int(0)
    kernel_ms = t.Float(0.0, help="time the kernel took for the latest frame")

    def __init__(self, analyze: Analyze | None = None, on_result: Callable[[Faces], Any] | None = None,
                 smooth: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self._analyzer = FrameAnalyzer(analyze, smooth=smooth)
        self._on_result = on_result
        self.on_msg(self._handle)

    @t.validate("max_fps")
    def _check_fps(self, proposal):
        if not 0 < proposal["value"] <= 60:
            raise t.TraitError(f"max_fps must be in (0, 60] frames a second, not {proposal['value']}")
        return proposal["value"]

    @t.validate("max_side")
    def _check_side(self, proposal):
        if not 64 <= proposal["value"] <= 4096:
            raise t.TraitError(f"max_side must be 64-4096 pixels, not {proposal['value']}")
        return proposal["value"]

    @t.validate("jpeg_quality")
    def _check_quality(self, proposal):
        if not 0.1 <= proposal["value"] <= 1:
            raise t.TraitError(f"jpeg_quality must be 0.1-1, not {proposal['value']}")
        return proposal["value"]

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        """Stop sending frames and release the camera in the browser."""
        self.running = False

    @staticmethod
    def frame_bytes(content: dict, buffers: list) -> bytes | None:
        """The JPEG of a frame message; None when it was sent as a buffer that did not arrive."""
        if content.get("mode") == "base64":
            return base64.b64decode(content.get("data") or "")
        return bytes(buffers[0]) if buffers else None

    def _handle(self, _widget, content: dict, buffers: list) -> None:
        if not isinstance(content, dict) or content.get("type") != "frame":
            return
        self.send(self.answer(content, buffers or []))

    def answer(self, content: dict, buffers: list) -> dict:
        """One frame message → the reply message (``result``, ``error`` or ``no-buffers``)."""
        fid = content.get("id")
        raw = self.frame_bytes(content, buffers)
        if raw is None:
            return {"type": "no-buffers", "id": fid}
        self.frames_received += 1
        start = time.perf_counter()
        try:
            faces = self._analyzer(FrameAnalyzer.decode(raw))
        except Exception as err:  # shown in the widget; the next frame is tried
            log.warning("frame %s failed: %s", fid, err, exc_info=not isinstance(err, FrameError))
            return {"type": "error", "id": fid, "message": f"{type(err).__name__}: {err}"}
        self.kernel_ms = (time.perf_counter() - start) * 1000
        self.faces = faces
        self.frames_answered += 1
        if self._on_result is not None:
            try:
                self._on_result(faces)
            except Exception:  # a user's callback must not stop the stream
                log.exception("on_result callback failed")
        return {"type": "result", "id": fid, "faces": faces, "kernel_ms": round(self.kernel_ms, 2),
                "received": self.frames_received, "answered": self.frames_answered}


class KernelCamera(ipywidgets.VBox):
    """A camera (index) or video file read by the kernel with OpenCV in a background thread; each
    frame analysed, drawn (``fer.annotate.draw``) and shown in an image widget.

    For kernels that run where the camera is (VS Code, a local Jupyter); a file works anywhere,
    which is how the demo runs without a camera. ``stop()`` (or the Stop button) ends the thread
    and releases the camera. ``faces``, ``frames_read`` and ``on_result`` as in :class:`Webcam`.
    """

    faces = t.List()
    frames_read = t.Int(0)
    frames_answered = t.Int(0)
    running = t.Bool(False)

    def __init__(self, source: int | str | Path = 0, analyze: Analyze | None = None,
                 on_result: Callable[[Faces], Any] | None = None, max_fps: float = 15.0, loop: bool = False,
                 smooth: bool = True, width: int = 640, autostart: bool = True):
        from fer.annotate import open_source

        self.source = str(source) if isinstance(source, Path) else source
        open_source(self.source).release()  # a missing camera or file fails here, with its reason
        if not 0 < max_fps <= 60:
            raise ValueError(f"max_fps must be in (0, 60], not {max_fps}")
        self.max_fps, self.loop = max_fps, loop
        self._analyzer = FrameAnalyzer(analyze, smooth=smooth)
        self._on_result = on_result
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.image = ipywidgets.Image(format="jpeg", width=width)
        self.button = ipywidgets.Button(description="Start", icon="play")
        self.status = ipywidgets.HTML("stopped")
        self.button.on_click(lambda _b: self.stop() if self.running else self.start())
        super().__init__([ipywidgets.HBox([self.button, self.status]), self.image])
        if autostart:
            self.start()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.running = True
        self.button.description, self.button.icon = "Stop", "stop"
        self._thread = threading.Thread(target=self._run, name="fer-kernel-camera", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread and release the camera (waits up to ``timeout`` seconds)."""
        if not hasattr(self, "_stop"):  # __init__ refused the source before any thread existed
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def close(self) -> None:
        self.stop()
        super().close()

    def _run(self) -> None:
        import cv2

        from fer.annotate import draw, open_source

        cap = open_source(self.source)
        is_file = not (isinstance(self.source, int) or str(self.source).isdigit())
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        started, consumed = time.perf_counter(), 0  # consumed: frames read or skipped
        try:
            while not self._stop.is_set():
                tick = time.perf_counter()
                ok, frame = cap.read()
                if not ok:
                    if is_file and self.loop and consumed:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        started, consumed = time.perf_counter(), 0
                        continue
                    self.status.value = "end of video" if is_file else "the camera stopped sending frames"
                    break
                self.frames_read += 1
                consumed += 1
                faces = self._analyzer(frame)
                self.faces = faces
                self.frames_answered += 1
                if self._on_result is not None:
                    self._on_result(faces)
                self.image.value = cv2.imencode(".jpg", draw(frame, faces), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
                ms = (time.perf_counter() - tick) * 1000
                self.status.value = f"{len(faces)} face(s) · {ms:.0f} ms a frame"
                while is_file and consumed < int((time.perf_counter() - started) * fps) and cap.grab():
                    consumed += 1  # keep to the video's clock: skip the frames that played meanwhile
                time.sleep(max(0.0, 1 / self.max_fps - (time.perf_counter() - tick)))
        except Exception as err:  # shown where the frames were; the thread ends cleanly
            self.status.value = f"stopped: {type(err).__name__}: {err}"
            log.exception("kernel camera failed")
        finally:
            cap.release()
            self.running = False
            self.button.description, self.button.icon = "Start", "play"
            if self.status.value.endswith("a frame"):
                self.status.value = "stopped"


# --------------------------------------------------------------------------- replay, for reports


@dataclass
class Replay:
    """What :func:`replay` saw: one row per analysed frame, and a few annotated frames."""

    table: Any  # pandas.DataFrame: frame, time_s, faces, label, <class probabilities of the largest face>
    frames: list[tuple[float, np.ndarray]]  # (time_s, RGB image) of the kept frames
    fps: float  # frames analysed per second of video
    kernel_ms: list[float]  # time per analysed frame


def encode_like_browser(frame: np.ndarray, max_side: int = 640, quality: int = 80) -> bytes:
    """A frame as the widget sends it: longest side at most ``max_side``, JPEG."""
    import cv2

    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1:
        frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def replay(source: str | Path, rate: float = 10.0, max_side: int = 640, quality: int = 80,
           keep: int = 6, max_frames: int | None = None, analyze: Analyze | None = None,
           smooth: bool = True) -> Replay:
    """Run a video through the widget's pipeline at the widget's default rate (``rate`` frames a
    second of video): downscale, JPEG, decode, analyse, smooth. Keeps ``keep`` annotated frames,
    evenly spaced."""
    import cv2
    import pandas as pd

    from fer.annotate import SourceError, draw, frames, open_source

    cap = open_source(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    step = max(1, round(fps / rate))
    analyzer = FrameAnalyzer(analyze, smooth=smooth)
    planned = (total + step - 1) // step if total else 0
    if max_frames is not None:  # the kept frames spread over what is analysed, not the whole video
        planned = min(planned, max_frames)
    keep_at = set(np.linspace(0, max(planned - 1, 0), keep).round().astype(int)) if keep and planned else set()
    rows, kept, ms = [], [], []
    try:
        for i, frame in enumerate(frames(cap)):
            if i % step:
                continue
            n = i // step
            if max_frames is not None and n >= max_frames:
                break
            start = time.perf_counter()
            image = FrameAnalyzer.decode(encode_like_browser(frame, max_side, quality))
            faces = analyzer(image)
            ms.append((time.perf_counter() - start) * 1000)
            top = faces[0] if faces else None
            rows.append({"frame": i, "time_s": i / fps, "faces": len(faces), "label": top["label"] if top else None,
                         **{c: (top["probs"][c] if top else np.nan) for c in CLASSES}})
            if n in keep_at:
                kept.append((i / fps, cv2.cvtColor(draw(image, faces), cv2.COLOR_BGR2RGB)))
    finally:
        cap.release()
    if not rows:
        raise SourceError(f"{source}: no frames could be read (empty or unsupported video).")
    return Replay(pd.DataFrame(rows), kept, fps / step, ms)


# --------------------------------------------------------------------------- a clip without a camera


def demo_frames(n: int, size: tuple[int, int] = (640, 360), fps: float = 15.0):
    """``n`` BGR frames of scikit-image's astronaut photo (a real face) drifting and zooming
    slowly over a grey background: a stand-in camera when no sample video is at hand."""
    import cv2
    from skimage import data as skdata

    photo = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)[20:300, 100:380]  # head and shoulders
    w, h = size
    for k in range(n):
        phase = 2 * np.pi * k / max(1.0, 4 * fps)  # one slow cycle every 4 s
        side = int(h * (0.62 + 0.08 * np.sin(phase)))
        face = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        frame = np.full((h, w, 3), 118, np.uint8)
        x = int((w - side) / 2 + 0.18 * w * np.sin(phase / 2))
        y = (h - side) // 2
        frame[y:y + side, x:x + side] = face
        yield frame


def demo_clip(path: str | Path | None = None, seconds: float = 4.0, fps: float = 15.0) -> Path:
    """Write :func:`demo_frames` as an mp4 (default: in the temp folder) and return its path."""
    import cv2

    path = Path(path) if path is not None else Path(tempfile.gettempdir()) / "fer-demo-clip.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(demo_frames(int(seconds * fps), fps=fps))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an mp4 there")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def demo_video() -> Path:
    """The sample video (``../shared/media/woman2.mp4``) when present, else a generated clip."""
    if SAMPLE_VIDEO.is_file():
        return SAMPLE_VIDEO
    print(f"{SAMPLE_VIDEO} not found; using a generated clip of scikit-image's astronaut", file=sys.stderr)
    return demo_clip()


# --------------------------------------------------------------------------- a photo from the browser


def uploaded_files(upload: ipywidgets.FileUpload) -> list[tuple[str, bytes]]:
    """(name, bytes) of each file in a ``FileUpload``: ipywidgets 8 holds a tuple of dicts, 7 a
    dict of dicts keyed by name."""
    value = upload.value
    items = value.values() if isinstance(value, dict) else value
    return [(f.get("name") or f.get("metadata", {}).get("name", "upload"), bytes(f["content"])) for f in items]


def photo_upload(analyze: Analyze | None = None, width: int = 640) -> ipywidgets.VBox:
    """An upload button; each photo comes back with its faces boxed and labelled, or a message."""
    import cv2

    from fer.plots import draw_predictions

    upload = ipywidgets.FileUpload(accept="image/*", multiple=False)
    shown = ipywidgets.Image(format="jpeg", width=width, layout={"display": "none"})
    note = ipywidgets.HTML("Choose a JPEG or PNG photo.")
    analyzer = FrameAnalyzer(analyze, smooth=False)

    def on_upload(_change) -> None:
        for name, content in uploaded_files(upload):
            try:
                image = FrameAnalyzer.decode(content)
            except FrameError:
                note.value = f"{name}: not an image OpenCV can read; try a JPEG or PNG."
                continue
            faces = analyzer(image)
            rgb = draw_predictions(image, faces)
            shown.value = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
            shown.layout.display = ""
            labels = ", ".join(f["label"] for f in faces)
            note.value = f"{name}: {len(faces)} face(s)" + (f": {labels}" if faces else "; try a well-lit, frontal face.")

    upload.observe(on_upload, names="value")
    return ipywidgets.VBox([ipywidgets.HBox([upload, note]), shown])
