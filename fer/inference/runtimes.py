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
import queue
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer.config import PROCESSED_DIR
from fer.inference.preprocess import model_input
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

    from fer.inference.dtypes import float32_copy

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


class InterpreterPool:
    """Up to ``size`` copies of one interpreter, each used by one thread at a time.

    LiteRT releases the GIL while it runs, so two request threads on two interpreters use two
    cores (562 against 253 single-thread invokes/s of the shipped model on this 2-core machine),
    where one interpreter behind a lock would make them queue. Copies are made on demand, so a
    single-threaded caller (the CLI, a notebook) only ever makes one.
    """

    def __init__(self, make: Callable[[], object], size: int | None = None, first: object | None = None):
        self._make = make
        self.size = max(1, size or os.cpu_count() or 1)
        self._free: queue.LifoQueue = queue.LifoQueue()  # the warmest copy first
        self._made = 0 if first is None else 1
        if first is not None:
            self._free.put(first)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def use(self):
        try:
            item = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = self._made < self.size
                self._made += grow
            try:
                item = self._make() if grow else self._free.get()
            except BaseException:
                with self._lock:
                    self._made -= grow
                raise
        try:
            yield item
        finally:
            self._free.put(item)


class LiteRuntime:
    """A TFLite model under LiteRT (``tf.lite`` if LiteRT is missing); thread-safe.

    A few faces go to a pool of single-thread interpreters (lowest latency, and concurrent
    callers run in parallel, one core each); big batches go to one interpreter on all cores.
    """

    name = "litert"

    def __init__(self, model: bytes | str | os.PathLike, pool_size: int | None = None):
        Interpreter = interpreter_class()
        kw = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
        self._make = lambda threads: _Sized(Interpreter(num_threads=threads, **kw))
        first = self._make(1)
        self.crop = int(first.interpreter.get_input_details()[0]["shape"][1])
        self._small = InterpreterPool(lambda: self._make(1), pool_size, first=first)
        self._large = InterpreterPool(lambda: self._make(os.cpu_count() or 1), 1)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with (self._small if len(batch) <= 16 else self._large).use() as it:
            probs = it.run(np.ascontiguousarray(batch, np.float32), self.crop)
        # Rows sum to 1 again: a file with float16 constants (the shipped main.tflite) holds an
        # ensemble's 1/3 as 0.33325, which scales every row by 0.99976 and changes no ranking.
        total = probs.sum(axis=1, keepdims=True)
        return np.divide(probs, total, out=probs, where=total > 0) if probs.ndim == 2 else probs


class _Sized:
    """An interpreter and the batch size its tensors are allocated for."""

    _first = True  # the process's first allocation applies XNNPACK, and LiteRT says so on stderr

    def __init__(self, interpreter):
        self.interpreter, self.batch = interpreter, None
        self.input = interpreter.get_input_details()[0]["index"]
        self.output = interpreter.get_output_details()[0]["index"]

    def run(self, batch: np.ndarray, crop: int) -> np.ndarray:
        it = self.interpreter
        if self.batch != len(batch):
            it.resize_tensor_input(self.input, [len(batch), crop, crop, 1])
            with filtered_stderr() if _Sized._first else contextlib.nullcontext():
                it.allocate_tensors()
            _Sized._first, self.batch = False, len(batch)
        it.set_tensor(self.input, batch)
        it.invoke()
        return it.get_tensor(self.output).copy()


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


def cached_tflite(model, sha: str | None, name: str = "the model") -> bytes:
    """The float32 TFLite copy of a Keras model, converted once per model file (by sha256).

    A conversion says so in one line on stderr and nothing else (the converter's own log is
    silenced: :func:`fer.quiet.silenced`). The shipped models never come here: they ship their
    TFLite files (``fer.inference.predict.shipped_tflite``)."""
    from fer.quiet import silenced

    path = cache_path(sha) if sha else None
    if path is not None and path.exists():
        return path.read_bytes()
    where = f"; cached in {path.parent}" if path is not None else ""
    print(f"converting {name} to TFLite for fast inference, once{where}", file=sys.stderr, flush=True)
    with silenced():
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
