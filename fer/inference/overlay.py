"""The overlay every front end draws: boxes, labels and probability bars, smoothed over frames.

Per-frame labels flicker (the classifier sees each frame afresh, and FER classes are close),
so faces are tracked across frames by box overlap and each track's probabilities are an
exponential moving average: a stable label per person that still follows a real change of
expression within about half a second. The video command, the web app's stream, the webcam
widget and the notebooks' figures all draw with :func:`draw`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fer.config import CLASSES

#: Weight of the newest frame in a track's average (0.3 at 30 fps: ~0.3 s half-life).
ALPHA = 0.3
#: A face continues a track when their boxes overlap by at least this IoU.
MATCH_IOU = 0.3
#: A track unseen for this many frames is dropped (a new face there starts afresh).
MAX_MISSED = 10


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


def draw_predictions(image_bgr: np.ndarray, results: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """An RGB copy of ``image_bgr`` (BGR, BGRA or gray) with each face drawn as the videos are
    (:func:`draw`: box and label in the class colour, probability bars beside it), for matplotlib.

    ``results`` is what ``fer.analyze`` returns: ``[{"box": [x, y, w, h], "label", "probs"}]``.
    """
    import cv2

    conversion = {2: cv2.COLOR_GRAY2BGR, 4: cv2.COLOR_BGRA2BGR}.get(image_bgr.shape[2] if image_bgr.ndim == 3 else 2)
    frame = cv2.cvtColor(image_bgr, conversion) if conversion is not None else image_bgr.copy()
    return cv2.cvtColor(draw(frame, list(results)), cv2.COLOR_BGR2RGB)
