"""A hyperparameter search spread over processes, GPUs and machines, with keras-tuner's own
distributed mode: no scheduler of this project's.

keras-tuner runs one **chief**, the oracle behind a gRPC server, which hands out trials and
records their results, and any number of **workers**, which ask it for a trial, train it and
report back. Each process learns its part from three environment variables:
``KERASTUNER_TUNER_ID`` (``chief``, or a worker's own id such as ``tuner0``),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (where the chief listens; where the
workers reach it). :func:`role` makes them from ``python -m fer tune --distributed chief|worker
--oracle HOST:PORT [--tuner-id ID]``, so the same command runs on every machine, and
:func:`launch` starts a chief and one worker per GPU on one host (``--distributed local``).

What keras-tuner does when a process dies (1.4.8; read from its ``Oracle.create_trial``):

- the oracle keeps a worker's unfinished trial assigned to that worker's id, and hands the
  *same* trial back when a worker with that id asks again: a killed worker started again with
  the same ``--tuner-id`` re-runs its trial from the start, so every trial is recorded once.
  Until it comes back the search cannot finish (the chief waits for every assigned trial);
  :func:`launch` restarts a dead worker itself;
- a trial that raises an error is recorded as failed, not retried (``max_retries_per_trial=0``),
  and three failed trials in a row stop the search (``max_consecutive_failed_trials=3``);
- a chief started again reloads its ``oracle.json`` and queues the trials that were running
  for a retry.

The chief stops by itself once every worker has been told the search is over and no trial is
running (it polls every second, then every 20 s while trials are still out).

Security: the gRPC port has no authentication and no encryption. The chief binds 127.0.0.1
unless ``--oracle`` names another address; reach it from other machines through an SSH tunnel
or over a private network (docs/scaling.md), never on an open port.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8000
ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


@dataclass(frozen=True)
class Role:
    """One process of a distributed search: ``chief`` or ``worker``, where the chief listens
    (``host``, ``port``) and this process's keras-tuner id."""

    role: str
    host: str
    port: int
    tuner_id: str

    def env(self) -> dict[str, str]:
        """keras-tuner's three variables for this process."""
        return {"KERASTUNER_TUNER_ID": self.tuner_id, "KERASTUNER_ORACLE_IP": self.host,
                "KERASTUNER_ORACLE_PORT": str(self.port)}


def parse_address(text: str | None, what: str = "--oracle") -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → ``(host, port)``; a bare port means 127.0.0.1."""
    if not text:
        raise ValueError(f"{what} needs HOST:PORT (the chief's address), e.g. 127.0.0.1:{DEFAULT_PORT}")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {text!r}: the port must be a number from 1 to 65535")
    if any(c.isspace() for c in host):
        raise ValueError(f"{what} {text!r}: not a host name or address")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: an address other machines cannot reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def role(distributed: str, oracle: str | None = None, tuner_id: str | None = None) -> Role:
    """The :class:`Role` of ``--distributed chief|worker``; clear errors for what cannot work.

    A chief without ``--oracle`` listens on 127.0.0.1:8000; a worker must be told where the
    chief is. Worker ids must differ from each other and from ``chief`` (keras-tuner treats any
    id containing ``chief`` as the chief), and stay the same when a worker is started again: the
    default, ``tuner-<host>`` (``tuner-<host>-gpu<N>`` under ``CUDA_VISIBLE_DEVICES=N``), does;
    two workers that share an id would both be handed the same trial."""
    if distributed not in ("chief", "worker"):
        raise ValueError(f"--distributed must be chief, worker or local, not {distributed!r}")
    if distributed == "chief":
        if tuner_id not in (None, "chief"):
            raise ValueError("--tuner-id is for workers: the chief's id is always 'chief'")
        host, port = parse_address(oracle) if oracle else ("127.0.0.1", DEFAULT_PORT)
        return Role("chief", host, port, "chief")
    if not oracle:
        raise ValueError("a worker needs --oracle HOST:PORT: where the chief listens")
    host, port = parse_address(oracle)
    if host in ("0.0.0.0", "::"):
        raise ValueError(f"--oracle {oracle}: a worker connects to the chief's own address, not to {host}")
    if not tuner_id:  # stable across restarts (so a restarted worker finds its trial); one per GPU
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "").replace(",", "-")
        tuner_id = f"tuner-{socket.gethostname()}" + (f"-gpu{gpu}" if gpu else "")
    if "chief" in tuner_id or not tuner_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"--tuner-id {tuner_id!r}: use letters, digits, '-', '_' or '.', and not the word 'chief'")
    return Role("worker", host, port, tuner_id)


def apply(r: Role) -> None:
    """Set keras-tuner's variables in this process (before the tuner is made)."""
    os.environ.update(r.env())


