"""Distillation: a trained teacher model's probabilities blended into the student's targets,
either once per face before training (:func:`soft_targets`), or online for every augmented
batch, in the host pipeline (``fer.training.inputs.HostBatches``) or inside the compiled train step
(:func:`teach_in_step`); where an online teacher runs (:func:`resolve_online_teacher`)."""

from __future__ import annotations

import numpy as np

from fer.config import NUM_CLASSES, TrainConfig
from fer.devices import accelerators, backend
from fer.inference.preprocess import fit_crop_tensor


def resolve_online_teacher(where: str = "auto") -> str:
    """``host`` or ``step`` (``TrainConfig.online_teacher``): ``auto`` keeps the teacher in the
    host pipeline only where it runs through LiteRT (TensorFlow on a CPU), and otherwise puts it
    in the train step, where it runs on the student's device without a host round trip."""
    if where == "auto":
        return "host" if teacher_backend() != "keras" else "step"
    return where


def teacher_backend() -> str:
    """How an online teacher runs (``fer.load_classifier``'s ``backend``): LiteRT, the fastest on
    a CPU, needs TensorFlow to convert the model; with a GPU, or under JAX or PyTorch, the teacher
    runs in Keras on the student's device."""
    return "auto" if backend() == "tensorflow" and not accelerators() else "keras"


def soft_targets(x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Distillation targets: ``(1 - distill)`` one-hot label + ``distill`` teacher probabilities.

    The teacher (``cfg.teacher``, any model ``fer.load_classifier`` reads) sees each training
    face once, with flip TTA, before training; the student then learns those fixed targets under
    its own augmentation. That costs one inference pass instead of a teacher forward pass per
    step, which on 2 CPU cores would have made every epoch about twice as long.
    ``distill_temperature`` T softens them like ``softmax(logits / T)``.
    """
    from fer.inference.predict import load_classifier

    probs = load_classifier(cfg.teacher).predict_proba(x, tta="flip")
    return blend_targets(np.eye(NUM_CLASSES)[y], probs, cfg)


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
