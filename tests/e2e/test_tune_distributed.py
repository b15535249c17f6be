"""keras-tuner's distributed search through ``python -m fer tune --distributed``: a chief and two
workers on 127.0.0.1 finish a tiny search together (under JAX), and a worker killed in the middle
of a trial is started again by ``--distributed local`` and re-runs that trial, which is recorded
once (under TensorFlow). Every process is in its own group and is killed and reaped, pass or fail."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from fer.training.cluster import free_port

pytestmark = pytest.mark.slow

TRIALS = 4
COLUMNS = ["", "trial", "val_accuracy", "lr", "weight_decay", "dropout", "augment", "width", "stem_width", "blocks",
           "epochs", "worker"]


@pytest.fixture
def profile(tmp_path) -> Path:
    """The smoke profile's tiny search, four one-epoch trials on 128 generated faces."""
    root = Path(__file__).parents[2]
    p = yaml.safe_load((root / "params" / "smoke.yaml").read_text())
    p.update(profile="dist", max_trials=TRIALS)
    p["tune"].update(max_train=128, blocks=["1111"])
    path = tmp_path / "dist.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


class Proc:
    """A child command in its own process group; its output collected line by line."""

    def __init__(self, argv, env=None, cwd=None):
        self.lines: list[str] = []
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                  start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                  cwd=cwd)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.p.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} in the output:\n" + "\n".join(self.lines[-40:]))

    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self):
        """Kill the group and every process it started (the launcher's children have their own)."""
        try:
            procs = psutil.Process(self.p.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        for pid in {self.p.pid, *(c.pid for c in procs)}:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.p.wait(timeout=30)
        psutil.wait_procs(procs, timeout=30)


def tune(profile: Path, directory: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fer", "tune", "--profile", str(profile), "--dir", str(directory), *extra]


def read_trials(directory: Path) -> list[dict]:
    with open(directory / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    return rows


def test_a_chief_and_two_workers_finish_the_search_together_under_jax(profile, tmp_path):
    port, directory = free_port(), tmp_path / "search"
    env = {"KERAS_BACKEND": "jax"}
    procs = []
    try:
        chief = Proc(tune(profile, directory, "--distributed", "chief", "--oracle", f"127.0.0.1:{port}"), env)
        procs.append(chief)
        workers = [Proc(tune(profile, directory, "--distributed", "worker", "--oracle", f"127.0.0.1:{port}",
                             "--tuner-id", f"w{i}"), env) for i in range(2)]
        procs += workers
        for p in procs:
            assert p.p.wait(timeout=480) == 0, p.output()[-3000:]
    finally:
        for p in procs:
            p.kill()
    assert "listening on 127.0.0.1" in chief.output()
    rows = read_trials(directory)
    assert sorted(r["trial"] for r in rows) == [str(i) for i in range(TRIALS)]  # each trial once
    assert all(0 <= float(r["val_accuracy"]) <= 1 for r in rows)
    ran = {w: sum(r["worker"] == w for r in rows) for w in ("w0", "w1")}
    assert ran["w0"] >= 1 and ran["w1"] >= 1 and sum(ran.values()) == TRIALS, ran
    for i, w in enumerate(workers):
        assert f"w{i}: the search is over; this worker finished {ran[f'w{i}']} trial(s)" in w.output()
    assert json.loads((directory / "best_hp.json").read_text())["lr"] > 0


def test_a_killed_worker_is_started_again_and_its_trial_is_recorded_once(profile, tmp_path):
    directory = tmp_path / "search"
    launcher = Proc(tune(profile, directory, "--distributed", "local", "--workers", "2"), {"KERAS_BACKEND": "tensorflow"})
    try:
        begun = launcher.wait_for("[tuner0] tuner0: trial ", timeout=300)
        trial = begun.split("trial ")[1].split()[0]
        worker = next(c for c in psutil.Process(launcher.p.pid).children()
                      if "tuner0" in c.cmdline() and "worker" in c.cmdline())
        os.killpg(worker.pid, signal.SIGKILL)  # mid-trial: it has begun, not finished
        assert launcher.p.wait(timeout=480) == 0, launcher.output()[-3000:]
    finally:
        launcher.kill()
    out = launcher.output()
    assert "tuner0 ended with exit status -9; starting it again" in out
    rows = read_trials(directory)
    assert sorted(r["trial"] for r in rows) == [str(i) for i in range(TRIALS)]  # each trial once
    project = next(directory.glob("random-*"))
    events = [json.loads(line) for line in (project / "workers" / "tuner0.jsonl").read_text().splitlines()]
    runs_of_trial = [e["event"] for e in events if e["trial"] == trial]
    assert runs_of_trial == ["begin", "begin", "end"]  # killed, started again, re-run to the end
