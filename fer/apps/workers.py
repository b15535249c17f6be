"""Worker processes for the web app: each decodes and analyses uploads with its own detector,
classifier and interpreter lock (GIL), so requests use every core.

Why processes and not only threads: LiteRT runs outside the GIL, but a request is also ~3 ms of
Python (HTTP parsing, decoding glue, detection post-processing, JSON), and on 2 cores the
server threads queue for the GIL behind each other (docs/performance.md has the measurements).
The server's own process keeps the HTTP work and the video stream; uploads go to the workers as
bytes (~30 KB for a 640x480 JPEG) and come back as the JSON-ready answer (~1 KB).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

log = logging.getLogger(__name__)


class WorkersUnavailable(RuntimeError):
    """A worker process died (and a fresh set is being started); the request may be retried."""


def _start() -> None:
    """In each new worker: load the bundled model and the detector before the first upload."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C stops the server, which stops the workers
    threading.Thread(target=_exit_with, args=(os.getppid(),), name="fer-worker-watchdog", daemon=True).start()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fer.apps.uploads import warm_up

    warm_up()


def _exit_with(parent: int) -> None:
    """End this worker when the server process is gone, even killed without a chance to stop it."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _answer(raw: bytes, max_pixels: int) -> dict[str, Any]:
    from fer.apps import uploads

    return uploads.answer(raw, max_pixels)


def _ready() -> int:
    return os.getpid()


class Workers:
    """``processes`` worker processes answering uploads (:func:`fer.apps.uploads.answer`)."""

    def __init__(self, processes: int):
        if processes < 1:
            raise ValueError(f"--workers must be at least 1, not {processes}")
        self.processes = processes
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the server process has threads (and LiteRT's) that fork would copy mid-state
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start)

    def warm(self, timeout: float = 300.0) -> list[int]:
        """Start every worker now (each loads the model); their process ids. A worker that cannot
        start breaks the pool (``BrokenProcessPool``), so the server does not start half-broken;
        ``serve()`` loads the model in its own process first, so a missing one is named there."""
        pool = self._pool
        futures = [pool.submit(_ready) for _ in range(self.processes)]
        return sorted({f.result(timeout=timeout) for f in futures})

    def answer(self, raw: bytes, max_pixels: int) -> dict[str, Any]:
        pool = self._pool
        try:
            return pool.submit(_answer, raw, max_pixels).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:  # the first request to notice replaces the pool
                    log.error("a worker process died; starting %d new ones", self.processes)
                    self._pool = self._new_pool()
            raise WorkersUnavailable("a worker process stopped while analysing this image (see the server "
                                     "log); new workers are starting, try again in a few seconds.") from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
