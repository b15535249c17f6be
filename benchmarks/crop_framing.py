"""Which crop framing makes the bundled classifier see faces as FER2013 framed them.

    .venv/bin/python benchmarks/crop_framing.py [--model PATH] [--frames N]

FER2013 crops are tight and centred: roughly eyebrows to chin, little background. For each
margin (crop side = detector box x (1 + margin)) and vertical shift (centre moved by
shift x side), with and without levelling the eyes, this prints on the six labelled
``shared/media`` photos how many get their expected label and the mean probability of that
label, and on ``woman2.mp4`` how often the label changes between consecutive frames (a
framing that fits gives steadier labels). The chosen default is ``fer.faces.MARGIN``/``SHIFT``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import cv2

    from fer import CLASSES, faces, load_classifier
    from fer.config import SHARED_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file (default: the bundled one)")
    parser.add_argument("--frames", type=int, default=150, help="video frames to use (every 3rd)")
    args = parser.parse_args()
    media = SHARED_DIR / "media"
    clf = load_classifier(args.model)
    photos = []
    for p in sorted(media.glob("*.jpg")):
        image = cv2.imread(str(p))
        expected = p.stem.split("_")[-1]
        photos.append((faces.to_gray(image), faces.detect(image)[0], CLASSES.index(expected)))
    cap, video = cv2.VideoCapture(str(media / "woman2.mp4")), []
    i = 0
    while len(video) < args.frames:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 3 == 0:
            found = faces.detect(frame)
            if found:
                video.append((faces.to_gray(frame), found[0]))
        i += 1
    print(f"model {clf.path.name}; {len(photos)} photos, {len(video)} video frames")
    print(f"{'margin':>6s} {'shift':>6s} {'rotate':>6s} {'photos ok':>9s} {'p(expected)':>11s} {'video flips':>11s}  labels")
    for margin, shift, rotate in itertools.product((-0.1, 0.0, 0.1, 0.2, 0.3, 0.4), (-0.1, 0.0, 0.1), (True, False)):
        crops = np.stack([faces.crop(g, f, margin=margin, shift=shift, rotate=rotate) for g, f, _ in photos])
        probs = clf.predict_proba(crops)
        expected = np.array([e for *_, e in photos])
        ok = int((probs.argmax(1) == expected).sum())
        p_exp = float(probs[np.arange(len(photos)), expected].mean())
        vcrops = np.stack([faces.crop(g, f, margin=margin, shift=shift, rotate=rotate) for g, f in video])
        vlabels = clf.predict_proba(vcrops).argmax(1)
        flips = float((vlabels[1:] != vlabels[:-1]).mean())
        labels = " ".join(CLASSES[k][:3] for k in probs.argmax(1))
        print(f"{margin:>6.1f} {shift:>6.1f} {rotate!s:>6s} {ok:>5d}/{len(photos)} {p_exp:>11.3f} {flips:>11.3f}  {labels}")


if __name__ == "__main__":
    main()
