"""The models in the browser against the models on the server/kernel, in a real browser with a
fake camera: predictions/s, frame→overlay latency, the static page's load time, the bytes shipped.

    flock /tmp/fer-heavy.lock .venv/bin/python benchmarks/browser_runtime.py [--seconds 15] [--repeats 3]
        [--only page,serve,widget]

Chromium (Debian's) plays ``woman2.mp4`` resized to 640x480 at 30 frames/s as its camera (one face).
Measured, each ``--repeats`` times, medians reported:

- page: the static demo (``python -m fer export --web``) served by ``python -m http.server``:
  time from navigation to "models ready" (``data-ready-at``), then the webcam in the browser mode
  with the lite and the main classifier;
- serve: ``python -m fer serve``'s page, models on the server (today's mode) and in the browser;
- widget: ``Webcam`` in JupyterLab, ``runtime="browser"`` (lite, main) and ``runtime="kernel"``.

Figures are the live view's own: predictions/s is answers per second over its last 3 s, sampled
every second of the window (median of the samples); frame→overlay is its p50/p95 from grabbing
the video frame to drawing the answer (the kernel and server modes include the JPEG encode and the
round trip); model ms is the analysis alone (detector + crop + classifier), whose inverse is the
rate the browser mode could reach with a faster camera.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import browser  # noqa: E402  (tests/e2e/browser.py: the fake camera and the servers)

CAMERA = (640, 480)
CAMERA_FPS = 30


def camera(path: Path, seconds: float = 6.0) -> Path:
    from fer.apps import demo

    cap = cv2.VideoCapture(str(demo.SAMPLE_VIDEO))
    frames = []
    while len(frames) < seconds * CAMERA_FPS:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, CAMERA, interpolation=cv2.INTER_AREA))
    cap.release()
    if not frames:
        frames = list(demo.astronaut_frames(int(seconds * CAMERA_FPS), CAMERA, CAMERA_FPS))
    return browser.write_y4m(frames, path, fps=CAMERA_FPS)


def sample(view, seconds: float, warmup_s: float = 5.0) -> dict:
    """The live view's figures over a window after a warm-up: medians of per-second samples."""
    view.page.wait_for_timeout(warmup_s * 1000)
    fps, model = [], []
    for _ in range(int(seconds)):
        view.page.wait_for_timeout(1000)
        s = browser.live_stats(view)
        fps.append(float(s["fps"]))
        model.append(float(s["kernelMs"]))
    s = browser.live_stats(view)
    return {"predictions_per_s": round(statistics.median(fps), 1), "frame_to_overlay_p50_ms": round(float(s["rttP50Ms"]), 1),
            "frame_to_overlay_p95_ms": round(float(s["rttP95Ms"]), 1), "model_ms": round(statistics.median(model), 1),
            "where": s.get("where", "")}


def static_page(chromium, seconds: float, work: Path) -> dict:
    from fer.apps.web import export_web

    site = work / "site"
    written = export_web(site)
    port = browser.free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
    out: dict = {"export_bytes": sum(written.values())}
    with browser.server(cmd, f"http://127.0.0.1:{port}", work / "site.log", ready="/index.html") as url:
        for classifier in ("lite", "main"):
            context = chromium.new_context()
            page = context.new_page()
            page.goto(f"{url}/")
            page.wait_for_function("() => document.body.dataset.ready === 'true'", timeout=60_000)
            if classifier == "lite":
                out["ready_ms"] = int(page.evaluate("() => document.body.dataset.readyAt"))
            else:
                page.select_option("#classifier", classifier)
                page.wait_for_function("() => document.body.dataset.classifier === 'main' && document.body.dataset.ready === 'true'",
                                       timeout=60_000)
            page.click("#camera")
            view = page.locator("#live .fer-live")
            browser.wait_for_predictions(view, 10, 60)
            out[f"browser_{classifier}"] = sample(view, seconds)
            context.close()
    return out


