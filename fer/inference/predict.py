"""Inference: load a trained model (checked against its model card) and classify face crops.

``load_classifier(path=None)`` returns a :class:`Classifier` whose ``predict_proba(faces)``
takes uint8 ``(N, 48, 48)`` FER-style crops and returns float ``(N, 7)`` probabilities in
``fer.CLASSES`` order. Preprocessing is the training one: a centre crop to the model's input
size (read from the model itself), optionally with flip or ten-crop test-time augmentation.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fer.config import CLASSES, IMAGE_SIZE, NUM_CLASSES, WEIGHTS_DIR
from fer.inference import cards, runtimes
from fer.inference.preprocess import as_faces, tta_views

#: The bundled model ``load_classifier()`` loads, in order of preference.
BUNDLED = ("main.keras", "lite.keras")


class ModelFileError(RuntimeError):
    """A model file is missing, corrupted or does not match its model card."""


def bundled_path() -> Path:
    for name in BUNDLED:
        if (WEIGHTS_DIR / name).exists():
            return WEIGHTS_DIR / name
    raise ModelFileError(
        f"no bundled model in {WEIGHTS_DIR} (looked for {', '.join(BUNDLED)}). "
        "Train one with `python -m fer train --profile cpu --ship` or pass a path."
    )


class Classifier:
    """A trained expression classifier. ``predict_proba`` is the whole public contract.

    ``runtime`` (a callable on float32 ``(N, crop, crop, 1)`` batches) replaces the Keras call
    when given: LiteRT or onnxruntime for exported files, the TFLite file a shipped model ships
    with (:func:`shipped_tflite`), or a cached TFLite copy of another Keras model
    (``backend="litert"``, see :mod:`fer.inference.runtimes`), several times faster per face.
    """

    def __init__(self, model=None, card: dict | None = None, path: Path | None = None, runtime=None):
        if model is None and runtime is None:
            raise ValueError("a Classifier needs a Keras model or a runtime")
        self._model = model
        self.card = card or {}
        self.path = path
        self.runtime = runtime
        self.crop = int(runtime.crop if runtime is not None else model.input_shape[1])
        self._fn = None

    @property
    def model(self):
        """The Keras model; loaded on first use when a cached TFLite copy runs inference."""
        if self._model is None and self.path is not None and self.path.suffix == ".keras":
            self._model = _load_keras(self.path)
        return self._model

    @property
    def backend(self) -> str:
        return getattr(self.runtime, "name", "keras") if self.runtime is not None else "keras"

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities of float ``(N, crop, crop)`` views already cut to this model's input
        (0-255; no TTA), e.g. the augmented batches a distilled student trains on."""
        if self.runtime is not None:
            return self.runtime(batch[..., None].astype(np.float32))
        if self._fn is None:
            self._fn = _compiled_forward(self.model)
        return self._fn(batch[..., None].astype(np.float32))

    def predict_proba(self, faces, tta: str | None = None, batch_size: int = 256) -> np.ndarray:
        faces = as_faces(faces)
        if len(faces) == 0:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        views = tta_views(faces, self.crop, tta)
        flat = views.reshape(-1, self.crop, self.crop)
        out = np.concatenate([self.forward(flat[i : i + batch_size]) for i in range(0, len(flat), batch_size)])
        return out.reshape(len(views), len(faces), NUM_CLASSES).mean(axis=0).astype(np.float32)

    def predict(self, faces, tta: str | None = None) -> np.ndarray:
        """Class indices into ``fer.CLASSES``."""
        return self.predict_proba(faces, tta=tta).argmax(axis=1)


