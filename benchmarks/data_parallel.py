"""Training speed on one device against data-parallel training (``fer.training.parallel``) under JAX:
``python -m fer train`` on one device, split between N devices of one process (``--devices N``),
and by N processes joined on 127.0.0.1; the three alternate, round by round, median over rounds.

    .venv/bin/python benchmarks/data_parallel.py [--rounds 3] [--n 2] [--profile smoke] [--model main]
        [--data synthetic] [--epochs 3] [--batch 128]

Reports each mode's median wall time for the whole command and its median time per epoch after
the first (the first compiles). On a CPU the N devices of one process are
``--xla_force_host_platform_device_count=N`` and each process has one: they share the same
cores, so no speed-up is expected, only the cost of splitting; on a machine with N GPUs each
device is a GPU (``CUDA_VISIBLE_DEVICES`` gives each process its own).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gpus() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def run_mode(mode: str, n: int, args, run_dir: Path) -> tuple[float, list[float]]:
    from fer.training.cluster import free_port

    base = [sys.executable, "-m", "fer", "train", "--profile", args.profile, "--model", args.model, "--data", args.data,
            "--epochs", str(args.epochs), "--global-batch", str(args.batch), "--run-dir", str(run_dir)]
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2", "XLA_FLAGS": ""}
    on_gpu = gpus() >= n
    if mode == "devices" and not on_gpu:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
    commands = []
    if mode == "one":
        commands.append((base, {**env, **({"CUDA_VISIBLE_DEVICES": "0"} if on_gpu else {})}))
    elif mode == "devices":
        commands.append((base + ["--devices", str(n)], env))
    else:
        port = free_port()
        for i in range(n):
            e = {**env, **({"CUDA_VISIBLE_DEVICES": str(i)} if on_gpu else {})}
            commands.append((base + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n),
                                     "--process-id", str(i)], e))
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=e, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c, e in commands]
    errors = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - start
    for p, err in zip(procs, errors, strict=True):
        if p.returncode:
            raise SystemExit(f"{mode} failed:\n{err[-3000:]}")
    with open(run_dir / "log.csv", newline="") as f:
        epochs = [float(r["epoch_s"]) for r in csv.DictReader(f)]
    return wall, epochs[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=2, help="devices or processes (default: 2)")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--model", default="main")
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128, help="the global batch, the same in every mode (default: 128)")
    args = ap.parse_args()
    modes = ("one", "devices", "processes")
    walls: dict[str, list[float]] = {m: [] for m in modes}
    epochs: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in modes:
                wall, times = run_mode(mode, args.n, args, Path(tmp) / f"{mode}-{r}")
                walls[mode].append(wall)
                epochs[mode] += times
                print(f"round {r + 1}: {mode:9} {wall:6.1f} s, epochs after the first {times}", flush=True)
    print(f"\n{args.profile}/{args.model} on {args.data}, {args.epochs} epochs, global batch {args.batch}, "
          f"n = {args.n}, {os.cpu_count()} cores, {gpus()} GPUs; medians of {args.rounds} rounds")
    one = statistics.median(epochs["one"])
    for mode in modes:
        e = statistics.median(epochs[mode])
        print(f"  {mode:9}: command {statistics.median(walls[mode]):6.1f} s, epoch {e:5.2f} s ({one / e:.2f}x one device)")


if __name__ == "__main__":
    main()
