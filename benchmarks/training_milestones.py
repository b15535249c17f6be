"""Wall time to each validation-accuracy milestone of a training run.

Reads ``<run_dir>/log.csv`` (``elapsed_s`` column, written by fer.train.EpochTimer) or, for runs
logged before that column existed, the per-epoch ``444/444 - 258s`` lines of the run's stdout.
Usage: python benchmarks/training_milestones.py runs/cpu/main [--stdout runs/cpu-main.log]
"""

import argparse
import csv
import re
from pathlib import Path

MILESTONES = (0.50, 0.55, 0.60, 0.63, 0.65, 0.66, 0.68, 0.71, 0.73)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--stdout", type=Path, help="the run's console log, for per-epoch seconds")
    a = p.parse_args()
    rows = list(csv.DictReader(open(a.run_dir / "log.csv")))
    if rows and "elapsed_s" in rows[0]:
        elapsed = [float(r["elapsed_s"]) for r in rows]
    else:
        secs = [int(s) for s in re.findall(r"^\d+/\d+ - (\d+)s", a.stdout.read_text(), re.M)]
        elapsed = [sum(secs[: i + 1]) for i in range(len(secs))]
    acc = [float(r["val_accuracy"]) for r in rows][: len(elapsed)]
    print(f"{len(acc)} epochs, {elapsed[-1] / 60:.1f} min, best val_accuracy {max(acc):.4f}")
    print("milestone  epoch  wall-min")
    for m in MILESTONES:
        hit = next((i for i, v in enumerate(acc) if v >= m), None)
        print(f"{m:9.0%}  {'-' if hit is None else hit + 1:>5}  {'-' if hit is None else f'{elapsed[hit] / 60:.1f}':>8}")


if __name__ == "__main__":
    main()
