"""The webcam notebook without a camera: a video run through the live widget's own pipeline
(:func:`replay`, for reports and non-interactive runs), a generated clip of a real face
(scikit-image's astronaut) when no sample video is at hand, and a photo upload widget."""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets
import numpy as np

from fer.apps.webcam import Analyze, FrameAnalyzer, FrameError
from fer.config import CLASSES, SHARED_DIR

#: The sample video the demo replays when ``../shared`` is beside the checkout.
SAMPLE_VIDEO = SHARED_DIR / "media" / "woman2.mp4"


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

    from fer.apps.video import SourceError, frames, open_source
    from fer.inference.overlay import draw

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


def astronaut_frames(n: int, size: tuple[int, int] = (640, 360), fps: float = 15.0):
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


def astronaut_clip(path: str | Path | None = None, seconds: float = 4.0, fps: float = 15.0) -> Path:
    """Write :func:`astronaut_frames` as an mp4 (default: in the temp folder) and return its path."""
    import cv2

    path = Path(path) if path is not None else Path(tempfile.gettempdir()) / "fer-demo-clip.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(astronaut_frames(int(seconds * fps), fps=fps))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an mp4 there")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def sample_video() -> Path:
    """The sample video (``../shared/media/woman2.mp4``) when present, else a generated clip."""
    if SAMPLE_VIDEO.is_file():
        return SAMPLE_VIDEO
    print(f"{SAMPLE_VIDEO} not found; using a generated clip of scikit-image's astronaut", file=sys.stderr)
    return astronaut_clip()


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

    from fer.inference.overlay import draw_predictions

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
