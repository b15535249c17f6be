"""Face detector candidates: recall on ``shared/media`` and ms per frame.

    .venv/bin/python benchmarks/detectors.py [--frames N]

Counts, for each candidate, the photos in ``shared/media/*.jpg`` where at least one face is
found (each holds exactly one) and the ``woman2.mp4`` frames with a face, and times
detection per frame (p50 over the video frames). The BlazeFace variants run here through
``fer.inference.faces``; OpenCV's Haar cascade runs in the side venv ``.bench-venv`` (OpenCV 4.x, made
by ``fer.evaluation.speed.side_venv``), since OpenCV 5 no longer has it. The results are the table in
``fer/inference/faces.py``'s docstring.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HAAR_SCRIPT = r"""
import json, sys, time, glob, os
import cv2, numpy as np
media, limit = sys.argv[1], int(sys.argv[2])
cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
def detect(img):
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cascade.detectMultiScale(gray, 1.1, 5, minSize=(24, 24))
photos = {os.path.basename(p): len(detect(cv2.imread(p))) for p in sorted(glob.glob(media + "/*.jpg"))}
cap, hits, times = cv2.VideoCapture(media + "/woman2.mp4"), [], []
while len(hits) < limit:
    ok, frame = cap.read()
    if not ok:
        break
    t = time.perf_counter(); n = len(detect(frame)); times.append(time.perf_counter() - t)
    hits.append(n)
print(json.dumps({"opencv": cv2.__version__, "photos": photos, "video": hits, "ms": 1e3 * float(np.median(times))}))
"""


def run_blazeface(model: str, media: Path, frames: list[np.ndarray]) -> dict:
    import cv2

    from fer.inference import faces

    det = faces.BlazeFace(model)
    photos = {p.name: len(det.detect(cv2.imread(str(p)))) for p in sorted(media.glob("*.jpg"))}
    det.detect(frames[0])
    hits, times = [], []
    for frame in frames:
        t = time.perf_counter()
        hits.append(len(det.detect(frame)))
        times.append(time.perf_counter() - t)
    return {"photos": photos, "video": hits, "ms": 1e3 * float(np.median(times))}


def run_haar(media: Path, limit: int) -> dict:
    from fer.evaluation import speed

    python = speed.side_venv()
    out = subprocess.run([str(python), "-c", HAAR_SCRIPT, str(media), str(limit)], capture_output=True,
                         text=True, check=True, cwd="/")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import cv2

    from fer.config import SHARED_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000, help="at most this many video frames")
    parser.add_argument("--no-haar", action="store_true", help="skip the side-venv Haar run")
    args = parser.parse_args()
    media = SHARED_DIR / "media"
    cap, frames = cv2.VideoCapture(str(media / "woman2.mp4")), []
    while len(frames) < args.frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    results = {f"blazeface {m}": run_blazeface(m, media, frames) for m in ("back", "front", "full")}
    if not args.no_haar:
        results["haar (OpenCV 4)"] = run_haar(media, len(frames))
    print(f"{'candidate':18s} {'photos found':>14s} {'video frames':>14s} {'ms/frame p50':>13s}  missed photos")
    for name, r in results.items():
        found = sum(n >= 1 for n in r["photos"].values())
        video = sum(n >= 1 for n in r["video"])
        missed = [k for k, n in r["photos"].items() if n == 0]
        print(f"{name:18s} {found:>8d}/{len(r['photos'])}    {video:>8d}/{len(r['video'])}   {r['ms']:>10.2f}     {', '.join(missed) or '-'}")


if __name__ == "__main__":
    main()
