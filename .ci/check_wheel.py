"""CI: the package installed as a user installs it, from its wheel with the core dependencies only.

Builds the wheel, installs it into a fresh venv (no extras), then from an empty folder elsewhere:
``python -m fer predict`` on a photo, and ``python -m fer serve`` answering ``/healthz`` and one
``/api/predict``, and ``python -m fer export --web`` writing the static demo with the LiteRT.js
runtime's files intact (their pinned sha256). Fails unless TensorFlow was neither installed nor imported, nothing was written
under site-packages, and stderr stayed empty. Prints the install's size and the commands' times
(first and warm ``predict``, ``import fer``): the figures docs/performance.md quotes.

Usage: python .ci/check_wheel.py [--keep DIR]   (run by .ci/run after `make test`)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "keras_tuner", "papermill", "nbconvert", "jupyterlab", "jax")
PROBE = """
import runpy, sys
sys.argv = ["fer", *sys.argv[1:]]
try:
    runpy.run_module("fer", run_name="__main__", alter_sys=True)
except SystemExit as end:
    code = end.code
heavy = [m for m in {heavy!r} if m in sys.modules]
sys.__stdout__.write("IMPORTED " + " ".join(heavy) + "\\n")
sys.exit(code)
"""


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kw)


def must(ok: bool, what: str, out: subprocess.CompletedProcess | None = None) -> None:
    if not ok:
        detail = f"\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}" if out is not None else ""
        sys.exit(f"check_wheel: FAILED: {what}{detail}")
    print(f"check_wheel: ok: {what}", flush=True)


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def files_under(path: Path) -> dict[str, int]:
    return {str(f): f.stat().st_mtime_ns for f in path.rglob("*") if f.is_file()}


def photo(dest: Path) -> Path:
    """A real face: scikit-image's astronaut, written by the project's own environment."""
    out = dest / "astronaut.jpg"
    made = run([sys.executable, "-c", "import cv2, sys; from skimage import data; "
                f"cv2.imwrite({str(out)!r}, cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))"])
    must(made.returncode == 0 and out.exists(), "a test photo (skimage's astronaut)", made)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd, cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    out = run(cmd, cwd=cwd, env=env)
    return time.perf_counter() - start, out


def check_serve(python: Path, image: Path, cwd: Path, env: dict) -> None:
    port = free_port()
    server = subprocess.Popen([str(python), "-m", "fer", "serve", "--port", str(port), "--workers", "0"], cwd=cwd,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                health = json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=2).read())
                break
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(0.2)
        else:
            health = None
        must(bool(health) and health.get("status") == "ok", f"serve answers /healthz ({health})")
        request = urllib.request.Request(f"{base}/api/predict", data=image.read_bytes(),
                                         headers={"Content-Type": "image/jpeg"}, method="POST")
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
        must(len(answer.get("faces", [])) == 1, f"/api/predict finds the face: {answer.get('faces')}")
    finally:
        server.terminate()
        try:
            _, err = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    noise = [ln for ln in err.splitlines() if ln.strip() and "Serving on" not in ln and "http://127.0.0.1" not in ln]
    print("check_wheel: serve's stderr:\n  " + "\n  ".join(err.splitlines()), flush=True)
    must(not any("Traceback" in ln for ln in noise), "serve raised nothing")


def check_web(python: Path, cwd: Path, env: dict) -> None:
    """The static demo from the installed package: the page, the runtime (its files as pinned in its
    SOURCE.json) and the models."""
    import hashlib

    site = cwd / "web-demo"
    out = run([python, "-m", "fer", "export", "--web", site], cwd=cwd, env=env)
    must(out.returncode == 0 and (site / "index.html").is_file(), "export --web writes the static demo", out)
    source = json.loads((site / "static" / "litert" / "SOURCE.json").read_text())
    pins = {name: f["sha256"] for pkg in source["packages"].values() for name, f in pkg["files"].items()}
    bad = [n for n, digest in pins.items()
           if hashlib.sha256((site / "static" / "litert" / n).read_bytes()).hexdigest() != digest]
    must(len(pins) == 4 and not bad, f"the demo's LiteRT.js files match their pinned sha256 {bad}")
    models = sorted(p.name for p in (site / "models").glob("*.tflite"))
    must(models == ["face_detection_back.tflite", "face_detection_front.tflite", "lite.tflite", "main.tflite"],
         f"the demo has the shipped models ({models})")
    print(f"check_wheel: the static demo is {size_mb(site):.1f} MB", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="build in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    top = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fer-wheel-"))
    top.mkdir(parents=True, exist_ok=True)
    try:
        dist, venv, work, cache = top / "dist", top / "venv", top / "elsewhere", top / "user-cache"
        for d in (dist, work, cache):
            d.mkdir(exist_ok=True)
        built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT])
        wheels = sorted(dist.glob("fer_study-*.whl"))
        must(built.returncode == 0 and len(wheels) == 1, f"the wheel builds ({wheels[0].name if wheels else '-'})", built)
        run([sys.executable, "-m", "venv", venv])
        python = venv / "bin" / "python"
        empty = size_mb(venv)  # a bare venv: its own pip (and setuptools, on older Pythons)
        start = time.perf_counter()
        installed = run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheels[0]])
        must(installed.returncode == 0, f"the wheel installs with its core dependencies ({time.perf_counter() - start:.0f} s)",
             installed)
        site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
        absent = run([python, "-c", f"import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in {HEAVY!r}))"])
        must(absent.returncode == 0, f"none of {', '.join(HEAVY)} is installed", absent)
        total = size_mb(venv)
        print(f"check_wheel: core install {total - empty:.0f} MB on disk (the venv: {total:.0f} MB, of which "
              f"{empty:.0f} MB is the bare venv)", flush=True)
        before = files_under(site)
        # a user's machine: HOME's cache folder, nothing of this checkout's environment
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FER_", "PYTHON", "VIRTUAL_ENV"))}
        env |= {"XDG_CACHE_HOME": str(cache), "HOME": str(top)}
        image = photo(work)
        seconds, imported = timed([python, "-c", "import time; t = time.perf_counter(); import fer; "
                                   "print(f'{time.perf_counter() - t:.3f}')"], work, env)
        print(f"check_wheel: import fer {float(imported.stdout or 'nan'):.2f} s", flush=True)
        first, out = timed([python, "-c", PROBE.format(heavy=HEAVY), "predict", image], work, env)
        must(out.returncode == 0 and "happy" in out.stdout, f"predict labels the face ({first:.2f} s, first run)", out)
        must("IMPORTED \n" in out.stdout, "predict imported none of TensorFlow, Keras, keras-tuner, JAX ...", out)
        must(out.stderr == "", "predict wrote nothing to stderr", out)
        warm = sorted(timed([python, "-m", "fer", "predict", image], work, env)[0] for _ in range(3))[1]
        print(f"check_wheel: predict first {first:.2f} s, warm {warm:.2f} s (median of 3)", flush=True)
        check_serve(python, image, work, env)
        check_web(python, work, env)
        after = files_under(site)
        changed = sorted(f for f, t in after.items() if before.get(f) != t)
        must(not changed, f"nothing was written under site-packages {changed[:5]}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