def _compiled_forward(model):
    """``model``'s inference as one compiled call on a float32 NHWC batch, made once.

    Under TensorFlow a traced ``tf.function`` (~10x less per-call overhead than ``model.predict``).
    Under JAX a jitted ``stateless_call`` with the weights as arguments: ``predict_on_batch``
    gathers every variable into a state and writes it back into the model on each call, about
    1.1 ms a call for the shipped ensemble on a 2-core Xeon (4.3-4.7 ms against 3.2-3.5 ms at
    batch 1, the same outputs; ``benchmarks/teacher_forward.py``), and an online distillation
    teacher is called once per training batch. PyTorch: ``predict_on_batch`` (no such state
    round trip there).
    """
    import keras

    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
        traced = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        return lambda x: traced(tf.constant(x)).numpy()
    if name == "jax":
        import jax
        import jax.numpy as jnp

        # copies: Keras' own train/predict functions donate (delete) the variables' buffers
        weights = ([jnp.array(v.value) for v in model.trainable_variables],
                   [jnp.array(v.value) for v in model.non_trainable_variables])
        jitted = jax.jit(lambda w, x: model.stateless_call(*w, x, training=False)[0])
        return lambda x: np.asarray(jitted(weights, x))
    return lambda x: np.asarray(model.predict_on_batch(x))