def serve_page(chromium, seconds: float, work: Path) -> dict:
    port = browser.free_port()
    cmd = [sys.executable, "-m", "fer", "serve", "--port", str(port)]
    out = {}
    with browser.server(cmd, f"http://127.0.0.1:{port}", work / "serve.log", ready="/healthz",
                        env={"TF_CPP_MIN_LOG_LEVEL": "3"}) as url:
        for mode in ("server", "browser"):
            context = chromium.new_context()
            page = context.new_page()
            page.goto(f"{url}/")
            if mode == "browser":
                page.select_option("#runtime", "browser")
                page.wait_for_function("() => document.body.dataset.ready === 'true'", timeout=60_000)
            page.click("#camera")
            view = page.locator("#live .fer-live")
            browser.wait_for_predictions(view, 10, 120)
            out[mode] = sample(view, seconds)
            context.close()
    return out


def widget(chromium, seconds: float, work: Path) -> dict:
    root = work / "lab"
    root.mkdir()
    runs = {"browser_lite": "runtime='browser'", "browser_main": "runtime='browser', classifier='main'",
            "kernel": "runtime='kernel'"}
    for name, args in runs.items():
        source = f"from fer.apps import webcam\ncam = webcam.Webcam({args})\ncam"
        (root / f"{name}.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "execution_count": None,
            "id": "0", "metadata": {}, "outputs": [], "source": source}], "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}))
    out = {}
    with browser.jupyter("lab", root, work / "lab.log") as url:
        for name in runs:
            context = chromium.new_context(viewport={"width": 1300, "height": 1100})
            page = context.new_page()
            kernel = browser.run_all(page, url, "lab", f"{name}.ipynb")
            view = page.locator(".fer-live").first
            browser.wait_for_predictions(view, 10, 180)
            count = "import json, time; print(json.dumps([cam.browser_reports, time.monotonic()]))"
            before = json.loads(browser.kernel_run(root, kernel, count))
            out[name] = sample(view, seconds)
            if name.startswith("browser"):  # reports reaching the kernel per second (at most report_fps)
                after = json.loads(browser.kernel_run(root, kernel, count))
                out[name]["reports_per_s"] = round((after[0] - before[0]) / (after[1] - before[1]), 2)
            browser.kernel_run(root, kernel, "cam.stop()")
            context.close()
    return out


def shipped_bytes() -> dict:
    from fer.apps.web import RUNTIME_DIR

    runtime = {p.name: p.stat().st_size for p in sorted(RUNTIME_DIR.iterdir()) if p.is_file()}
    js = {n: (ROOT / "fer" / "static" / n).stat().st_size for n in ("faces.js", "browser.js")}
    return {"runtime_files": runtime, "runtime_total": sum(runtime.values()), "new_js": js,
            "package_growth": sum(runtime.values()) + sum(js.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="page,serve,widget")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    parts = {"page": static_page, "serve": serve_page, "widget": widget}
    runs: dict[str, list] = {k: [] for k in args.only.split(",")}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        work = Path(tmp)
        chromium = browser.launch(p, camera(work / "camera.y4m"))
        for r in range(args.repeats):
            for part in runs:
                run_dir = work / f"{part}-{r}"
                run_dir.mkdir()
                runs[part].append(parts[part](chromium, args.seconds, run_dir))
                print(f"# {part} run {r + 1}: {json.dumps(runs[part][-1])}", flush=True)
        chromium.close()
    result = {"bytes": shipped_bytes(), "camera": f"{CAMERA[0]}x{CAMERA[1]} at {CAMERA_FPS} fps", "medians": {}}
    for part, results in runs.items():
        result["medians"][part] = _medians(results)
    print(json.dumps(result, indent=2))
    return 0


def _medians(results: list[dict]):
    """Median of each number across repeats (nested dicts alike); strings from the first run."""
    first = results[0]
    if isinstance(first, dict):
        return {k: _medians([r[k] for r in results]) for k in first}
    if isinstance(first, int | float):
        return statistics.median(results)
    return first


if __name__ == "__main__":
    raise SystemExit(main())
