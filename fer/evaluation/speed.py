"""Speed of the inference path, and of the PyPI ``fer`` package on the same frames.

:func:`latency` is notebook 03's table: median milliseconds per call of a classifier per batch size.

``python -m fer bench`` (and ``benchmarks/pipeline.py``) measure what a user waits for:
classifier latency at batch 1 (p50/p95) and throughput at batch 256, face detection per
frame, and :func:`fer.analyze` per 640x480 frame. ``compare_fer=True`` sends the very same
frames through ``fer.fer.FER().detect_emotions`` (Haar + its Keras/TFLite CNN) in a side venv
(``.bench-venv``: OpenCV 4.x, since that package needs ``CascadeClassifier``; its name also
clashes with ours), made on first use, and reports the ratio. Frames come from
``shared/media/woman2.mp4`` resized to 640x480, or, without ``shared/``, the astronaut photo the
package ships (:func:`fer.inference.faces.sample_photo`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from fer.config import HOME, SHARED_DIR

SIDE_VENV = HOME / ".bench-venv"  # the checkout, or the user's cache folder when installed
#: What the side venv installs on top of this venv's packages (seen through a .pth file).
SIDE_REQUIREMENTS = ("opencv-python-headless>=4.8,<5", "setuptools<81", "requests")
PYPI_FER = "fer==25.10.3"

PYPI_FER_SCRIPT = r"""
import json, sys, time, logging
import numpy as np
from fer.fer import FER  # `from fer import FER` fails in this release
logging.disable(logging.INFO)
frames = np.load(sys.argv[1])
detector = FER()
for f in frames[:3]:
    detector.detect_emotions(f)
times, found = [], 0
for f in frames:
    t = time.perf_counter(); faces = detector.detect_emotions(f); times.append(time.perf_counter() - t)
    found += bool(faces)
import cv2
print(json.dumps({"ms": [1e3 * t for t in times], "frames_with_faces": found, "opencv": cv2.__version__}))
"""


def latency(classifier, faces: np.ndarray, batch_sizes=(1, 32, 256), repeats: int = 20, tta=None):
    """Median milliseconds per call and images/s of ``classifier.predict_proba`` per batch size.

    The first call traces the model and is excluded; each size is timed ``repeats`` times
    (fewer for large batches) so a loaded machine shows as spread, not as a single bad number.
    """
    import pandas as pd

    faces = np.asarray(faces)
    rows = []
    for bs in batch_sizes:
        batch = np.resize(faces, (bs, *faces.shape[1:]))
        classifier.predict_proba(batch, tta=tta)  # warm-up: tracing
        n = max(3, repeats if bs <= 32 else repeats // 4)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            classifier.predict_proba(batch, tta=tta)
            times.append(time.perf_counter() - start)
        med = float(np.median(times))
        rows.append({"batch": bs, "ms_per_call": 1000 * med, "ms_per_image": 1000 * med / bs,
                     "images_per_s": bs / med, "calls": n})
    return pd.DataFrame(rows).set_index("batch")


def side_venv(path: Path = SIDE_VENV) -> Path:
    """The side venv's python, creating the venv first if needed (pip, a few minutes)."""
    python = path / "bin" / "python"
    if python.exists():
        return python
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter this venv was made from
    subprocess.run([base, "-m", "venv", str(path)], check=True)
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    # this venv's packages (TensorFlow, NumPy...) without installing them twice; the side
    # venv's own OpenCV 4.x and the PyPI fer come first on sys.path
    (site / "zz_main_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *SIDE_REQUIREMENTS], check=True)
    subprocess.run([*pip, "--no-deps", PYPI_FER], check=True)
    return python


def frames_640x480(n: int) -> list[np.ndarray]:
    """``n`` BGR 640x480 frames: the sample video if ``shared/`` is there, else one photo."""
    import cv2

    video = SHARED_DIR / "media" / "woman2.mp4"
    out: list[np.ndarray] = []
    if video.exists():
        cap = cv2.VideoCapture(str(video))
        while len(out) < n:
            ok, frame = cap.read()
            if not ok:
                break
            out.append(cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA))
    if not out:
        from fer.inference.faces import sample_photo

        out = [cv2.resize(sample_photo(), (640, 480))] * n
    return out


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))}


