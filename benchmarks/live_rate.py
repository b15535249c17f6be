"""The live webcam rate end to end, in a real browser with a fake camera: the web page's webcam view
(``python -m fer serve``) and the notebook widget in JupyterLab, each with the shipped model.

    .venv/bin/python benchmarks/live_rate.py [--seconds 20] [--only page|lab] [--page-tree DIR]

Chromium (Debian's, ``apt-get install chromium``) plays a few seconds of ``woman2.mp4`` (or the
generated astronaut clip) as its camera. For the page, every ``POST /api/predict`` answer is
counted at the network level, so the figure is the same for any version of the page:
``--page-tree DIR`` serves the page from another checkout (``git worktree add /tmp/old HEAD~N``)
to measure a version before a change side by side. For the widget, a scratch notebook shows
``fer.apps.webcam.Webcam`` once with binary buffers and once with the base64 fallback, and the
widget's own figures are read after a warm-up. Predictions/s are answers per second of the
measured window; round trips are p50/p95 in ms, from grabbing the frame to drawing its answer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import browser  # noqa: E402  (tests/e2e/browser.py: the fake camera and the servers)


def page_rate(tree: Path, y4m: Path, seconds: float, work: Path) -> dict:
    """One page run: answers per second counted at the network level, and their request times."""
    from playwright.sync_api import sync_playwright

    port = browser.free_port()
    cmd = [sys.executable, "-m", "fer", "serve", "--port", str(port)]
    env = {"PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    with browser.server(cmd, f"http://127.0.0.1:{port}", work / f"serve-{port}.log", ready="/healthz",
                        env=env, cwd=tree) as url, sync_playwright() as p:
        b = browser.launch(p, y4m)
        page = b.new_page()
        done: list[tuple[float, float]] = []  # (answer time, request duration ms)
        sent: dict[object, float] = {}
        page.on("request", lambda r: sent.__setitem__(r, time.perf_counter()) if r.url.endswith("/api/predict") else None)
        page.on("requestfinished", lambda r: done.append((time.perf_counter(), 1000 * (time.perf_counter() - sent[r])))
                if r in sent else None)
        page.goto(url + "/")
        page.click("#camera")
        page.wait_for_timeout(8000)  # warm-up (the camera opens, the model's first calls); events flow only while Playwright waits
        start, n0 = time.perf_counter(), len(done)
        page.wait_for_timeout(seconds * 1000)
        window = [d for t, d in done[n0:] if t >= start]
        b.close()
    return {"predictions_per_s": round(len(window) / seconds, 2), "requests": len(window),
            "request_p50_ms": round(statistics.median(window), 1) if window else 0.0}


NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "0",
               "source": ["from IPython.display import display\n", "from fer.apps import webcam\n",
                          "display(webcam.Webcam(transport='buffers'), webcam.Webcam(transport='base64'))\n"]}],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def _window(page, view, seconds: float) -> dict:
    """Answers per second over ``seconds``; the round trips are the view's last 100 (at 10/s, that window)."""
    a = browser.live_stats(view)
    t0 = time.perf_counter()
    page.wait_for_timeout(seconds * 1000)
    z = browser.live_stats(view)
    rate = (int(z["predictions"]) - int(a["predictions"])) / (time.perf_counter() - t0)
    return {"predictions_per_s": rate, "rtt_p50_ms": float(z["rttP50Ms"]), "rtt_p95_ms": float(z["rttP95Ms"]),
            "encode_p50_ms": float(z["encodeP50Ms"]), "kernel_ms": float(z["kernelMs"]), "transport": z["transport"]}


def _median(windows: list[dict]) -> dict:
    keys = [k for k in windows[0] if k != "transport"]
    return {**{k: round(statistics.median(w[k] for w in windows), 1) for k in keys},
            "transport": windows[0]["transport"], "windows": len(windows)}


def lab_rate(y4m: Path, seconds: float, repeats: int, work: Path) -> dict:
    """Both transports, alternating window by window, each while the other view is stopped."""
    from playwright.sync_api import sync_playwright

    (work / "rate.ipynb").write_text(json.dumps(NOTEBOOK))
    windows: dict[str, list[dict]] = {"buffers": [], "base64": []}
    with browser.jupyter("lab", work, work / "lab.log") as url, sync_playwright() as p:
        b = browser.launch(p, y4m)
        page = b.new_page(viewport={"width": 1400, "height": 1400})
        browser.run_all(page, url, "lab", "rate.ipynb")
        views = page.locator(".fer-live")
        browser.wait_for_predictions(views.nth(1), 10, 120)
        for _ in range(repeats):
            for i, name in enumerate(windows):
                toggles = [views.nth(k).locator(".fer-live-toggle") for k in (0, 1)]
                if toggles[1 - i].inner_text().startswith("Stop"):
                    toggles[1 - i].click()
                if toggles[i].inner_text().startswith("Start"):
                    toggles[i].click()
                page.wait_for_timeout(5000)  # warm-up after the switch
                windows[name].append(_window(page, views.nth(i), seconds))
        b.close()
    return {name: _median(w) for name, w in windows.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10, help="length of one measured window")
    p.add_argument("--repeats", type=int, default=3, help="windows per configuration (medians are reported)")
    p.add_argument("--only", choices=("page", "lab"))
    p.add_argument("--page-tree", type=Path, action="append", help="checkout(s) to serve the page from (default: this one)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        y4m = browser.write_y4m(browser.camera_frames(), work / "camera.y4m")
        result = {}
        if a.only != "lab":
            trees = a.page_tree or [ROOT]
            runs: dict[Path, list[dict]] = {t: [] for t in trees}
            for _ in range(a.repeats):  # the versions alternate, so drift in the machine hits both
                for tree in trees:
                    runs[tree].append(page_rate(tree.resolve(), y4m, a.seconds, work))
            for tree, r in runs.items():
                result[f"page {tree}"] = {k: statistics.median(x[k] for x in r) for k in r[0]} | {"windows": len(r)}
        if a.only != "page":
            result["jupyterlab widget"] = lab_rate(y4m, a.seconds, a.repeats, work)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