def _load_keras(path: Path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from fer.inference.dtypes import float32_copy

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:
        raise ModelFileError(f"{path}: could not be loaded as a Keras model ({err}).") from err
    return float32_copy(model)  # a file stored with float16 (or bf16) layers computes in float32


def shipped_tflite(path: Path, card: dict[str, Any]) -> Path | None:
    """The TFLite file a shipped ``.keras`` model ships with (its card's ``tflite`` entry, written by
    ``fer.inference.export.ship_tflite``), or None for a model without one. A file that does not
    match its recorded sha256 is refused like a corrupted model."""
    entry = card.get("tflite") or {}
    tflite = path.with_name(entry["file"]) if entry.get("file") else None
    if tflite is None or not tflite.exists():
        return None
    if entry.get("sha256") and cards.sha256(tflite) != entry["sha256"]:
        raise ModelFileError(f"{tflite} does not match the checksum in {cards.card_path(path).name}: the file is "
                             "corrupted or was replaced. Restore it (git checkout -- fer/weights) or reinstall.")
    return tflite


def load_classifier(path: str | os.PathLike | None = None, verify: bool = True,
                    backend: str = "auto") -> Classifier:
    """Load ``path`` (``.keras``, or an exported ``.tflite``/``.onnx``), or the bundled model.

    When a model card (``<name>.json``) sits beside the file and records a ``sha256``, the file
    must match it: a corrupted or half-copied model is refused with :class:`ModelFileError`.
    ``backend`` (``.keras`` only): ``"auto"`` runs a cached TFLite copy under LiteRT and falls
    back to Keras if conversion fails; ``"keras"`` always calls Keras; ``"litert"`` insists.
    """
    if backend not in ("auto", "keras", "litert"):
        raise ValueError(f"backend must be auto, keras or litert, not {backend!r}")
    path = Path(path) if path is not None else bundled_path()
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file.")
    card = cards.read(path)
    digest = cards.sha256(path) if verify or backend != "keras" else None
    if verify and card.get("sha256") and digest != card["sha256"]:
        raise ModelFileError(
            f"{path} does not match the checksum in {cards.card_path(path).name}: the file is corrupted "
            "or was replaced. Restore it (git checkout -- fer/weights) or retrain."
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if path.suffix in (".tflite", ".onnx"):
        try:
            return Classifier(None, card, path, runtime=runtimes.runtime_for(path))
        except Exception as err:
            raise ModelFileError(f"{path}: could not be loaded as an exported model ({err}).") from err
    if backend != "keras":
        shipped = shipped_tflite(path, card)
        if shipped is not None:  # a shipped model: its own TFLite file, no TensorFlow, no conversion
            return Classifier(None, card, path, runtime=runtimes.LiteRuntime(shipped))
        cached = runtimes.cache_path(digest)
        if cached.exists():  # no TensorFlow import at all: the CLI starts in ~1 s
            try:
                return Classifier(None, card, path, runtime=runtimes.LiteRuntime(cached))
            except Exception:  # a broken cache file is rebuilt below
                cached.unlink(missing_ok=True)
    model = _load_keras(path)
    runtime = None
    if backend != "keras":
        try:
            runtime = runtimes.LiteRuntime(runtimes.cached_tflite(model, digest, path.name))
        except Exception as err:
            if backend == "litert":
                raise ModelFileError(f"{path}: could not be converted to TFLite ({err}).") from err
            import logging

            logging.getLogger(__name__).warning("running %s with Keras (TFLite conversion failed: %s)", path, err)
    return Classifier(model, card, path, runtime=runtime)


# --------------------------------------------------------------------------- whole frames

_DEFAULT: dict[str, Classifier] = {}
_DEFAULT_LOCK = threading.Lock()


def default_classifier() -> Classifier:
    """The bundled model, loaded once per process (thread-safe)."""
    with _DEFAULT_LOCK:
        if "clf" not in _DEFAULT:
            _DEFAULT["clf"] = load_classifier()
        return _DEFAULT["clf"]


def analyze(image_bgr: np.ndarray, classifier: Classifier | None = None, detector: str = "auto",
            tta: str | None = None, margin: float | None = None) -> list[dict[str, Any]]:
    """Every face in a BGR/BGRA/grayscale image with its expression, largest face first.

    Faces are detected (:mod:`fer.inference.faces`), cropped FER2013-style (square, eyes level, 48x48
    gray) and classified in one batch. Returns ``[{"box": [x, y, w, h], "label": str,
    "probs": {class: p}}]`` with plain Python numbers; ``[]`` when there is no face.
    """
    found, crops = face_crops(image_bgr, detector, margin)
    if not found:
        return []
    probs = (classifier or default_classifier()).predict_proba(crops, tta=tta)
    return [{"box": [int(v) for v in f.box], "label": CLASSES[int(p.argmax())],
             "probs": {c: float(v) for c, v in zip(CLASSES, p, strict=True)}} for f, p in zip(found, probs, strict=True)]


def face_crops(image_bgr: np.ndarray, detector: str = "auto", margin: float | None = None):
    """``(faces, crops)``: every face in the image, largest first, and its FER2013-style crop
    (uint8 ``(N, 48, 48)``) as :func:`analyze` classifies it (``python -m fer evaluate`` detects
    and crops in threads this way, then classifies many photos' faces in one batch)."""
    from fer.inference import faces as fd

    if image_bgr is None:
        raise ValueError("no image (None): the file could not be read or the frame is empty")
    found = fd.detect(image_bgr, detector)
    if not found:
        return [], np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    gray = fd.to_gray(image_bgr)
    kw = {} if margin is None else {"margin": margin}
    return found, np.stack([fd.crop(gray, f, IMAGE_SIZE, **kw) for f in found])


class ModelOutputError(RuntimeError):
    """The model answered something no client can use (e.g. NaN probabilities)."""


def jsonable_faces(faces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Faces as JSON can carry them (the web app's and the webcam widget's answers): plain
    ints/floats (a custom ``analyze`` may return numpy scalars), probabilities in ``CLASSES`` order;
    :class:`ModelOutputError` for non-finite probabilities, which JSON cannot hold."""
    out = []
    for face in map(cards.plain, faces):
        probs = {k: float(v) for k, v in face["probs"].items()}
        if not all(math.isfinite(p) for p in probs.values()):  # would be invalid JSON (NaN)
            raise ModelOutputError(f"the model returned non-finite probabilities {probs}; the model "
                                   "file or its runtime is broken (see the server log).")
        ordered = {c: probs[c] for c in CLASSES if c in probs} | probs
        out.append({**face, "box": [int(v) for v in face["box"]], "label": str(face["label"]), "probs": ordered})
    return out
