"""The web app under load, on 127.0.0.1: where a request's time goes, then servers side by side.

1. **Where the time goes**, in this process, one request at a time (median of ``--repeats``):
   decoding the JPEG, face detection, the crop, classification, the JSON, and the whole request
   through Flask's test client (multipart parsing included, no socket).
2. **Servers side by side**: for each configuration, ``python -m fer serve`` is started on a free
   port, warmed with 3 s of load, then ``--clients`` clients (fer.apps.loadtest: keep-alive
   connections, one thread each) post the same 640x480 one-face JPEG for ``--seconds``;
   requests/s, p50/p95 and errors. Configurations alternate round by round (this machine's speed
   drifts), and the summary is the median over ``--rounds``.
3. **Two MJPEG viewers at once** on the default server with ``--source`` (``shared/media/woman2.mp4``,
   else a generated clip): frames per second each, alone and while the uploads' load runs.

With gunicorn installed (``pip install gunicorn``; not a dependency), a ``gunicorn`` row runs
``fer.apps.serve:create_app()`` under it with one process per core, for the choice of server.

``--tree DIR`` adds a row for another checkout's ``python -m fer serve`` as it was (``git worktree
add /tmp/old <commit>``), for before/after figures.

Usage: python benchmarks/serve_load.py [--seconds 30] [--rounds 3] [--clients 8] [--only default,dev] [--tree DIR]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from fer.apps import loadtest  # noqa: E402
from fer.config import SHARED_DIR  # noqa: E402

#: name → extra ``python -m fer serve`` arguments
CONFIGS = {
    "dev": ["--debug"],  # Flask's development server, threaded, inference in its threads
    "waitress": ["--workers", "0"],  # waitress, inference in its threads
    "default": [],  # waitress and one worker process per core (what `python -m fer serve` runs)
}
#: The alternative production server, when installed (not a dependency): one process per core,
#: each with 4 threads running the app in-process; it cannot share one camera between processes.
GUNICORN = ["-m", "gunicorn", "-w", str(os.cpu_count() or 1), "-k", "gthread", "--threads", "4",
            "fer.apps.serve:create_app()"]


def face_jpeg() -> bytes:
    """``shared/media/happy.jpg`` (else the astronaut) fitted into a 640x480 frame, as JPEG q85."""
    photo = SHARED_DIR / "media" / "happy.jpg"
    if photo.is_file():
        image = cv2.imread(str(photo))
    else:
        from skimage import data as skdata

        image = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    scale = min(640 / image.shape[1], 480 / image.shape[0])
    image = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[: image.shape[0], : image.shape[1]] = image
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes()


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def stages(raw: bytes, repeats: int) -> dict[str, float]:
    import io

    import fer
    from fer.apps import serve, uploads
    from fer.config import IMAGE_SIZE
    from fer.inference import faces, predict

    image = uploads.decode_upload(raw)
    found = faces.detect(image)
    gray = faces.to_gray(image)
    crops = np.stack([faces.crop(gray, f, IMAGE_SIZE) for f in found])
    clf = predict.default_classifier()
    result = fer.analyze(image)
    client = serve.create_app().test_client()

    def post():
        client.post("/api/predict", data={"image": (io.BytesIO(raw), "photo.jpg")}, content_type="multipart/form-data")

    return {
        "decode (Pillow header + cv2.imdecode)": _median_ms(lambda: uploads.decode_upload(raw), repeats),
        "detect (BlazeFace front)": _median_ms(lambda: faces.detect(image), repeats),
        "crop (48x48, eyes level)": _median_ms(lambda: [faces.crop(gray, f, IMAGE_SIZE) for f in found], repeats),
        "classify (shipped model, LiteRT)": _median_ms(lambda: clf.predict_proba(crops), repeats),
        "JSON (check + encode)": _median_ms(lambda: json.dumps(predict.jsonable_faces(result)), repeats),
        "whole request, Flask test client": _median_ms(post, repeats),
    }


def start(args: list[str], port: int, extra: list[str] = ()) -> subprocess.Popen:
    env, cwd = os.environ, None
    if args == GUNICORN:
        cmd = [sys.executable, *GUNICORN[:-1], "-b", f"127.0.0.1:{port}", GUNICORN[-1]]
    elif args and args[0].startswith("tree="):  # another checkout's `python -m fer serve`, as it was
        tree = args[0].removeprefix("tree=")
        env, cwd = {**os.environ, "PYTHONPATH": tree}, tree  # `-m` puts the working folder first on sys.path
        cmd = [sys.executable, "-m", "fer", "serve", "--port", str(port)]
    else:
        cmd = [sys.executable, "-m", "fer", "serve", "--port", str(port), *args, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"{' '.join(cmd)} did not start") from None
            time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its children so far (Linux /proc); 0 elsewhere."""
    total = 0.0
    try:
        pids = [pid] + [int(p) for p in subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                                                       capture_output=True, text=True).stdout.split()]
        for p in pids:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0
    return total