def _time(fn, repeats: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ms.append(1e3 * (time.perf_counter() - t))
    return ms


def classifier_speed(clf, repeats: int = 300) -> dict:
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, 48, 48), dtype=np.uint8)
    many = rng.integers(0, 256, (256, 48, 48), dtype=np.uint8)
    batch = _time(lambda: clf.predict_proba(many), max(3, repeats // 30), warmup=2)
    return {"backend": clf.backend, "batch1_ms": _percentiles(_time(lambda: clf.predict_proba(one), repeats)),
            "batch256_faces_per_s": 256 / (float(np.median(batch)) / 1e3)}


def media_recall(detector: str = "auto") -> dict | None:
    """Photos in ``shared/media`` (one face each) where a face is found; None without them."""
    import cv2

    from fer.inference import faces

    photos = sorted((SHARED_DIR / "media").glob("*.jpg"))
    if not photos:
        return None
    missed = [p.name for p in photos if not faces.detect(cv2.imread(str(p)), detector)]
    return {"photos": len(photos), "found": len(photos) - len(missed), "missed": missed}


def run_pypi_fer(frames: list[np.ndarray]) -> dict:
    """Time ``FER().detect_emotions`` on ``frames`` in the side venv."""
    python = side_venv()
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "frames.npy", np.stack(frames))
        done = subprocess.run([str(python), "-c", PYPI_FER_SCRIPT, str(Path(tmp) / "frames.npy")],
                              capture_output=True, text=True, cwd=tmp)
    if done.returncode != 0:
        raise RuntimeError(f"the PyPI fer run failed:\n{done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {**_percentiles(out["ms"]), "frames_with_faces": out["frames_with_faces"], "opencv": out["opencv"]}


def run(frames: int = 60, model: str | None = None, compare_fer: bool = False, detector: str = "auto") -> dict:
    from fer.inference import faces, predict

    clf = predict.load_classifier(model) if model else predict.default_classifier()
    det = faces.detector(detector)
    video = frames_640x480(frames)
    results: dict = {"frames": len(video), "frame_size": "640x480", "detector": det.name,
                     "classifier": classifier_speed(clf)}
    results["detector_ms"] = _percentiles([t for f in video for t in _time(lambda f=f: det.detect(f), 1, 0)])
    predict.analyze(video[0], classifier=clf, detector=detector)
    ms, found = [], 0
    for f in video:
        t = time.perf_counter()
        found += bool(predict.analyze(f, classifier=clf, detector=detector))
        ms.append(1e3 * (time.perf_counter() - t))
    results["analyze_ms"] = {**_percentiles(ms), "frames_with_faces": found}
    results["media_recall"] = media_recall(detector)
    if compare_fer:
        results["pypi_fer_ms"] = run_pypi_fer(video)
        results["speedup_p50"] = results["pypi_fer_ms"]["p50"] / results["analyze_ms"]["p50"]
    return results


def report(r: dict) -> str:
    c = r["classifier"]
    lines = [
        f"classifier ({c['backend']}): batch 1 p50 {c['batch1_ms']['p50']:.2f} ms, p95 {c['batch1_ms']['p95']:.2f} ms; "
        f"batch 256 {c['batch256_faces_per_s']:.0f} faces/s",
        f"detector ({r['detector']}): p50 {r['detector_ms']['p50']:.2f} ms, p95 {r['detector_ms']['p95']:.2f} ms per {r['frame_size']} frame",
        f"fer.analyze: p50 {r['analyze_ms']['p50']:.2f} ms, p95 {r['analyze_ms']['p95']:.2f} ms per frame; "
        f"faces in {r['analyze_ms']['frames_with_faces']}/{r['frames']} frames",
    ]
    m = r.get("media_recall")
    if m:
        lines.append(f"shared/media photos with a face found: {m['found']}/{m['photos']}"
                     + (f" (missed: {', '.join(m['missed'])})" if m["missed"] else ""))
    if "pypi_fer_ms" in r:
        p = r["pypi_fer_ms"]
        lines.append(f"PyPI fer FER().detect_emotions (OpenCV {p['opencv']}): p50 {p['p50']:.2f} ms, "
                     f"p95 {p['p95']:.2f} ms; faces in {p['frames_with_faces']}/{r['frames']} frames")
        lines.append(f"fer.analyze is {r['speedup_p50']:.1f}x faster (p50)")
    return "\n".join(lines)
