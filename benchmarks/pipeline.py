"""Inference speed against the targets, and against the PyPI ``fer`` package, in one run.

    .venv/bin/python benchmarks/pipeline.py [--frames 100] [--json out.json]

Runs :func:`fer.evaluation.speed.run` with ``compare_fer=True`` (first run creates ``.bench-venv``, a
git-ignored side venv with OpenCV 4.x and ``fer==25.10.3``) and checks the issue's targets:
analyze p50 <= 12 ms and >= 3x faster than ``FER().detect_emotions``, every shared/media
face found, classifier batch-1 p50 <= 2 ms. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from fer.evaluation import speed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    r = speed.run(frames=args.frames, compare_fer=True)
    print(speed.report(r))
    media = r.get("media_recall") or {}
    targets = {
        "analyze p50 <= 12 ms": r["analyze_ms"]["p50"] <= 12,
        "analyze >= 3x faster than PyPI fer (p50)": r["speedup_p50"] >= 3,
        "all shared/media faces found": bool(media) and media["found"] == media["photos"],
        "classifier batch-1 p50 <= 2 ms": r["classifier"]["batch1_ms"]["p50"] <= 2,
    }
    for name, ok in targets.items():
        print(f"{'ok  ' if ok else 'MISS'} {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
