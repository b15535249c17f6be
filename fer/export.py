"""Exported classifiers: write TFLite (float32/float16/int8) and ONNX files, and run them.

Why: a plain Keras call costs ~3 ms per face on a 2-core CPU, mostly framework overhead; the
same model under LiteRT takes ~0.5 ms (``python -m fer bench``). So ``fer.load_classifier``
runs ``.keras`` models through a TFLite copy converted once and cached under
``MODEL_CACHE_DIR`` (keyed by the file's sha256), and loads exported ``.tflite``/``.onnx``
files directly. Every exported model takes ``(N, crop, crop, 1)`` float32 pixels 0-255, like
the Keras model, and returns ``(N, 7)`` probabilities.

``int8`` quantises weights and activations with a representative set of real faces
(FER2013 when it can be located, else the bundled generated data, which calibrates worse);
inputs and outputs stay float32 so every runtime is called the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from fer.config import PROCESSED_DIR

log = logging.getLogger(__name__)

#: Format name → file suffix. ``tflite`` is float32, the others say their quantisation.
FORMATS = {"tflite": ".tflite", "tflite-fp16": ".fp16.tflite", "tflite-int8": ".int8.tflite", "onnx": ".onnx"}
#: Converted copies of ``.keras`` models (derived data: safe to delete).
MODEL_CACHE_DIR = Path(os.environ.get("FER_MODEL_CACHE", PROCESSED_DIR / "models"))


def _crop(model) -> int:
    return int(model.input_shape[1])


def to_tflite(model, quantize: str | None = None, representative: np.ndarray | None = None) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer; ``quantize`` is None, "float16" or "int8"."""
    import tensorflow as tf

    from fer.models import float32_copy

    model = float32_copy(model)  # a mixed_bfloat16 model's bf16 ops are not TFLite builtins
    # from_keras_model: converting a traced tf.function instead gave NaN outputs (TF 2.21)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 quantisation needs representative faces")
        faces = _views(representative, _crop(model))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([faces[i : i + 1]] for i in range(len(faces)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif quantize is not None:
        raise ValueError(f"quantize must be None, 'float16' or 'int8', not {quantize!r}")
    # Keras prints "Saved artifact at ..." and TF logs "Assets written to ..." while converting:
    # keep stdout clean for --json users and the reports.
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            # TF 2.21 warns during every int8 conversion that no input mean/std was given: those
            # statistics are for converting quantisation-aware graphs without calibration data.
            # Here the ranges come from the representative faces and the input stays float32.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            return converter.convert()
    finally:
        tf_log.setLevel(level)


def to_onnx(model, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write an ONNX file with tf2onnx (input ``face``: ``(N, crop, crop, 1)`` float32)."""
    import tensorflow as tf
    import tf2onnx

    from fer.models import float32_copy

    model = float32_copy(model)
    crop = _crop(model)
    fn = tf.function(lambda x: model(x, training=False))
    spec = (tf.TensorSpec([None, crop, crop, 1], tf.float32, name="face"),)
    tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset, output_path=str(path))
    return Path(path)


def _views(faces: np.ndarray, crop: int) -> np.ndarray:
    """uint8 ``(N, 48, 48)`` faces → centre-cropped float32 ``(N, crop, crop, 1)``."""
    from fer.predict import as_faces, tta_views

    return tta_views(as_faces(faces), crop, None)[0][..., None].astype(np.float32)


def _faces(split: str) -> tuple[np.ndarray, str]:
    """A split of real faces: FER2013 (``$FER_DATA``/``data/raw``), else the team's 1,610-face
    sample CSV in ``shared/``, else generated data."""
    from fer import data
    from fer.config import SHARED_DIR

    try:
        return data.load(data.locate(download_ok=False))[split][0], f"FER2013 {split}"
    except (data.DataError, KeyError):
        pass
    sample = SHARED_DIR / "data" / "fer2013_sample.csv"
    if sample.exists():
        return data.load(sample, cache=False)[split][0], f"FER2013 sample {split}"
    return data.synthetic()[split][0], f"generated {split} (no FER2013 found: approximate)"


def _pick(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    return x[np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False)]


def representative_faces(n: int = 300, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n`` training faces for int8 calibration, and where they came from."""
    x, where = _faces("train")
    return _pick(x, n, seed), where


def check_faces(n: int = 500, seed: int = 1) -> np.ndarray:
    """``n`` held-out faces to check exports on (PublicTest)."""
    return _pick(_faces("public_test")[0], n, seed)


def export(model_path: str | os.PathLike | None = None, out_dir: str | os.PathLike = "exported",
           formats: Iterable[str] = tuple(FORMATS), representative: np.ndarray | None = None) -> dict[str, Path]:
    """Write ``<out_dir>/<model name><suffix>`` for each format; return format → path."""
    from fer.predict import bundled_path, load_classifier

    clf = load_classifier(model_path, backend="keras")
    name = Path(model_path or bundled_path()).stem
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        path = out / f"{name}{FORMATS[fmt]}"
        if fmt == "onnx":
            to_onnx(clf.model, path)
        else:
            quantize = {"tflite": None, "tflite-fp16": "float16", "tflite-int8": "int8"}[fmt]
            if quantize == "int8" and representative is None:
                representative, where = representative_faces()
                log.info("int8 calibration on %d faces from %s", len(representative), where)
            path.write_bytes(to_tflite(clf.model, quantize, representative))
        written[fmt] = path
        _write_card(path, clf.card, fmt)
    return written


def _write_card(path: Path, source_card: dict, fmt: str) -> None:
    """``<file>.json`` (e.g. ``main.onnx.json``) beside the export: the source model's card, re-keyed to this file, so
    ``load_classifier`` verifies it like a ``.keras`` file and tools can read where it came from."""
    import json

    from fer.predict import card_path, sha256

    card = {**source_card, "export": {"format": fmt, "source_sha256": source_card.get("sha256")},
            "sha256": sha256(path), "size_bytes": path.stat().st_size}
    card_path(path).write_text(json.dumps(card, indent=2) + "\n")


def parity(reference, other, faces: np.ndarray) -> dict[str, float]:
    """Top-1 agreement and max |Δp| between two classifiers on the same faces."""
    a, b = reference.predict_proba(faces), other.predict_proba(faces)
    return {"n": len(faces), "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "max_abs_diff": float(np.abs(a - b).max()), "mean_abs_diff": float(np.abs(a - b).mean())}


# --------------------------------------------------------------------------- runtimes


class LiteRuntime:
    """A TFLite model under LiteRT (``tf.lite`` if LiteRT is missing); thread-safe.

    Two interpreters: one thread for a few faces (lowest latency, steady under load), all
    cores for big batches (throughput).
    """

    name = "litert"

    def __init__(self, model: bytes | str | os.PathLike):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - LiteRT is a dependency
            from tensorflow.lite import Interpreter  # type: ignore[no-redef]
        kw = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
        self._make = lambda threads: Interpreter(num_threads=threads, **kw)
        self._small = self._make(1)
        detail = self._small.get_input_details()[0]
        self.crop = int(detail["shape"][1])
        self._large = None
        self._lock = threading.Lock()
        self._shapes: dict[int, int] = {}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            if len(batch) <= 16:
                it = self._small
            else:
                if self._large is None:
                    self._large = self._make(os.cpu_count() or 1)
                it = self._large
            inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
            if self._shapes.get(id(it)) != len(batch):
                it.resize_tensor_input(inp, [len(batch), self.crop, self.crop, 1])
                it.allocate_tensors()
                self._shapes[id(it)] = len(batch)
            it.set_tensor(inp, np.ascontiguousarray(batch, np.float32))
            it.invoke()
            return it.get_tensor(out).copy()


class OnnxRuntime:
    """An ONNX model under onnxruntime (CPU)."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name, self.crop = inp.name, int(inp.shape[1])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


def cache_path(sha: str) -> Path:
    """Where the TFLite copy of the ``.keras`` file with this sha256 is cached."""
    return MODEL_CACHE_DIR / f"{sha[:20]}.tflite"


def cached_tflite(model, sha: str | None) -> bytes:
    """The float32 TFLite copy of a Keras model, converted once per model file (by sha256)."""
    path = cache_path(sha) if sha else None
    if path is not None and path.exists():
        return path.read_bytes()
    blob = to_tflite(model)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            tmp.replace(path)
        except OSError as err:  # read-only checkout: convert again next time
            log.warning("could not cache the converted model in %s (%s)", path.parent, err)
    return blob


def runtime_for(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A runtime for an exported file, chosen by its suffix."""
    if path.suffix == ".tflite":
        return LiteRuntime(path)
    if path.suffix == ".onnx":
        return OnnxRuntime(path)
    raise ValueError(f"{path}: not an exported model (.tflite or .onnx)")