def viewer_fps(port: int, seconds: float, out: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/video_feed")
    response = conn.getresponse()
    start, frames = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        line = response.fp.readline()
        if not line:
            break
        frames += line.startswith(b"--frame")
    out.append(frames / (time.monotonic() - start))
    conn.close()


def viewers(port: int, seconds: float, n: int = 2) -> list[float]:
    rates: list[float] = []
    threads = [threading.Thread(target=viewer_fps, args=(port, seconds, rates)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=100, help="requests per stage timing")
    parser.add_argument("--only", help="comma-separated configurations (default: all: " + ", ".join(CONFIGS) + ")")
    parser.add_argument("--port", type=int, default=5077)
    parser.add_argument("--tree", action="append", default=[], type=Path,
                        help="also run another checkout's server as it was (e.g. a git worktree of an older commit)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    try:
        import gunicorn  # noqa: F401

        CONFIGS["gunicorn"] = GUNICORN
    except ImportError:
        print("(gunicorn is not installed: its row is left out)")
    for tree in args.tree:
        CONFIGS[f"tree:{tree.name}"] = [f"tree={tree.resolve()}"]
    names = args.only.split(",") if args.only else list(CONFIGS)
    raw = face_jpeg()
    results: dict = {"image_bytes": len(raw), "clients": args.clients, "seconds": args.seconds}

    print(f"1. where one request's time goes (640x480 JPEG, {len(raw) // 1024} KB, one face; median of {args.repeats})")
    results["stages_ms"] = stages(raw, args.repeats)
    for name, ms in results["stages_ms"].items():
        print(f"   {name:<40}{ms:7.2f} ms")

    print(f"\n2. {args.clients} clients for {args.seconds:g} s, {args.rounds} alternating rounds")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names:
            proc = start(CONFIGS[name], args.port)
            try:
                loadtest.load(f"http://127.0.0.1:{args.port}", raw, clients=args.clients, seconds=3)  # warm (every worker)
                cpu0 = cpu_seconds(proc.pid)
                out = loadtest.load(f"http://127.0.0.1:{args.port}", raw, clients=args.clients, seconds=args.seconds)
                out["server_cpu_ms_per_request"] = 1000 * (cpu_seconds(proc.pid) - cpu0) / max(1, out["requests"])
            finally:
                stop(proc)
            runs[name].append(out)
            print(f"   round {r + 1} {name:<9} {loadtest.report(out)}", flush=True)
    results["servers"] = {}
    print("\n   median over rounds:")
    for name, rs in runs.items():
        summary = {k: statistics.median(x[k] for x in rs)
                   for k in ("requests_per_s", "p50_ms", "p95_ms", "server_cpu_ms_per_request")}
        summary["errors"] = sum(x["errors"] for x in rs)
        results["servers"][name] = summary
        print(f"   {name:<9} {summary['requests_per_s']:6.1f} requests/s  p50 {summary['p50_ms']:6.1f} ms  "
              f"p95 {summary['p95_ms']:6.1f} ms  errors {summary['errors']}  "
              f"server CPU {summary['server_cpu_ms_per_request']:.1f} ms per request")

    source = SHARED_DIR / "media" / "woman2.mp4"
    if not source.is_file():
        from fer.apps import demo

        source = demo.astronaut_clip(seconds=6.0, fps=25.0)
    print(f"\n3. two /video_feed viewers at once ({source.name}; default server)")
    proc = start(CONFIGS["default"], args.port, ["--source", str(source)])
    try:
        viewers(args.port, 3)  # warm
        alone = viewers(args.port, min(args.seconds, 15))
        loaded: list[float] = []
        t = threading.Thread(target=lambda: loaded.extend(viewers(args.port, min(args.seconds, 15))))
        t.start()
        under = loadtest.load(f"http://127.0.0.1:{args.port}", raw, clients=args.clients, seconds=min(args.seconds, 15))
        t.join()
    finally:
        stop(proc)
    results["viewers_fps"] = {"alone": alone, "with_upload_load": loaded, "upload_load": under}
    print(f"   alone: {', '.join(f'{v:.1f}' for v in alone)} frames/s")
    print(f"   with {args.clients} clients uploading: {', '.join(f'{v:.1f}' for v in loaded)} frames/s; "
          f"uploads: {loadtest.report(under)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
