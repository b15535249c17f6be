"""Wall time of one small keras-tuner search run by one worker and by two
(``python -m fer tune --distributed local --workers N``), alternating, median over the rounds.

    .venv/bin/python benchmarks/distributed_search.py [--rounds 3] [--trials 4] [--backend tensorflow]

The search is the smoke profile's (generated data, 256 faces, one-epoch trials) with ``--trials``
trials, in a fresh folder each time, so every run does the whole search: the chief's start, the
workers' start (Python, TensorFlow or JAX, the data) and the trials. On a 2-core machine two
workers share the cores that one had: little or no speed-up is expected there; the figure is
the overhead of the chief and the second worker. One worker per GPU is what it is for.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    args = ap.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        profile = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
        profile.update(profile="bench", max_trials=args.trials)
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(profile))
        env = {**os.environ, "KERAS_BACKEND": args.backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        for r in range(args.rounds):
            for workers in (1, 2):
                directory = Path(tmp) / f"search-{r}-{workers}"
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "fer", "tune", "--profile", str(path), "--dir", str(directory),
                                "--distributed", "local", "--workers", str(workers)], env=env, cwd=ROOT, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[workers].append(time.perf_counter() - start)
                print(f"round {r + 1}: {workers} worker(s) {times[workers][-1]:.1f} s", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"{args.trials} trials, {args.backend}, {os.cpu_count()} cores, median of {args.rounds}: "
          f"1 worker {one:.1f} s, 2 workers {two:.1f} s, speed-up {one / two:.2f}x")


if __name__ == "__main__":
    main()
