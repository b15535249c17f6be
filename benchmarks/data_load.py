"""How long loading FER2013 takes, cold (decode every image, write the cache) and warm (cache hit).

Each measurement runs in a fresh Python process, so peak memory (ru_maxrss) belongs to that load
alone and no import or allocator state carries over; the median of ``--repeats`` runs is
reported. Targets: cold <= 10 s, warm <= 1 s.

Usage: python benchmarks/data_load.py [SOURCE] [--repeats 3] [--json]
(SOURCE defaults to ../shared/data/fer2013.zip)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_once(source: str, cache_dir: str) -> dict:
    """One load in this process (the child): wall seconds, memory before and at peak."""
    from fer import data

    before = _rss_mib()
    t = time.perf_counter()
    splits = data.load(source, cache_dir=cache_dir)
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "rss_before_mib": before,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "images": sum(len(x) for x, _ in splits.values()),
        "array_mib": sum(x.nbytes + y.nbytes for x, y in splits.values()) / 2**20,
    }


def _child(source: str, cache_dir: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, source, "--child", cache_dir],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(source: str, repeats: int) -> dict[str, dict]:
    results: dict[str, list[dict]] = {"cold": [], "warm": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache_dir:  # empty cache: a cold load
            results["cold"].append(_child(source, cache_dir))
            results["warm"].append(_child(source, cache_dir))
    summary = {}
    for kind, runs in results.items():
        summary[kind] = {
            "median_s": statistics.median(r["seconds"] for r in runs),
            "runs_s": [round(r["seconds"], 3) for r in runs],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "load_rss_mib": max(r["peak_rss_mib"] - r["rss_before_mib"] for r in runs),
            "images": runs[0]["images"],
            "array_mib": runs[0]["array_mib"],
        }
    return summary


def main() -> None:
    from fer.config import SHARED_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=str(SHARED_DIR / "data" / "fer2013.zip"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_once(args.source, args.child)))
        return
    summary = run(args.source, args.repeats)
    if args.json:
        print(json.dumps({"source": args.source, **summary}, indent=2))
        return
    print(f"source: {args.source} ({summary['cold']['images']:,} images, "
          f"{summary['cold']['array_mib']:.0f} MiB as arrays); median of {args.repeats} fresh processes\n")
    print(f"{'load':<6}{'median s':>10}{'runs s':>26}{'peak RSS MiB':>14}{'load +MiB':>11}")
    for kind, s in summary.items():
        runs = ", ".join(f"{r:.2f}" for r in s["runs_s"])
        print(f"{kind:<6}{s['median_s']:>10.2f}{runs:>26}{s['peak_rss_mib']:>14.0f}{s['load_rss_mib']:>11.0f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
