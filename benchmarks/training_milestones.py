"""Wall time to each validation-accuracy milestone of one or more training runs.

Reads ``<run_dir>/log.csv`` (``elapsed_s`` column, written by fer.training.fit.EpochTimer) or, for runs
logged before that column existed, the per-epoch ``444/444 - 258s`` lines of the run's stdout.
With ``--plot`` it also draws the runs' learning curves side by side (fer.reporting.plots.learning_curves).
Usage: python benchmarks/training_milestones.py runs/cpu/main [runs/cpu-long/main ...]
       [--stdout runs/cpu-main.log] [--plot reports/figures/cpu-runs.png]
"""

import argparse
import csv
import re
from pathlib import Path

MILESTONES = (0.50, 0.55, 0.60, 0.63, 0.65, 0.66, 0.67, 0.68, 0.71, 0.73)


def read_run(run_dir: Path, stdout: Path | None = None) -> tuple[list[dict], list[float]]:
    """The run's logged rows and the wall seconds elapsed at the end of each epoch."""
    rows = list(csv.DictReader(open(run_dir / "log.csv")))
    if rows and "elapsed_s" in rows[0]:
        return rows, [float(r["elapsed_s"]) for r in rows]
    if stdout is None:
        raise SystemExit(f"{run_dir}/log.csv has no elapsed_s column: pass the run's console log with --stdout")
    secs = [int(s) for s in re.findall(r"^\d+/\d+ - (\d+)s", stdout.read_text(), re.M)]
    return rows, [sum(secs[: i + 1]) for i in range(len(secs))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--stdout", type=Path, help="console log of a run whose log.csv lacks elapsed_s")
    p.add_argument("--plot", type=Path, help="write the runs' learning curves to this image")
    a = p.parse_args()
    curves = {}
    for run_dir in a.run_dirs:
        rows, elapsed = read_run(run_dir, a.stdout)
        acc = [float(r["val_accuracy"]) for r in rows][: len(elapsed)]
        best = max(range(len(acc)), key=acc.__getitem__)
        print(f"{run_dir}: {len(acc)} epochs, {elapsed[-1] / 60:.1f} min, "
              f"best val_accuracy {acc[best]:.4f} (epoch {best + 1}), last {acc[-1]:.4f}")
        print("milestone  epoch  wall-min")
        for m in MILESTONES:
            hit = next((i for i, v in enumerate(acc) if v >= m), None)
            print(f"{m:9.0%}  {'-' if hit is None else hit + 1:>5}  {'-' if hit is None else f'{elapsed[hit] / 60:.1f}':>8}")
        curves[f"{run_dir.parent.name}/{run_dir.name} ({len(acc)} ep.)"] = {
            k: [float(r[k]) for r in rows] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
    if a.plot:
        from fer.reporting import plots

        a.plot.parent.mkdir(parents=True, exist_ok=True)
        plots.learning_curves(curves).savefig(a.plot, dpi=110)
        print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