def distributed_role() -> str | None:
    """``chief``, ``worker`` or None (no distributed search), from keras-tuner's variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return None
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def security_note(r: Role) -> str | None:
    """A warning when the chief listens where other machines can reach it."""
    if r.role == "chief" and not is_loopback(r.host):
        return (f"the chief listens on {r.host}:{r.port}: keras-tuner's gRPC port has no authentication or "
                "encryption; expose it only on a private network (or bind 127.0.0.1 and use an SSH tunnel)")
    return None


# --------------------------------------------------------------------------- one host


def gpu_ids() -> list[str]:
    """The GPUs this host offers the workers: ``CUDA_VISIBLE_DEVICES`` when it is set, else
    what ``nvidia-smi -L`` lists (no GPU: an empty list). Asked without importing TensorFlow or
    JAX, which would take the GPUs in this launching process."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, alive=lambda: True) -> bool:
    """True once something accepts TCP connections on ``host:port``; False after ``timeout``
    seconds or as soon as ``alive()`` turns False (the process meant to listen has died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


class Child:
    """A child ``python -m fer ...`` (a search's chief or worker, a recipe's member) in its own
    process group, its output prefixed with its name."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name, self.argv, self.env, self.starts = name, argv, env, 0
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.starts += 1
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, start_new_session=True)
        threading.Thread(target=self._relay, args=(self.proc,), daemon=True).start()

    def _relay(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            print(f"[{self.name}] {line}", end="", flush=True)

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the whole group, SIGKILL after ``grace`` seconds; then reaped."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def launch(
    tune_args: Sequence[str],
    workers: int | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    restarts: int = 2,
    chief_grace: float = 120.0,
    python: str | None = None,
) -> int:
    """Run a whole distributed search on this host: a chief, then ``workers`` workers (default:
    one per GPU, each seeing only its own through ``CUDA_VISIBLE_DEVICES``; one on a host
    without GPUs), all ``python -m fer tune <tune_args>`` with their role added.

    A worker that dies (a crash, a kill, the OOM killer) is started again with the same id, at
    most ``restarts`` times each, and re-runs the trial it had. The chief is started again the
    same way. Returns the chief's exit status: 0 once the search has finished and the chief has
    written ``best_hp.json``. Every child is in its own process group and is stopped and
    reaped on the way out, also on Ctrl-C or SIGTERM.
    """
    gpus = gpu_ids()
    n = workers if workers is not None else max(1, len(gpus))
    if n < 1:
        raise ValueError("--workers must be at least 1")
    port = port or free_port(host)
    python = python or sys.executable
    base = [python, "-m", "fer", "tune", *tune_args]
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.setdefault("PYTHONUNBUFFERED", "1")
    children: list[Child] = []
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        chief = Child("chief", [*base, "--distributed", "chief", "--oracle", f"{host}:{port}"], env)
        children.append(chief)
        if not wait_for_port(host, port, timeout=600, alive=lambda: chief.poll() is None):
            print(f"the chief did not start listening on {host}:{port} (exit status {chief.poll()})", flush=True)
            return chief.poll() or 1
        _start_workers(children, base, env, f"{host}:{port}", n, gpus)
        on = ", ".join(f"{c.name} (GPU {c.env['CUDA_VISIBLE_DEVICES']})" if gpus else c.name for c in children[1:])
        print(f"search: chief on {host}:{port}, workers {on}", flush=True)
        return _watch(children, restarts, chief_grace)
    except KeyboardInterrupt:
        print("interrupted: stopping the chief and the workers; the same command resumes the search", flush=True)
        return 130
    finally:
        for child in reversed(children):
            child.stop()
        signal.signal(signal.SIGTERM, previous)


def _start_workers(children: list[Child], base: list[str], env: dict[str, str], oracle: str, n: int,
                   gpus: list[str]) -> None:
    """Start ``n`` workers of the chief at ``oracle`` (``tuner0``, ``tuner1``, ...; each on its own GPU,
    round robin, when there are GPUs), appending each to ``children`` as it starts."""
    for i in range(n):
        wenv = dict(env)
        if gpus:
            wenv["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        children.append(Child(f"tuner{i}", [*base, "--distributed", "worker", "--oracle", oracle,
                                               "--tuner-id", f"tuner{i}"], wenv))


def _watch(children: list[Child], restarts: int, chief_grace: float) -> int:
    """Watch the chief (``children[0]``) and the workers until the search ends, starting a dead one
    again at most ``restarts`` times; return the launcher's exit status."""
    chief = children[0]
    finished_at = None
    while True:
        time.sleep(0.5)
        for child in children:
            code = child.poll()
            if code in (None, 0):
                continue
            if child.starts > restarts:
                print(f"{child.name} failed {child.starts} times (exit status {code}); stopping the search; "
                      "a later run of the same command resumes it", flush=True)
                return code or 1
            print(f"{child.name} ended with exit status {code}; starting it again "
                  f"({child.starts} of {restarts} restarts): it takes up its unfinished trial", flush=True)
            child.start()
        if chief.poll() == 0:  # the workers have been told the search is over: let them exit
            for child in children[1:]:
                try:
                    child.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            return 0
        if all(c.poll() == 0 for c in children[1:]):
            finished_at = finished_at or time.monotonic()
            if time.monotonic() - finished_at > chief_grace:
                print(f"every worker finished but the chief is still running after {chief_grace:.0f} s; "
                      "stopping it", flush=True)
                return 1


# --------------------------------------------------------------------------- who ran what


def record(project_dir: str | os.PathLike, tuner_id: str, trial_id: str, event: str) -> None:
    """Append ``{"trial", "event", "time"}`` to ``<project>/workers/<tuner_id>.jsonl``: each
    worker writes only its own file, so several machines can share the search directory."""
    folder = Path(project_dir) / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{tuner_id}.jsonl", "a") as f:
        f.write(json.dumps({"trial": trial_id, "event": event, "time": round(time.time(), 3)}) + "\n")


def who_ran(project_dir: str | os.PathLike) -> dict[str, str]:
    """Trial id → the worker that finished it, from the workers' records (empty when the
    search was not distributed, or the workers kept their records on their own disks)."""
    out: dict[str, str] = {}
    for path in sorted((Path(project_dir) / "workers").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if entry.get("event") == "end":
                out[str(entry["trial"])] = path.stem
    return out
