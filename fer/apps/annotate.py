"""``python -m fer annotate``: every face of a video boxed and labelled, frame by frame, into
an annotated copy and a CSV of per-face rows.

Faces are tracked and their probabilities smoothed by :class:`fer.inference.overlay.Smoother`
(``smooth=False`` shows the raw per-frame output) and drawn by :func:`fer.inference.overlay.draw`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer.apps.video import SourceError, frames, open_source
from fer.config import CLASSES
from fer.inference.overlay import Smoother, draw


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

    from fer.inference.predict import analyze, default_classifier

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
