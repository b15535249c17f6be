"""Annotate video: every face boxed and labelled, its probabilities as bars, frame by frame.

Per-frame labels flicker (the classifier sees each frame afresh, and FER classes are close),
so faces are tracked across frames by box overlap and each track's probabilities are an
exponential moving average: a stable label per person that still follows a real change of
expression within about half a second. ``smooth=False`` shows the raw per-frame output.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer.config import CLASSES

#: Weight of the newest frame in a track's average (0.3 at 30 fps: ~0.3 s half-life).
ALPHA = 0.3
#: A face continues a track when their boxes overlap by at least this IoU.
MATCH_IOU = 0.3
#: A track unseen for this many frames is dropped (a new face there starts afresh).
MAX_MISSED = 10


class SourceError(RuntimeError):
    """The video file or camera cannot be read; the message says which and why."""


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter + 1e-9)


@dataclass
class Track:
    id: int
    box: list[int]
    probs: np.ndarray
    missed: int = 0


@dataclass
class Smoother:
    """Greedy IoU tracking + an exponential moving average of each track's probabilities."""

    alpha: float = ALPHA
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0

    def update(self, faces: list[dict]) -> list[dict]:
        """Faces from :func:`fer.analyze` → the same faces with ``id`` and smoothed probs/label."""
        free = list(self.tracks)
        out = []
        for face in faces:
            p = np.array([face["probs"][c] for c in CLASSES], np.float64)
            best = max(free, key=lambda t: _iou(t.box, face["box"]), default=None)
            if best is not None and _iou(best.box, face["box"]) >= MATCH_IOU:
                free.remove(best)
                best.probs = self.alpha * p + (1 - self.alpha) * best.probs
                best.box, best.missed = face["box"], 0
                track = best
            else:
                track = Track(self.next_id, face["box"], p)
                self.next_id += 1
                self.tracks.append(track)
            out.append({**face, "id": track.id, "label": CLASSES[int(track.probs.argmax())],
                        "probs": {c: float(v) for c, v in zip(CLASSES, track.probs, strict=True)}})
        for t in free:
            t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= MAX_MISSED]
        return out


# --------------------------------------------------------------------------- drawing

_COLOURS = {  # BGR, one per class, readable on video
    "angry": (40, 40, 230), "disgust": (40, 140, 40), "fear": (160, 60, 160), "happy": (40, 200, 240),
    "neutral": (200, 200, 200), "sad": (200, 120, 40), "surprise": (240, 160, 240),
}


def draw(frame: np.ndarray, faces: list[dict]) -> np.ndarray:
    """Draw boxes, labels and a probability bar chart beside each face, in place."""
    import cv2

    h, w = frame.shape[:2]
    for face in faces:
        x, y, bw, bh = face["box"]
        colour = _COLOURS.get(face["label"], (255, 255, 255))
        thick = max(1, round(min(h, w) / 300))
        cv2.rectangle(frame, (x, y), (x + bw, y + bh), colour, thick)
        text = f"{face['label']} {face['probs'][face['label']]:.0%}"
        scale = max(0.4, min(h, w) / 800)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y - 4 if y - th - 4 > 0 else y + bh + th + 4
        cv2.rectangle(frame, (x, ty - th - 2), (x + tw + 2, ty + base), colour, -1)
        cv2.putText(frame, text, (x + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
        # bars: right of the box if there is room, else left of it
        bar_w, row = max(40, bw // 2), max(9, int(14 * scale))
        bx = x + bw + 4 if x + bw + 4 + bar_w + 60 * scale < w else max(0, x - bar_w - int(60 * scale) - 4)
        for i, c in enumerate(CLASSES):
            ry = y + i * row
            if ry + row > h:
                break
            cv2.putText(frame, c[:3], (bx, ry + row - 2), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, (255, 255, 255), 1, cv2.LINE_AA)
            x0 = bx + int(34 * scale)
            cv2.rectangle(frame, (x0, ry + 2), (x0 + bar_w, ry + row - 2), (60, 60, 60), -1)
            cv2.rectangle(frame, (x0, ry + 2), (x0 + int(bar_w * face["probs"][c]), ry + row - 2), _COLOURS[c], -1)
    return frame


# --------------------------------------------------------------------------- sources


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


@dataclass
class Summary:
    frames: int
    frames_with_faces: int
    faces: int
    labels: dict[str, int]


def annotate(source: str | int, out: str | os.PathLike | None, csv_path: str | os.PathLike | None = None,
             smooth: bool = True, show: bool = False, progress: bool = True, max_frames: int | None = None,
             classifier=None, detector: str = "auto") -> Summary:
    """Annotate every frame of ``source`` into ``out`` (mp4); per-face rows into ``csv_path``."""
    import cv2

    from fer.predict import analyze, default_classifier

    cap = open_source(source)
    is_file = not (isinstance(source, int) or str(source).isdigit())
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 1 <= fps <= 240 else 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if is_file else 0
    classifier = classifier or default_classifier()
    smoother = Smoother() if smooth else None
    writer = rows = fh = bar = None
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        fh = open(csv_path, "w", newline="")
        rows = csv.writer(fh)
        rows.writerow(["frame", "time_s", "face", "x", "y", "w", "h", "label", *CLASSES])
    if progress and is_file:
        from tqdm import tqdm

        bar = tqdm(total=min(total, max_frames or total) or None, unit="frame", desc=Path(str(source)).name)
    n = with_faces = n_faces = 0
    labels = dict.fromkeys(CLASSES, 0)
    try:
        for frame in frames(cap):
            if max_frames is not None and n >= max_frames:
                break
            faces = analyze(frame, classifier=classifier, detector=detector)
            if smoother is not None:
                faces = smoother.update(faces)
            else:
                faces = [{**f, "id": i} for i, f in enumerate(faces)]
            with_faces += bool(faces)
            n_faces += len(faces)
            for f in faces:
                labels[f["label"]] += 1
                if rows is not None:
                    rows.writerow([n, f"{n / fps:.3f}", f["id"], *f["box"], f["label"],
                                   *(f"{f['probs'][c]:.4f}" for c in CLASSES)])
            draw(frame, faces)
            if out is not None:
                if writer is None:
                    writer = _writer(out, fps, frame.shape[1], frame.shape[0])
                writer.write(frame)
            if show:
                show = _show(frame)
            n += 1
            if bar is not None:
                bar.update(1)
    finally:
        cap.release()
        for closable in (writer, fh, bar):
            if closable is not None:
                (closable.release if hasattr(closable, "release") else closable.close)()
    if n == 0:
        raise SourceError(f"{source}: no frames could be read (empty or unsupported video).")
    return Summary(n, with_faces, n_faces, labels)


def _writer(out, fps: float, width: int, height: int):
    import cv2

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SourceError(f"{out}: cannot write a video there (check the folder and the .mp4 suffix).")
    return writer


def _show(frame: np.ndarray) -> bool:
    """Live preview; False (and a warning) when there is no display or no GUI support."""
    import cv2

    try:
        cv2.imshow("fer annotate (q to stop preview)", frame)
        if cv2.waitKey(1) & 0xFF == ord("q"):
            cv2.destroyAllWindows()
            return False
        return True
    except cv2.error:
        import sys

        print("warning: no display or this OpenCV has no GUI (headless build); --show ignored",
              file=sys.stderr)
        return False
