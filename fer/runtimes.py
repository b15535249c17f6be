"""Runtimes for converted models: Keras → TFLite conversion, LiteRT and onnxruntime runners,
and the cache of TFLite copies that ``fer.load_classifier`` runs ``.keras`` files through.

Why: a plain Keras call costs ~3 ms per face on a 2-core CPU, mostly framework overhead; the
same model under LiteRT is several times faster (``python -m fer bench``; docs/performance.md).
Every runtime takes ``(N, crop, crop, 1)`` float32 pixels 0-255, like the Keras model, and
returns ``(N, 7)`` probabilities.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer.config import PROCESSED_DIR
from fer.preprocess import model_input
from fer.quiet import filtered_stderr

log = logging.getLogger(__name__)

#: Converted copies of ``.keras`` models (derived data: safe to delete).
MODEL_CACHE_DIR = Path(os.environ.get("FER_MODEL_CACHE", PROCESSED_DIR / "models"))


def interpreter_class():
    """LiteRT's ``Interpreter`` (``ai-edge-litert``), else TensorFlow's own ``tf.lite`` one;
    ImportError when neither is installed. The face detector runs through it too."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite import Interpreter  # type: ignore[no-redef]
    return Interpreter


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
        faces = model_input(representative, int(model.input_shape[1]))
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


class LiteRuntime:
    """A TFLite model under LiteRT (``tf.lite`` if LiteRT is missing); thread-safe.

    Two interpreters: one thread for a few faces (lowest latency, steady under load), all
    cores for big batches (throughput).
    """

    name = "litert"

    def __init__(self, model: bytes | str | os.PathLike):
        Interpreter = interpreter_class()
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
                if id(it) in self._shapes:
                    it.allocate_tensors()
                else:  # the first allocation applies XNNPACK, and LiteRT says so on stderr
                    with filtered_stderr():
                        it.allocate_tensors()
                self._shapes[id(it)] = len(batch)
            it.set_tensor(inp, np.ascontiguousarray(batch, np.float32))
            it.invoke()
            return it.get_tensor(out).copy()


class OnnxRuntime:
    """An ONNX model under onnxruntime (CPU)."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("running an .onnx model needs onnxruntime: pip install 'fer-study[export]'") from None

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
