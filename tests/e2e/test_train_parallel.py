"""Data-parallel training with ``keras.distribution`` under JAX on this CPU: two processes joined
on 127.0.0.1 (gloo collectives) end with identical weights, the same as one process splitting
each batch between two devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``), and
the same as one device up to rounding; a run interrupted after an epoch and started again in
both processes resumes from the shared backup to exactly the uninterrupted result; processes
that see different run folders stop with an error. Each process runs ``parallel_fit.py`` in
its own process group, killed and reaped whatever happens."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer.training.cluster import free_port

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("parallel_fit.py")
TIMEOUT = 240  # seconds for one run of both processes (about 25 s on 2 cores)


def run(tmp_path: Path, name: str, processes: int = 1, devices: int | None = None, run_dirs=None, extra=()):
    """Run ``parallel_fit.py`` in ``processes`` processes; return their exit codes and outputs."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1", "XLA_FLAGS": ""}
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    port = free_port()
    procs = []
    try:
        for i in range(processes):
            argv = [sys.executable, str(SCRIPT), "--out", str(tmp_path / f"{name}{i}.npz"), *extra]
            if devices:
                argv += ["--devices", str(devices)]
            if processes > 1:
                argv += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes), "--process-id", str(i)]
            if run_dirs:
                argv += ["--run-dir", str(run_dirs[i] if isinstance(run_dirs, list) else run_dirs)]
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          start_new_session=True, env=env))
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
        return [p.returncode for p in procs], outputs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as z:
        return [z[k] for k in z.files if k.startswith("arr_")]


def same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def ok(codes, outputs):
    assert codes == [0] * len(codes), "\n\n".join(o[-3000:] for o in outputs)


def test_two_processes_train_the_model_two_devices_and_one_device_train(tmp_path):
    ok(*run(tmp_path, "multi", processes=2, run_dirs=tmp_path / "run", extra=["--epochs", "3"]))
    ok(*run(tmp_path, "single", devices=2, extra=["--epochs", "3"]))
    ok(*run(tmp_path, "one", extra=["--epochs", "3"]))
    multi0, multi1 = weights(tmp_path / "multi0.npz"), weights(tmp_path / "multi1.npz")
    assert same(multi0, multi1)  # one model, not two
    assert same(multi0, weights(tmp_path / "single0.npz"))  # the same computation, split alike
    with np.load(tmp_path / "single0.npz") as z:
        assert int(z["devices"]) == 2
    for a, b in zip(multi0, weights(tmp_path / "one0.npz"), strict=True):  # summed in another order
        np.testing.assert_allclose(a, b, atol=5e-3)
    # process 0 alone wrote the run folder: one log of three epochs, in which the loss fell; no backup left
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in log] == [0, 1, 2]
    assert float(log[-1]["loss"]) < float(log[0]["loss"])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.keras", "config.json", "log.csv"]

    # interrupted after epoch 1 in both processes, then started again: resumed, not restarted
    codes, outputs = run(tmp_path, "cut", processes=2, run_dirs=tmp_path / "cut", extra=["--epochs", "3", "--stop-after", "1"])
    assert codes == [3, 3], "\n\n".join(o[-3000:] for o in outputs)
    assert (tmp_path / "cut" / "backup").is_dir()
    ok(*run(tmp_path, "resumed", processes=2, run_dirs=tmp_path / "cut", extra=["--epochs", "3"]))
    assert same(weights(tmp_path / "resumed0.npz"), multi0)
    assert same(weights(tmp_path / "resumed1.npz"), multi0)
    assert len((tmp_path / "cut" / "log.csv").read_text().splitlines()) == 4  # each epoch logged once


def test_processes_that_see_different_run_folders_stop(tmp_path):
    codes, _ = run(tmp_path, "cut", processes=2, run_dirs=tmp_path / "a", extra=["--epochs", "2", "--stop-after", "1"])
    assert codes == [3, 3]
    (tmp_path / "b").mkdir()
    codes, outputs = run(tmp_path, "split", processes=2, run_dirs=[tmp_path / "a", tmp_path / "b"],
                         extra=["--epochs", "2"])
    assert codes[0] != 0 and codes[1] != 0
    assert all("would resume from different epochs" in o for o in outputs), "\n\n".join(o[-2000:] for o in outputs)
