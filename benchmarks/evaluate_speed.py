"""How many photos a second ``python -m fer evaluate`` gets through in pipeline mode.

    .venv/bin/python benchmarks/evaluate_speed.py [--rounds 5] [--frames 240] [--side PX] [--model PATH]

Builds a labelled set in a temporary folder from ``shared/media``: the six photos (291x412 to
600x400 JPEGs, one face each) copied 20 times, and every other frame of ``woman2.mp4`` (596x336)
as a JPEG, one class folder each (the labels do not matter for speed); ``--side 4000`` enlarges
every image to that longer side first (JPEG quality 90), as a phone camera's photos are. Then it runs
``fer.evaluation.evaluate.run`` on the whole set with 1 thread and with one per core, alternating, and prints
the median photos/s of each over the rounds (decode, detection, crop and the batched classifier;
the model is loaded and warmed up first). The two are measured side by side because this
machine's speed drifts between runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _save(path: Path, image, side: int | None) -> None:
    import cv2

    if side:
        scale = side / max(image.shape[:2])
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


def build_set(root: Path, frames: int, side: int | None = None) -> int:
    import cv2

    from fer.config import SHARED_DIR

    media = SHARED_DIR / "media"
    photos = sorted(media.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos in {media}: this benchmark needs ../shared/media")
    (root / "happy").mkdir(parents=True)
    (root / "neutral").mkdir()
    for k in range(20):
        for p in photos:
            if side:
                _save(root / "happy" / f"{k:02d}_{p.name}", cv2.imread(str(p)), side)
            else:
                shutil.copy(p, root / "happy" / f"{k:02d}_{p.name}")
    cap, n, i = cv2.VideoCapture(str(media / "woman2.mp4")), 0, 0
    while n < frames:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 2 == 0:
            _save(root / "neutral" / f"frame{i:04d}.jpg", frame, side)
            n += 1
        i += 1
    return 20 * len(photos) + n


def main() -> None:
    from fer import load_classifier
    from fer.data import labelled
    from fer.evaluation import evaluate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=240, help="video frames in the set (every other frame)")
    parser.add_argument("--side", type=int, help="enlarge every image to this longer side (e.g. 4000)")
    parser.add_argument("--model", help="model file (default: the bundled one)")
    args = parser.parse_args()
    clf = load_classifier(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        n = build_set(Path(tmp) / "set", args.frames, args.side)
        lset = labelled.open_set(Path(tmp) / "set")
        evaluate.run(lset.sample(20), clf, progress=False)  # warm-up: detectors and the classifier
        cores = os.cpu_count() or 1
        rates: dict[int, list[float]] = {1: [], cores: []}
        for r in range(args.rounds):
            for jobs in rates:
                ev = evaluate.run(lset, clf, jobs=jobs, progress=False)
                rates[jobs].append(n / ev.seconds)
                print(f"round {r + 1}: {jobs} thread(s) {n / ev.seconds:6.1f} photos/s "
                      f"({int((ev.table['status'] == 'ok').sum())}/{n} with a face)")
    size = f"enlarged to {args.side} px" if args.side else "at their own sizes (291x412 to 600x400)"
    print(f"model {clf.path.name}; {n} photos {size}; median of {args.rounds} rounds:")
    for jobs, values in rates.items():
        print(f"  {jobs} thread(s): {statistics.median(values):.1f} photos/s")


if __name__ == "__main__":
    main()
