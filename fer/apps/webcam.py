"""The live webcam in a notebook: a browser-camera widget and a kernel-side camera.

- :class:`Webcam` (anywidget; JupyterLab, Notebook 7, Colab): the *browser* opens the camera and
  plays it. With ``runtime="browser"`` the browser also runs the models (BlazeFace and the
  classifier, the package's own ``.tflite`` files under LiteRT.js: ``fer/static/browser.js``,
  :mod:`fer.apps.web`) on every new frame and reports the latest faces to the kernel a few times
  a second; with ``runtime="kernel"`` frames go to the kernel downscaled as JPEG, one at a time,
  and the kernel answers with the faces. Either way the browser draws them over the live video.
  ``"auto"`` (the default) is the browser where its runtime loads, the kernel otherwise. Its front
  end is ``fer/static/live.js`` (shared with the web app's page) plus ``fer/static/widget.js``.
- :class:`KernelCamera`: the *kernel* reads a camera (or a video file) with OpenCV in a thread,
  for kernels that run where the camera is (VS Code, a local Jupyter).

Both analyse frames with :class:`FrameAnalyzer`, as do :mod:`fer.apps.demo`'s replay of a video and
its photo upload, so they all give the same answers.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import numpy as np
import traitlets as t

from fer.config import PACKAGE_DIR

STATIC = PACKAGE_DIR / "static"

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
    (``fer.inference.overlay.Smoother``: a steady label per person that still follows a real change)
    unless ``smooth=False``. One analyzer serves one stream of frames."""

    def __init__(self, analyze: Analyze | None = None, smooth: bool = True):
        from fer.inference.overlay import Smoother

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
        from fer.inference.predict import jsonable_faces

        faces = jsonable_faces(self.analyze(image))
        return self.smoother.update(faces) if self.smoother is not None else faces


#: The widget's front end, in the order they are joined (each file's imports of the others dropped).
BUNDLE = ("faces.js", "browser.js", "live.js", "widget.js")
_LOCAL_IMPORT = re.compile(r'^import\s[^;]*?from\s+"\./[\w.-]+\.js";[ \t]*\n', re.M)


def _bundle() -> str:
    # One ES module: anywidget loads a single module, so the page's modules are joined into one
    # (the page loads them on its own). No CDN, no bundler; works offline.
    return "\n".join(_LOCAL_IMPORT.sub("", (STATIC / name).read_text()) for name in BUNDLE)


class Webcam(anywidget.AnyWidget):
    """The browser's camera, analysed by this kernel, drawn live over the video.

    ``display(Webcam())`` returns at once; the browser asks for the camera and starts. ``runtime``:
    ``"browser"`` runs the models in the browser (``classifier`` ``"lite"`` or ``"main"``) up to the
    camera's rate and reports the latest faces to the kernel at most ``report_fps`` times a second;
    ``"kernel"`` sends frames to this kernel, which answers each in its widget-message handler (no
    thread, no loop in a cell; whether it answers while another cell runs depends on the kernel,
    ipykernel 7 did in this project's tests; when it does not, the widget says the kernel is busy,
    and the video keeps playing); ``"auto"`` is the browser where its runtime loads, else the
    kernel. ``active_runtime`` says which runs, ``runtime_error`` why the browser's did not load.
    A custom ``analyze`` runs in the kernel.

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
    runtime = t.Enum(("auto", "browser", "kernel"), "auto", help="where the models run").tag(sync=True)
    classifier = t.Enum(("lite", "main"), "lite", help="the classifier the browser runs").tag(sync=True)
    smooth = t.Bool(True, help="smooth each face's label across frames").tag(sync=True)
    report_fps = t.Float(5.0, help="browser mode: at most this many reports of the faces a second").tag(sync=True)
    active_runtime = t.Unicode("", help="set by the browser: 'browser', 'kernel' or 'loading'").tag(sync=True)
    runtime_error = t.Unicode("", help="set by the browser: why its runtime did not load").tag(sync=True)

    faces = t.List(help="the latest answer: [{box, label, probs, id}] in the frame's pixels")
    frames_received = t.Int(0)
    frames_answered = t.Int(0)
    kernel_ms = t.Float(0.0, help="time the kernel took for the latest frame")
    browser_reports = t.Int(0, help="browser mode: reports of the faces received")

    def __init__(self, analyze: Analyze | None = None, on_result: Callable[[Faces], Any] | None = None,
                 smooth: bool = True, **kwargs: Any):
        if analyze is not None:
            if kwargs.get("runtime") == "browser":
                raise ValueError("a custom analyze runs in the kernel: pass runtime='kernel' (or leave runtime='auto')")
            kwargs["runtime"] = "kernel"
        super().__init__(smooth=smooth, **kwargs)
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

    @t.validate("report_fps")
    def _check_report_fps(self, proposal):
        if not 0 < proposal["value"] <= 5:
            raise t.TraitError(f"report_fps must be in (0, 5] reports a second, not {proposal['value']}")
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
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "frame":
            self.send(self.answer(content, buffers or []))
        elif kind == "file":
            self.send(*self.file_reply(content))
        elif kind == "faces":
            self.browser_result(content)

    def asset_bytes(self, name: str) -> bytes:
        """The bytes of a runtime or model file the browser asked for (:func:`fer.apps.web.asset_path`)."""
        from fer.apps.web import asset_path

        return asset_path(name).read_bytes()

    def file_reply(self, content: dict) -> tuple[dict, list[bytes]]:
        """A ``{type: "file", name, mode}`` request → the reply and its buffers: the file as one
        binary buffer, or as base64 text (``mode="base64"``), or ``error`` saying why not."""
        from fer.apps.web import WebAssetError

        reply = {"type": "file", "id": content.get("id"), "name": content.get("name"), "mode": content.get("mode")}
        try:
            data = self.asset_bytes(str(content.get("name")))
        except (WebAssetError, OSError) as err:
            return {**reply, "error": str(err)}, []
        if content.get("mode") == "base64":
            return {**reply, "data": base64.b64encode(data).decode("ascii")}, []
        return {**reply, "mode": "buffers", "size": len(data)}, [data]

    def browser_result(self, content: dict) -> None:
        """A browser-mode report ``{type: "faces", faces}`` → ``faces`` and ``on_result``."""
        from fer.inference.predict import jsonable_faces

        try:
            faces = jsonable_faces(content.get("faces") or [])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            log.warning("a malformed report from the browser was ignored: %s", err)
            return
        self.faces = faces
        self.browser_reports += 1
        self._deliver(faces)

    def _deliver(self, faces: Faces) -> None:
        """Hand the latest faces to ``on_result``; a failing callback is logged, never raised."""
        if self._on_result is not None:
            try:
                self._on_result(faces)
            except Exception:  # a user's callback must not stop the stream
                log.exception("on_result callback failed")

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
        self._deliver(faces)
        return {"type": "result", "id": fid, "faces": faces, "kernel_ms": round(self.kernel_ms, 2),
                "received": self.frames_received, "answered": self.frames_answered}


class KernelCamera(ipywidgets.VBox):
    """A camera (index) or video file read by the kernel with OpenCV in a background thread; each
    frame analysed, drawn (``fer.inference.overlay.draw``) and shown in an image widget.

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
        from fer.apps.video import open_source

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

        from fer.apps.video import open_source
        from fer.inference.overlay import draw

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
