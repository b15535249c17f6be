"""Distillation: a trained teacher model's probabilities blended into the student's targets,
either once per face before training (:func:`soft_targets`), or online for every augmented
batch, in the host pipeline (``fer.training.inputs.HostBatches``) or inside the compiled train step
(:func:`teach_in_step`); where an online teacher runs (:func:`resolve_online_teacher`).

The teacher is loaded as a Keras model in float32 (:func:`load_teacher`: ``keras.saving.load_model``
and ``fer.inference.dtypes.float32_copy``), for the fixed targets, the host pipeline and the
train step alike, on every backend. It used to go through ``fer.load_classifier``, which on a
TensorFlow CPU converts the file to TFLite and runs it under LiteRT, the web app's runtime.
Nothing measured that path for training: LiteRT's "several times faster" (``fer.inference.runtimes``)
is per call at batch 1, an app's case, while a teacher labels batches of 128-256 faces; and the
one training measurement (docs/performance.md, ``benchmarks/online_teacher.py``, TensorFlow on
this 2-core CPU) found the LiteRT teacher in the host pipeline no faster than the Keras teacher
in the train step: 1040 against 1036 ms a step for the 92 k lite, 422 against 406 ms for a
1.6 M ResNet.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fer.config import NUM_CLASSES, TrainConfig
from fer.devices import accelerators, backend
from fer.inference.preprocess import fit_crop_tensor


def load_teacher(path: str | os.PathLike):
    """``path`` (a ``.keras`` file) as a float32 Keras model, loaded and checked as
    ``fer.load_classifier(path, backend="keras")`` loads any model: refused (``ModelFileError``)
    when it is missing, unreadable or does not match the sha256 its card records. An export
    (``.tflite``, ``.onnx``) is not a teacher."""
    from fer.inference.predict import ModelFileError, load_classifier

    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: a teacher is a trained .keras model, not an export.")
    return load_classifier(path, backend="keras").model  # float32 layers, whatever the file stores


def host_teacher(path: str | os.PathLike):
    """The teacher as a ``fer.inference.predict.Classifier`` on its Keras model (``forward`` is one
    compiled call a batch), for the fixed targets and the host pipeline."""
    from fer.inference.predict import Classifier

    return Classifier(load_teacher(path), path=Path(path))


def resolve_online_teacher(where: str = "auto") -> str:
    """``host`` or ``step`` (``TrainConfig.online_teacher``): ``auto`` keeps the teacher in the host
    pipeline on a TensorFlow CPU, as runs there have done so far (the two placements measured
    level there: see the module docstring), and otherwise puts it in the train step, where it runs
    on the student's device without a host round trip."""
    if where == "auto":
        return "host" if backend() == "tensorflow" and not accelerators() else "step"
    return where


def soft_targets(x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Distillation targets: ``(1 - distill)`` one-hot label (or FER+ vote distribution, ``y``
    of shape ``(N, 7)``) + ``distill`` teacher probabilities.

    The teacher (``cfg.teacher``, a ``.keras`` file: :func:`load_teacher`) sees each training
    face once, with flip TTA, before training; the student then learns those fixed targets under
    its own augmentation. That costs one inference pass instead of a teacher forward pass per
    step, which on 2 CPU cores would have made every epoch about twice as long.
    ``distill_temperature`` T softens them like ``softmax(logits / T)``.
    """
    probs = host_teacher(cfg.teacher).predict_proba(x, tta="flip")
    return blend_targets(y if y.ndim == 2 else np.eye(NUM_CLASSES)[y], probs, cfg)  # y: labels or vote targets


def blend_targets(labels: np.ndarray, probs: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """``(1 - distill)`` × ``labels`` (one-hot or mixed) + ``distill`` × the teacher's
    ``probs`` softened by ``distill_temperature`` T (as ``softmax(logits / T)`` would)."""
    probs = probs.astype("float64")
    if cfg.distill_temperature != 1:
        probs = np.exp(np.log(np.clip(probs, 1e-12, 1.0)) / cfg.distill_temperature)
        probs /= probs.sum(axis=1, keepdims=True)
    return ((1 - cfg.distill) * labels + cfg.distill * probs).astype("float32")


def teach_in_step(model, teacher, cfg: TrainConfig):
    """Make ``model`` learn online from the Keras model ``teacher`` inside its own train step
    (``online_teacher="step"``): each training batch's targets become :func:`blend_targets` of
    its (mixed) labels and what ``teacher`` makes of exactly that batch, computed in the
    compiled step on the student's device instead of on the host before the step (where, on
    one GPU, each batch waited for a separate teacher call). Validation, metrics and class
    weights keep the labels.

    The teacher joins ``model.compute_loss`` (an attribute of this one model object), not the
    model: ``model.save``, checkpoints and ``BackupAndRestore`` hold the student alone. Its
    weights are frozen (no gradients; under JAX, constants of the compiled step). Returns
    ``model``."""
    from keras import ops

    teacher.trainable = False
    crop = int(teacher.input_shape[1])
    plain = model.compute_loss

    def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if training:
            probs = ops.cast(teacher(fit_crop_tensor(x, crop), training=False), "float32")
            if cfg.distill_temperature != 1:  # softmax(log(p) / T) = p^(1/T), normalised
                probs = ops.softmax(ops.log(ops.clip(probs, 1e-12, 1.0)) / cfg.distill_temperature, axis=-1)
            y = (1 - cfg.distill) * ops.cast(y, "float32") + cfg.distill * ops.stop_gradient(probs)
        return plain(x, y, y_pred, sample_weight, training=training)

    model.compute_loss = compute_loss
    return model
