"""What the real-browser tests share: Debian's chromium with a fake camera (a Y4M file), servers
on 127.0.0.1 that the test starts and stops, and the figures the live view reports.

Chromium is a system package (``apt-get install chromium``; ``.ci/run`` installs it when missing),
driven by Playwright for Python through ``executable_path``: no browser is downloaded. Without it
the browser tests skip, except where ``FER_REQUIRE_BROWSER=1`` (CI) makes that a failure; the same
goes for the ipywidgets 7.7 folder one test needs (``FER_IPYWIDGETS7``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.apps import demo

Y4M_SIZE = (640, 360)
Y4M_FPS = 15


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = "no chromium on PATH: apt-get install chromium (the browser tests drive the system browser)"
    if os.environ.get("FER_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def ipywidgets7_path() -> str:
    """``$FER_IPYWIDGETS7``: a folder holding ipywidgets 7.7 (Colab's version) for a kernel's
    PYTHONPATH. Absent outside CI: a skip, except where ``FER_REQUIRE_BROWSER=1`` (CI) fails."""
    folder = os.environ.get("FER_IPYWIDGETS7")
    if folder and (Path(folder) / "ipywidgets").is_dir():
        return folder
    message = (f"FER_IPYWIDGETS7={folder!r} holds no ipywidgets: set it to a folder made with `pip install --target "
               "DIR --no-deps ipywidgets==7.7.5 ipython_genutils==0.2.0` (.ci/run does)")
    if os.environ.get("FER_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def write_y4m(frames: list[np.ndarray], path: Path, fps: int = Y4M_FPS) -> Path:
    """BGR frames → an uncompressed YUV4MPEG2 4:2:0 file, the format Chromium's fake camera plays."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def camera_frames(seconds: float = 3.0) -> list[np.ndarray]:
    """A few seconds of the sample video (``../shared/media/woman2.mp4``) at 640x360, or the
    generated astronaut clip when it is absent."""
    n = int(seconds * Y4M_FPS)
    if demo.SAMPLE_VIDEO.is_file():
        cap = cv2.VideoCapture(str(demo.SAMPLE_VIDEO))
        step = max(1, round((cap.get(cv2.CAP_PROP_FPS) or 30) / Y4M_FPS))
        frames, i = [], 0
        while len(frames) < n:
            ok, frame = cap.read()
            if not ok:
                break
            if i % step == 0:
                frames.append(cv2.resize(frame, Y4M_SIZE, interpolation=cv2.INTER_AREA))
            i += 1
        cap.release()
        if frames:
            return frames
    return list(demo.astronaut_frames(n, Y4M_SIZE, Y4M_FPS))


def launch(playwright, y4m: Path, extra_args: tuple[str, ...] = ()):
    return playwright.chromium.launch(
        executable_path=chromium_path(), headless=True,
        args=["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-video-capture={y4m}", "--no-sandbox", *extra_args])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(cmd: list[str], url: str, log: Path, ready: str = "", timeout: float = 120.0,
           env: dict | None = None, cwd: Path | None = None) -> Iterator[str]:
    """Start ``cmd``, wait until ``url + ready`` answers, yield ``url``; always stopped after."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[:4]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(url + ready, timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}") from None
                    time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def jupyter(kind: str, root: Path, log: Path):
    """JupyterLab (``kind="lab"``) or Notebook 7 (``"notebook"``) on 127.0.0.1, token off."""
    port = free_port()
    cmd = [sys.executable, "-m", "jupyter", kind, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
           "jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "JUPYTER_CONFIG_DIR": str(root / ".jupyter-config"),
           "JUPYTER_RUNTIME_DIR": str(root / ".jupyter-runtime"), "PYTHONUNBUFFERED": "1"}
    return server(cmd, f"http://127.0.0.1:{port}", log, ready="/api/status", env=env, cwd=root)


def kernel_idle(url: str, path: str, timeout_s: float = 90.0) -> str:
    """Wait until the notebook at ``path`` has a kernel that is idle; return the kernel's id."""
    import json

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/sessions", timeout=5) as r:
            sessions = json.load(r)
        for s in sessions:
            if s.get("path", "").endswith(path) and (s.get("kernel") or {}).get("execution_state") == "idle":
                return s["kernel"]["id"]
        time.sleep(0.3)
    raise TimeoutError(f"no idle kernel for {path} after {timeout_s:.0f} s")


def run_all(page, url: str, kind: str, path: str) -> str:
    """Open ``path`` in JupyterLab or Notebook 7 and run every cell (menu Run → Run All Cells)."""
    # ?reset: a fresh workspace, so the tabs earlier tests opened are not restored beside this one
    page.goto(f"{url}/lab/tree/{path}?reset" if kind == "lab" else f"{url}/notebooks/{path}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    kernel = kernel_idle(url, path)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    return kernel


def kernel_run(root: Path, kernel_id: str, code: str, timeout_s: float = 30.0) -> str:
    """Run ``code`` in the notebook's own kernel (its connection file) and return its stdout."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient(connection_file=str(root / ".jupyter-runtime" / f"kernel-{kernel_id}.json"))
    client.load_connection_file()
    client.start_channels()
    out: list[str] = []
    try:
        reply = client.execute_interactive(code, timeout=timeout_s, output_hook=lambda m: out.append(
            m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
    finally:
        client.stop_channels()
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


def live_stats(view) -> dict[str, str]:
    """The figures a live view keeps on its root element (``data-*``; ``view`` is a Locator),
    with the widget's transport from its container."""
    return view.evaluate("e => ({...e.dataset, transport: e.parentElement.dataset.transport || ''})")


def wait_for_predictions(view, n: int, timeout_s: float) -> dict[str, str]:
    """Wait until the live view (a Locator) has ``n`` answers; return its figures."""
    view.wait_for(timeout=timeout_s * 1000)
    view.page.wait_for_function("([e, n]) => Number(e.dataset.predictions) >= n",
                                arg=[view.element_handle(), n], timeout=timeout_s * 1000)
    return live_stats(view)
