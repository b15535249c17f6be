"""Export: write a model as TFLite (float32/float16/int8) and ONNX files, each with its card,
and check an export against its source (``python -m fer export``).

Conversion to TFLite and the runtimes that run the files are in :mod:`fer.inference.runtimes`;
``fer.load_classifier`` loads exported ``.tflite``/``.onnx`` files directly. Every exported
model takes ``(N, crop, crop, 1)`` float32 pixels 0-255, like the Keras model, and returns
``(N, 7)`` probabilities.

``int8`` quantises weights and activations with a representative set of real faces
(FER2013 when it can be located, else the bundled generated data, which calibrates worse);
inputs and outputs stay float32 so every runtime is called the same way.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fer.inference import cards
from fer.inference.predict import bundled_path, load_classifier
from fer.inference.runtimes import to_tflite

log = logging.getLogger(__name__)

#: Format name → file suffix. ``tflite`` is float32, the others say their quantisation.
FORMATS = {"tflite": ".tflite", "tflite-fp16": ".fp16.tflite", "tflite-int8": ".int8.tflite", "onnx": ".onnx"}


def to_onnx(model, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write an ONNX file with tf2onnx (input ``face``: ``(N, crop, crop, 1)`` float32)."""
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError:
        raise ImportError("ONNX export needs tf2onnx: pip install 'fer-study[export]' (or choose --formats tflite)") from None

    from fer.inference.dtypes import float32_copy

    model = float32_copy(model)
    crop = int(model.input_shape[1])
    fn = tf.function(lambda x: model(x, training=False))
    spec = (tf.TensorSpec([None, crop, crop, 1], tf.float32, name="face"),)
    tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset, output_path=str(path))
    return Path(path)


def _faces(split: str) -> tuple[np.ndarray, str]:
    """A split of real faces: FER2013 (``$FER_DATA``/``data/raw``), else the team's 1,610-face
    sample CSV in ``shared/``, else generated data."""
    from fer import data
    from fer.config import SHARED_DIR
    from fer.data import sources

    try:
        return data.load(sources.locate(download_ok=False))[split][0], f"FER2013 {split}"
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
    formats = list(formats)
    if "onnx" in formats and importlib.util.find_spec("tf2onnx") is None:  # before anything is written
        raise ImportError("ONNX export needs tf2onnx: pip install 'fer-study[export]' (or choose --formats tflite)")
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


def ship_tflite(model_path: str | os.PathLike) -> Path:
    """Write the TFLite file a shipped ``.keras`` model ships with (``main.keras`` → ``main.tflite``)
    and record it in the model's card (``tflite``: file, sha256, size, weights), so inference on
    the shipped models runs it directly: no conversion, no TensorFlow, nothing written at run time.

    A model whose weights are float16 values (``weights_dtype``) ships float16 TFLite weights:
    half the size and, expanded to float32 when the interpreter starts, the same weights."""
    from fer.quiet import silenced

    path = Path(model_path)
    clf = load_classifier(path, backend="keras")
    weights = "float16" if clf.card.get("weights_dtype") == "float16" else "float32"
    out = path.with_suffix(".tflite")
    with silenced():
        blob = to_tflite(clf.model, "float16" if weights == "float16" else None)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    tmp.replace(out)
    card = {**clf.card, "tflite": {"file": out.name, "sha256": cards.sha256(out), "size_bytes": out.stat().st_size,
                                   "weights": weights}}
    cards.write(path, card)
    return out


def _write_card(path: Path, source_card: dict, fmt: str) -> None:
    """``<file>.json`` (e.g. ``main.onnx.json``) beside the export: the source model's card, re-keyed to this file, so
    ``load_classifier`` verifies it like a ``.keras`` file and tools can read where it came from."""
    card = {**source_card, "export": {"format": fmt, "source_sha256": source_card.get("sha256")}}
    cards.write(path, card)


def parity(reference, other, faces: np.ndarray) -> dict[str, float]:
    """Top-1 agreement and max |Δp| between two classifiers on the same faces."""
    a, b = reference.predict_proba(faces), other.predict_proba(faces)
    return {"n": len(faces), "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "max_abs_diff": float(np.abs(a - b).max()), "mean_abs_diff": float(np.abs(a - b).mean())}
