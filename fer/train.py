"""Training: tf.data or NumPy/OpenCV input, augmentation, precision and device choice, resumable fits.

``fit(train, val, arch=..., **hp)`` trains one model and returns it with its history. The
same crop that training uses is stored in the model's input shape, and ``fer.predict``
reads it from there, so training and inference preprocess identically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from fer.config import NUM_CLASSES, RUNS_DIR

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides a training run; a params profile's ``train:`` block fills it."""

    arch: str = "resnet"
    hp: dict[str, Any] = field(default_factory=dict)  # architecture hyperparameters (models.DEFAULTS)
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | sgd (Nesterov momentum 0.9)
    lr: float = 2e-3
    weight_decay: float = 5e-4  # Keras: decoupled, w -= lr * wd * w; AdamW needs ~1e-2 to matter
    schedule: str = "cosine"  # cosine (with linear warm-up) | plateau
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    mixup: float = 0.0  # MixUp alpha; 0 disables
    # momentum of an exponential moving average of the weights (e.g. 0.999, a horizon of ~1,000
    # steps); 0 disables. The averaged weights replace the trained ones when fit ends; the
    # validation numbers printed each epoch are the raw weights'.
    ema: float = 0.0
    class_weight: str = "none"  # none | balanced | sqrt
    # augmentation strength
    flip: bool = True
    rotation: float = 10.0  # degrees
    shift: float = 0.0  # fraction of the crop, on top of the random crop
    zoom: float = 0.1
    erasing: float = 0.25  # probability of random erasing per image
    precision: str = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
    # how batches are augmented: tf.data (Keras layers in tf.data threads; TensorFlow only) | host
    # (NumPy/OpenCV in the training loop; any backend) | auto (tf.data under TensorFlow, host otherwise)
    pipeline: str = "auto"
    seed: int = 0
    deterministic: bool = False
    max_train: int | None = None  # cap on training images (smoke runs)
    early_stop: int = 0  # patience in epochs on val_accuracy; 0 disables
    tensorboard: bool = False  # also write TensorBoard logs to <run_dir>/tb
    # distillation: a trained model (.keras path) whose probabilities become part of the targets
    teacher: str | None = None
    distill: float = 0.0  # weight of the teacher's probabilities in the targets (1 - it: the label)
    distill_temperature: float = 1.0  # > 1 softens the teacher's probabilities
    # False: the teacher labels each clean face once, before training (one inference pass);
    # True: it labels every augmented, mixed-up batch as the student sees it (online_teacher: where)
    distill_online: bool = False
    # where an online teacher runs: host (in the host pipeline, on each finished batch; LiteRT on a
    # TensorFlow CPU) | step (inside the compiled train step, on the student's device: no host
    # round trip per batch) | auto (host on a TensorFlow CPU, where LiteRT is the fastest; else step)
    online_teacher: str = "auto"
    init: str | None = None  # a trained model (.keras) of the same network to start from (fine-tuning)

    def __post_init__(self):
        # checked here, not when the targets are made: a distill weight without a teacher (or the
        # reverse) would otherwise train a plain model under a card that says otherwise
        if bool(self.teacher) != (self.distill > 0) or not 0 <= self.distill <= 1:
            raise ValueError(
                f"distillation needs a teacher model and 0 < distill <= 1 (teacher={self.teacher!r}, distill={self.distill})"
            )
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema is a momentum in [0, 1) (0 disables it), not {self.ema}")
        if self.distill_temperature <= 0:
            raise ValueError(f"distill_temperature must be > 0, not {self.distill_temperature}")
        if self.distill_online and not self.teacher:
            raise ValueError("distill_online needs a teacher model (teacher=..., distill > 0)")
        if self.distill_online and self.pipeline == "tf.data" and self.online_teacher == "host":
            raise ValueError("online_teacher host labels the batches in the host pipeline; use pipeline host or auto, "
                             "or online_teacher step")
        if self.online_teacher not in ("auto", "host", "step"):
            raise ValueError(f"online_teacher must be auto, host or step, not {self.online_teacher!r}")
        if self.pipeline not in ("auto", "tf.data", "host"):
            raise ValueError(f"pipeline must be auto, tf.data or host, not {self.pipeline!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(values))


# --------------------------------------------------------------------------- devices


def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 math (AVX512-BF16 or AMX); otherwise bf16 is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def backend() -> str:
    """The Keras backend: ``tensorflow`` (this project's environment), ``jax`` or ``torch``."""
    return keras.backend.backend()


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


def accelerators() -> list[str]:
    """Names of the GPUs the Keras backend sees (empty on a CPU-only machine)."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                for g in tf.config.list_physical_devices("GPU")]
    if name == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if name == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def set_precision(policy: str = "auto") -> str:
    """Set the Keras dtype policy. ``auto``: on a GPU, mixed float16 under TensorFlow (the Colab
    T4 has no fast bfloat16) and mixed bfloat16 under JAX/PyTorch (where this project runs them:
    Ampere or newer); on a CPU, mixed bfloat16 with native bf16 math, float32 otherwise
    (emulated bf16 was slower than float32 on an AVX2-only CPU)."""
    if policy == "auto":
        if accelerators():
            policy = "mixed_float16" if backend() == "tensorflow" else "mixed_bfloat16"
        else:
            policy = "mixed_bfloat16" if cpu_has_bf16() else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def device_scope():
    """``MirroredStrategy`` over all GPUs when TensorFlow sees several, else a no-op context."""
    import contextlib

    if backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()).scope()


def hardware() -> dict[str, Any]:
    """What trained the model, for the model card."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "gpus": accelerators()}
    name = backend()
    module = __import__(name)
    if name != "tensorflow":
        out["backend"] = name
        out["keras"] = keras.__version__
    out[name] = module.__version__
    return out


# --------------------------------------------------------------------------- input pipeline


def augmenter(cfg: TrainConfig, crop: int):
    """Augmentation as Keras layers, applied per batch inside tf.data (not saved with the model).

    A random translation by up to the crop margin followed by a centre crop is a random crop
    of ``crop`` pixels; the rest is flip, small rotation/zoom and random erasing. The layers
    compute in float32 whatever the global mixed-precision policy: the model casts its input
    itself, and MixUp's float32 weights cannot multiply bfloat16/float16 images.
    """
    import keras
    from keras import layers

    margin = (48 - crop) / 48 / 2
    seed = cfg.seed
    f32 = {"dtype": "float32"}
    steps: list = []
    if cfg.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed, **f32))
    if cfg.rotation:
        steps.append(layers.RandomRotation(cfg.rotation / 360.0, fill_mode="reflect", seed=seed + 1, **f32))
    if cfg.zoom:
        steps.append(layers.RandomZoom((-cfg.zoom, cfg.zoom), fill_mode="reflect", seed=seed + 2, **f32))
    if margin + cfg.shift > 0:
        s = margin + cfg.shift
        steps.append(layers.RandomTranslation(s, s, fill_mode="reflect", seed=seed + 3, **f32))
    if crop < 48:
        steps.append(layers.CenterCrop(crop, crop, **f32))
    if cfg.erasing:
        steps.append(layers.RandomErasing(factor=cfg.erasing, scale=(0.02, 0.2), value_range=(0, 255), seed=seed + 4, **f32))
    return keras.Sequential(steps, name="augment")


def center_crop(x: np.ndarray, crop: int) -> np.ndarray:
    """Centre crop of ``(N, H, W[, C])`` to ``crop``×``crop`` (what inference without TTA sees)."""
    h, w = x.shape[1:3]
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[:, top : top + crop, left : left + crop]


def make_dataset(x: np.ndarray, y: np.ndarray | None, cfg: TrainConfig, crop: int, training: bool):
    """``tf.data`` of (image float32 ``(B, crop, crop, 1)`` in 0-255, one-hot label) batches.

    ``y`` holds class indices, or ``(N, 7)`` target distributions (see :func:`soft_targets`)."""
    import keras
    import tensorflow as tf

    x = x[..., None] if x.ndim == 3 else x
    if not training:
        x = center_crop(x, crop)
    if y is None:
        onehot = None
    elif y.ndim == 2:  # already target distributions (distillation)
        onehot = y.astype("float32")
    else:
        onehot = keras.utils.to_categorical(y, NUM_CLASSES).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices(x if onehot is None else (x, onehot))
    if training:
        ds = ds.shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size, drop_remainder=False)
    if training:
        aug = augmenter(cfg, crop)
        mix = keras.layers.MixUp(alpha=cfg.mixup, seed=cfg.seed + 5, dtype="float32") if cfg.mixup > 0 else None

        def augment(images, labels):
            images = aug(tf.cast(images, "float32"), training=True)
            if mix is not None:
                out = mix({"images": images, "labels": labels}, training=True)
                images, labels = out["images"], out["labels"]
            return images, labels

        ds = ds.map(augment, num_parallel_calls=max(1, (os.cpu_count() or 2) // 2), deterministic=cfg.deterministic or None)
    else:
        ds = ds.map(lambda *t: (tf.cast(t[0], "float32"), *t[1:]))
    # tf.data autotuning off, with fixed parallelism: Keras makes a new iterator every epoch, and
    # tearing one down waited for the autotuner's thread to wake (up to a minute, CPU idle):
    # epochs of 45 s took 45-95 s on 2 cores (benchmarks/epoch_start.py).
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(2).with_options(options)


def augment_batch(images: np.ndarray, cfg: TrainConfig, crop: int, rng: np.random.Generator) -> np.ndarray:
    """NumPy/OpenCV twin of :func:`augmenter` for the ``host`` pipeline: uint8 ``(B, 48, 48)``
    faces → float32 ``(B, crop, crop, 1)`` random crops in 0-255.

    Draws what the Keras layers draw: a horizontal flip with probability 1/2, a rotation of up
    to ``rotation`` degrees, a zoom of up to ``zoom`` (positive: out), a shift of up to the crop
    margin plus ``shift`` (reflected borders), then the centre crop, then random erasing as
    ``keras.layers.RandomErasing(factor=erasing, scale=(0.02, 0.2))`` does it (an erasing
    probability drawn from [0, erasing] per image; a rectangle of Gaussian noise x 255 clipped
    to 0-255). Written with OpenCV because Keras' own layers, run inside a JAX or PyTorch
    training step on a GPU, were the bottleneck: on an H200 a training step of the full model
    took 4.6 ms under JAX without them; with them its first 40 steps had not finished in 140 s.
    """
    import cv2

    n, size = len(images), images.shape[1]
    flips = rng.random(n) < 0.5 if cfg.flip else np.zeros(n, bool)
    angles = rng.uniform(-cfg.rotation, cfg.rotation, n)
    scales = 1.0 / (1.0 + rng.uniform(-cfg.zoom, cfg.zoom, n))
    reach = ((size - crop) / size / 2 + cfg.shift) * size
    shifts = rng.uniform(-reach, reach, (n, 2))
    centre = (size - 1) / 2
    top = (size - crop) // 2
    out = np.empty((n, crop, crop), np.float32)
    for i in range(n):
        face = images[i, :, ::-1] if flips[i] else images[i]
        m = cv2.getRotationMatrix2D((centre, centre), float(angles[i]), float(scales[i]))
        m[:, 2] += shifts[i]
        warped = cv2.warpAffine(np.ascontiguousarray(face), m, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
        out[i] = warped[top : top + crop, top : top + crop]
    if cfg.erasing:
        erase = rng.random(n) < rng.uniform(0, cfg.erasing, n)
        sides = np.sqrt(rng.uniform(0.02, 0.2, (n, 2))) * crop
        starts = rng.random((n, 2)) * (crop - sides)
        for i in np.flatnonzero(erase):
            (y0, x0), (y1, x1) = starts[i].astype(int), np.ceil(starts[i] + sides[i]).astype(int)
            out[i, y0:y1, x0:x1] = np.clip(rng.standard_normal((y1 - y0, x1 - x0)) * 255, 0, 255)
    return out[..., None]


class HostBatches(keras.utils.PyDataset):
    """The ``host`` pipeline: shuffled, augmented (:func:`augment_batch`) and MixUp-ed batches
    made by NumPy/OpenCV, for Keras on JAX or PyTorch (tf.data exists only under TensorFlow).
    MixUp follows ``keras.layers.MixUp``: a Beta(alpha, alpha) weight per image, partners drawn
    by permuting the augmented batch. Every batch's random numbers come from
    ``(seed, epoch, batch)``, so the batches do not depend on the workers' timing.

    One worker by default, i.e. batches made in the training loop's thread: Keras' thread
    enqueuer made fewer batches, not more (415/s with one worker, 184/s with two, 160/s with
    three on idle cores: ``benchmarks/host_pipeline.py``); the loop is held by Python's GIL.

    With a ``teacher`` (a :class:`fer.predict.Classifier`; ``distill_online``) each finished
    batch is labelled by it too, view by view, and the targets become :func:`blend_targets` of
    the (mixed) labels and its probabilities: the teacher and the student see the same crop,
    flip, rotation, erasing and mixture ("consistent teaching", Beyer et al. 2022, *Knowledge
    distillation: a good teacher is patient and consistent*).
    """

    def __init__(self, x: np.ndarray, targets: np.ndarray, cfg: TrainConfig, crop: int,
                 workers: int | None = None, teacher=None):
        super().__init__(workers=workers or 1, max_queue_size=16)
        if x.ndim != 3 or x.shape[1:] != (48, 48):
            raise ValueError(f"HostBatches needs (N, 48, 48) faces, not {x.shape}")
        self.x, self.cfg, self.crop, self.teacher = x, cfg, crop, teacher
        self.y = targets.astype("float32") if targets.ndim == 2 else np.eye(NUM_CLASSES, dtype="float32")[targets]
        self.set_epoch(0)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.cfg.batch_size)

    def __getitem__(self, i: int):
        bs = self.cfg.batch_size
        idx = self.order[i * bs : (i + 1) * bs]
        rng = np.random.default_rng([self.cfg.seed, self.epoch, i])
        images, labels = augment_batch(self.x[idx], self.cfg, self.crop, rng), self.y[idx]
        if self.cfg.mixup > 0:
            w = rng.beta(self.cfg.mixup, self.cfg.mixup, len(idx)).astype("float32")
            partner = rng.permutation(len(idx))
            images = w[:, None, None, None] * images + (1 - w[:, None, None, None]) * images[partner]
            labels = w[:, None] * labels + (1 - w[:, None]) * labels[partner]
        if self.teacher is not None:  # what the teacher makes of exactly this view (and mixture)
            probs = self.teacher.forward(fit_crop(images[..., 0], self.teacher.crop))
            labels = blend_targets(labels, probs, self.cfg)
        return images, labels  # fit(class_weight=...) weighs them (by each soft label's argmax)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s order and augmentation (``fit`` calls it at each epoch's start,
        so a run resumed by ``BackupAndRestore`` sees the batches it would have seen)."""
        self.epoch = epoch
        self.order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.x))

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)


def resolve_pipeline(pipeline: str = "auto") -> str:
    """``tf.data`` or ``host`` (see ``TrainConfig.pipeline``) for this Keras backend."""
    if pipeline == "auto":
        return "tf.data" if backend() == "tensorflow" else "host"
    if pipeline == "tf.data" and backend() != "tensorflow":
        raise ValueError(f"pipeline 'tf.data' needs the TensorFlow backend, not {backend()!r}; use 'host'")
    return pipeline


def soft_targets(x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Distillation targets: ``(1 - distill)`` one-hot label + ``distill`` teacher probabilities.

    The teacher (``cfg.teacher``, any model ``fer.load_classifier`` reads) sees each training
    face once, with flip TTA, before training; the student then learns those fixed targets under
    its own augmentation. That costs one inference pass instead of a teacher forward pass per
    step, which on 2 CPU cores would have made every epoch about twice as long.
    ``distill_temperature`` T softens them like ``softmax(logits / T)``.
    """
    from fer.predict import load_classifier

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


def fit_crop_tensor(x, crop: int):
    """:func:`fit_crop` for a backend tensor of ``(N, S, S, 1)`` views, inside a compiled step."""
    from keras import ops

    size = int(x.shape[1])
    if size >= crop:
        o = (size - crop) // 2
        return x[:, o : o + crop, o : o + crop, :]
    before = (crop - size) // 2
    pad = (before, crop - size - before)
    return ops.pad(x, ((0, 0), pad, pad, (0, 0)), mode="reflect")


def fit_crop(images: np.ndarray, crop: int) -> np.ndarray:
    """``(N, S, S)`` views brought to ``crop``×``crop`` for a model of another input size:
    centre-cropped when larger, padded by reflection when smaller."""
    size = images.shape[1]
    if size >= crop:
        return center_crop(images, crop)
    before = (crop - size) // 2
    return np.pad(images, ((0, 0), (before, crop - size - before), (before, crop - size - before)), mode="reflect")


def class_weights(y: np.ndarray, mode: str) -> dict[int, float] | None:
    """Per-class loss weights: ``balanced`` = N / (K·n_c); ``sqrt`` = its square root."""
    if mode == "none":
        return None
    counts = np.bincount(y, minlength=NUM_CLASSES).astype(float)
    w = len(y) / (NUM_CLASSES * np.maximum(counts, 1))
    if mode == "sqrt":
        w = np.sqrt(w)
    elif mode != "balanced":
        raise ValueError(f"class_weight must be none, balanced or sqrt, not {mode!r}")
    return {i: float(v) for i, v in enumerate(w)}


# --------------------------------------------------------------------------- model and fit


def _lr_schedule(cfg: TrainConfig, steps_per_epoch: int):
    import keras

    if cfg.schedule == "plateau":
        return cfg.lr
    if cfg.schedule != "cosine":
        raise ValueError(f"schedule must be cosine or plateau, not {cfg.schedule!r}")
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total - 1, int(cfg.warmup_epochs * steps_per_epoch))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.lr / 10 if warmup else cfg.lr,
        decay_steps=total - warmup,
        warmup_target=cfg.lr if warmup else None,
        warmup_steps=warmup,
        alpha=0.01,
    )


def compile_model(model, cfg: TrainConfig, steps_per_epoch: int):
    import keras

    lr = _lr_schedule(cfg, steps_per_epoch)
    # Keras keeps the average in the optimizer (so BackupAndRestore saves it) and writes it into
    # the model's trainable weights at the end of fit; BatchNorm statistics stay the raw ones'
    ema = {"use_ema": True, "ema_momentum": cfg.ema} if cfg.ema else {}
    if cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=cfg.weight_decay, **ema)
    elif cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay, **ema)
    else:
        raise ValueError(f"optimizer must be adamw or sgd, not {cfg.optimizer!r}")
    model.compile(
        optimizer=opt,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    return model


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_s`` and ``elapsed_s`` (wall seconds, counting ``offset`` seconds spent before
    a resume) to each epoch's logs."""

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset = offset

    def on_train_begin(self, logs=None):
        self.start = time.time() - self.offset

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_s"] = round(time.time() - self.epoch_start, 1)
            logs["elapsed_s"] = round(time.time() - self.start, 1)


def fit(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    cfg: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    callbacks: list | None = None,
    verbose: int | str = "auto",
    fingerprint: str | None = None,
):
    """Train ``cfg.arch`` on ``train``; validate on ``val``. Returns ``(model, history_dict)``.

    ``run_dir`` holds ``log.csv``, ``best.keras`` (best validation accuracy) and a
    ``BackupAndRestore`` folder: calling ``fit`` again with the same ``run_dir`` and settings
    after an interruption resumes from the last finished epoch instead of starting over, and the
    returned history and ``wall_s`` cover the whole run. Anything else already in ``run_dir``
    (a finished run, or one with other settings or data) is moved aside to
    ``<run_dir>-<date>``, never resumed into or overwritten. ``fingerprint`` identifies the data.
    """
    from fer import models
    from fer.predict import load_classifier

    x, y = train
    if cfg.max_train and len(x) > cfg.max_train:
        idx = np.random.default_rng(cfg.seed).permutation(len(x))[: cfg.max_train]
        x, y = x[idx], y[idx]
    online = bool(cfg.teacher and cfg.distill_online)  # the teacher labels each batch, not each face
    targets = soft_targets(x, y, cfg) if cfg.teacher and not online else y  # the teacher runs in float32
    placement = resolve_online_teacher(cfg.online_teacher) if online else None
    if placement == "host" and cfg.pipeline == "tf.data":
        raise ValueError("the online teacher runs in the host pipeline here (TensorFlow on a CPU: LiteRT); "
                         "use pipeline host or auto, or online_teacher step")
    pipeline = "host" if placement == "host" else resolve_pipeline(cfg.pipeline)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic and backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    policy = set_precision(cfg.precision)
    with device_scope():
        model = models.build(cfg.arch, cfg.hp)
        if cfg.init:
            load_weights_from(model, cfg.init)
        crop = int(model.input_shape[1])
        steps = math.ceil(len(x) / cfg.batch_size)
        compile_model(model, cfg, steps)
        if placement == "step":
            teach_in_step(model, load_classifier(cfg.teacher, backend="keras").model, cfg)
    cbs: list = []
    if pipeline == "tf.data":
        train_ds = make_dataset(x, targets, cfg, crop, training=True)
        val_ds = make_dataset(*val, cfg, crop, training=False) if val is not None else None
    else:
        teacher = load_classifier(cfg.teacher, backend=teacher_backend()) if placement == "host" else None
        train_ds = HostBatches(x, targets, cfg, crop, teacher=teacher)
        val_ds = (center_crop(val[0], crop)[..., None].astype("float32"),
                  keras.utils.to_categorical(val[1], NUM_CLASSES)) if val is not None else None
        cbs.append(keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: train_ds.set_epoch(epoch)))
    monitor = "val_accuracy" if val is not None else "accuracy"
    if cfg.schedule == "plateau":
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=0.5, patience=3, min_lr=1e-5))
    if cfg.early_stop:
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=cfg.early_stop, restore_best_weights=True))
    earlier: dict[str, list] = {}
    if run_dir is not None:
        run_dir = Path(run_dir)
        files = _input_files(cfg)  # a teacher or starting point is named by path: its contents count too
        settings = json.loads(json.dumps({**asdict(cfg), "policy": policy, "data": fingerprint,
                                          **({"files": files} if files else {})}, default=list))
        moved = _set_aside(run_dir, settings)
        if moved:
            print(f"{run_dir} held another run (finished, or other settings or data); moved it to {moved}")
        earlier = read_log(run_dir / "log.csv")  # epochs finished before an interruption
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(settings, indent=2))
        cbs += [
            EpochTimer(offset=sum(earlier.get("epoch_s", []))),  # before CSVLogger: adds epoch_s/elapsed_s
            # double_checkpoint: the epoch before stays beside the latest backup, so a kill in
            # the middle of writing it (a truncated file, seen on a GPU) resumes from there
            keras.callbacks.BackupAndRestore(str(run_dir / "backup"), double_checkpoint=True),
            keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
            keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor=monitor, mode="max", save_best_only=True),
        ]
        if cfg.tensorboard:
            cbs.append(keras.callbacks.TensorBoard(str(run_dir / "tb")))
    cbs += list(callbacks or [])  # after BackupAndRestore, so an epoch is saved before they run
    start = time.time()
    hist = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        validation_batch_size=None if pipeline == "tf.data" else cfg.batch_size,  # of the arrays
        class_weight=class_weights(y, cfg.class_weight),
        shuffle=False,  # the pipeline shuffles already
        callbacks=cbs,
        verbose=verbose,
    )
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    history["wall_s"] = time.time() - start + sum(earlier.get("epoch_s", []))
    if earlier:  # a resumed run: the whole run's curves, from the log
        history.update({k: v for k, v in read_log(run_dir / "log.csv").items() if k != "epoch"})
    history["policy"] = policy
    history["pipeline"] = pipeline
    if online:
        history["online_teacher"] = placement
    history["train_images"] = int(len(x))
    return model, history


def load_weights_from(model, path: str | os.PathLike) -> None:
    """Set ``model``'s weights to those of the trained model in ``path`` (a ``.keras`` file of
    the same network: same architecture and hyperparameters), to fine-tune it."""
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as err:  # missing, truncated, or not a Keras file: say which option was wrong
        raise ValueError(f"init {path}: could not be loaded as a Keras model ({err})") from err
    want = [tuple(w.shape) for w in model.weights]
    have = [tuple(w.shape) for w in source.weights]
    if want != have:
        raise ValueError(f"{path} holds another network ({len(have)} weights, {source.count_params():,} parameters) than "
                         f"the one to train ({len(want)} weights, {model.count_params():,} parameters); "
                         "give the architecture and hyperparameters it was trained with")
    model.set_weights([np.asarray(w) for w in source.get_weights()])


def read_log(path: Path) -> dict[str, list[float]]:
    """``CSVLogger``'s file as columns of floats (empty when there is none). CSVLogger writes
    ``NA`` for the ``val_*`` columns of a run without validation data; they read as NaN."""
    import csv

    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [math.nan if r[k] in ("NA", "") else float(r[k]) for r in rows] for k in (rows[0] if rows else {})}


def _with_defaults(settings: dict) -> dict:
    """Stored run settings with the defaults of training options added since they were written:
    a run made before an option existed was trained as its default says, so it still matches."""
    defaults = json.loads(json.dumps(asdict(TrainConfig()), default=list))
    return {**{k: v for k, v in defaults.items() if k not in settings}, **settings}


def _set_aside(run_dir: Path, settings: dict) -> Path | None:
    """Move what ``run_dir`` holds to ``<run_dir>-<date>`` unless it is an interrupted run with
    these ``settings`` (which ``BackupAndRestore`` resumes). Returns where it went, or None."""
    kept = ("log.csv", "backup", "best.keras", "model.keras", "card.json")
    if not any((run_dir / name).exists() for name in kept):  # nothing trained there yet
        return None
    try:
        same = _with_defaults(json.loads((run_dir / "config.json").read_text())) == settings
    except (OSError, ValueError):
        same = False
    if same and (run_dir / "backup").exists() and not (run_dir / "model.keras").exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(run_dir.stat().st_mtime))
    dest, n = run_dir.with_name(f"{run_dir.name}-{stamp}"), 1
    while dest.exists():
        dest, n = run_dir.with_name(f"{run_dir.name}-{stamp}-{n}"), n + 1
    run_dir.rename(dest)
    return dest


# --------------------------------------------------------------------------- profiles → runs → shipped model

#: Profile blocks that describe a model to train, and the file name each ships under.
MODEL_BLOCKS = {"train": "main", "lite": "lite", "baseline": "baseline"}


def config_from_profile(profile: Mapping[str, Any], block: str = "train", hp: Mapping[str, Any] | None = None) -> TrainConfig:
    """The ``TrainConfig`` of one profile block; ``hp`` (e.g. the tuner's best) overrides it.

    The profile's flat ``seed`` (a notebook parameter) wins over the block's; its flat
    ``epochs`` sets the main (``train``) block's length and is the default for blocks that
    name none, so ``papermill -p epochs 3`` shortens the main training.
    """
    values = dict(profile.get(block) or {})
    if not values:
        raise ValueError(f"profile {profile.get('profile')!r} has no {block!r} block")
    values["hp"] = dict(values.get("hp") or {})
    for key, value in dict(hp or {}).items():
        if key in TrainConfig.__dataclass_fields__ and key != "hp":
            values[key] = value
        else:
            values["hp"][key] = value
    overrides = dict(hp or {})
    if profile.get("seed") is not None and "seed" not in overrides:
        values["seed"] = profile["seed"]
    if profile.get("epochs") is not None and "epochs" not in overrides and (block == "train" or "epochs" not in values):
        values["epochs"] = profile["epochs"]
    return TrainConfig.from_dict(values)


def evaluate_model(model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of ``model`` on ``(x, y)``, plain and with flip / ten-crop TTA."""
    from fer.evaluate import tta_table
    from fer.predict import Classifier

    table = tta_table(Classifier(model), x, y)
    out: dict[str, float] = {}
    for mode, row in table.iterrows():
        name = "single" if mode == "none" else mode
        out[f"accuracy_{name}"] = float(row["accuracy"])
        out[f"macro_f1_{name}"] = float(row["macro_f1"])
    return out


def run(
    profile: Mapping[str, Any],
    splits: dict,
    block: str = "train",
    hp: Mapping[str, Any] | None = None,
    run_dir: str | os.PathLike | None = None,
    verbose: int | str = "auto",
    reuse: bool = True,
    float16_weights: bool = False,
) -> dict[str, Any]:
    """Train one profile block end to end and write ``model.keras`` + ``card.json`` to ``run_dir``.

    ``float16_weights`` rounds the trained weights to float16 values before the evaluation, so
    that :func:`ship` stores a half-size file (a 5 M-parameter model in float32 is over the
    16 MiB a shipped file may be) that computes exactly what the card reports. A finished
    float32 run is rounded and evaluated again in place, not trained again.

    With ``reuse`` a run that already finished in ``run_dir`` with the same configuration and
    data is loaded instead of trained again (an interrupted one resumes through
    ``BackupAndRestore``), so re-running ``make reproduce`` after a later failure costs nothing.

    Training images that also occur in an evaluation split, and constant (black) images, are
    dropped first (``fer.data.clean``), so validation accuracy is measured on unseen faces.
    Model selection uses ``public_test`` (or ``val``, or a split of train), never a private
    test. Returns the model card (a dict) with ``model`` (the Keras model) added.
    """
    from fer import data
    from fer.models import float32_copy, round_to_float16

    cfg = config_from_profile(profile, block, hp)
    name = MODEL_BLOCKS.get(block, block)
    run_dir = Path(run_dir) if run_dir else RUNS_DIR / str(profile.get("profile", "custom")) / name
    cleaned = data.clean(splits)
    train_xy, val_xy = data.training_splits(cleaned, seed=cfg.seed)
    fingerprint = data_fingerprint(train_xy, val_xy)
    card = finished_run(run_dir, cfg, fingerprint) if reuse else None
    stored = card.get("weights_dtype", "float32") if card is not None else None
    if stored == ("float16" if float16_weights else "float32"):
        print(f"{name}: reusing the finished run in {run_dir} (same configuration and data); "
              "delete that folder to train again")
        return card
    if stored == "float32" and float16_weights:  # round the finished run; no need to train again
        model = card.pop("model")
        print(f"{name}: rounding the finished run in {run_dir} to float16 weights and evaluating it again")
    else:
        model, history = fit(train_xy, val_xy, cfg, run_dir=run_dir, verbose=verbose, fingerprint=fingerprint)
        card = {
            "name": name,
            "arch": cfg.arch,
            "params": int(model.count_params()),
            "input": {"crop": int(model.input_shape[1]), "size": 48, "channels": 1, "range": "0-255"},
            "config": asdict(cfg),
            "epochs_run": len(history.get("loss", [])),
            "train_wall_s": round(history["wall_s"], 1),
            "precision": history["policy"],
            "pipeline": history["pipeline"],
            **({"online_teacher": history["online_teacher"]} if "online_teacher" in history else {}),
            "hardware": hardware(),
            "data": _data_block(profile, splits, cleaned, fingerprint, history["train_images"], len(val_xy[0])),
            "history": {k: v for k, v in history.items() if isinstance(v, list)},
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    if float16_weights:
        round_to_float16(model)
    # measured on the float32 copy that ship() writes, so the card describes the shipped file
    card["metrics"] = {"validation": evaluate_model(float32_copy(model), *val_xy), "precision": "float32"}
    card["weights_dtype"] = "float16" if float16_weights else "float32"
    if cfg.teacher:
        card["teacher"] = _model_entry(cfg.teacher)
    if cfg.init:
        card["init"] = _model_entry(cfg.init)
    model.save(run_dir / "model.keras")
    (run_dir / "card.json").write_text(json.dumps(card, indent=2, default=list))
    card["model"] = model
    return card


def _input_files(cfg: TrainConfig) -> dict[str, str]:
    """sha256 of the model files a run starts from (``teacher``, ``init``), by option name: a run
    learned from another file of the same name is not this run, neither to reuse nor to resume."""
    from fer.predict import sha256

    return {key: sha256(path) for key in ("teacher", "init") if (path := getattr(cfg, key))}


def _model_entry(path: str) -> dict[str, Any]:
    """What a card says of the teacher or starting point of a run: file, checksum, size, accuracy."""
    from fer.evaluate import model_card, short_path
    from fer.predict import sha256

    teacher = model_card(path)
    return {"path": short_path(path), "sha256": sha256(path), "arch": teacher.get("arch"),
            "params": teacher.get("params"), "validation": teacher.get("metrics", {}).get("validation")}


def ensemble_run(
    profile: Mapping[str, Any],
    splits: dict,
    members: list[str | os.PathLike],
    run_dir: str | os.PathLike | None = None,
    name: str = "main",
    float16_weights: bool = False,
) -> dict[str, Any]:
    """Average the finished training runs ``members`` into one model and write its run folder.

    ``float16_weights`` rounds the weights to float16 values before evaluating, so that
    :func:`ship` stores a half-size file that computes exactly what the card reports.

    Each member is a folder written by :func:`run` (``model.keras`` + ``card.json``). A member
    whose card records a data fingerprint must have been trained on exactly the data that
    ``profile``/``splits`` give now; an older card without one must at least match in image
    counts (and says so: ``fingerprint_checked: false``). The ensemble is evaluated like a
    single run, and its card lists every member's recipe, time and validation metrics, so
    the shipped file still traces back to ``python -m fer train`` runs.
    """
    from fer import data
    from fer.evaluate import short_path
    from fer.models import ensemble, round_to_float16
    from fer.predict import sha256

    cleaned = data.clean(splits)
    seed = int(profile.get("seed") or 0)
    train_xy, val_xy = data.training_splits(cleaned, seed=seed)
    fingerprint = data_fingerprint(train_xy, val_xy)
    cards, models = [], []
    for folder in map(Path, members):
        card_file, model_file = folder / "card.json", folder / "model.keras"
        if not (card_file.exists() and model_file.exists()):
            raise FileNotFoundError(f"{folder} is not a finished training run (no card.json and model.keras)")
        card = json.loads(card_file.read_text())
        d = card.get("data", {})
        if d.get("fingerprint") not in (None, fingerprint):
            raise data.DataError(f"{folder} was trained on other data than {profile.get('data_source')} gives now")
        counts = (d.get("train_images"), d.get("validation_images"))
        if d.get("fingerprint") is None and counts != (len(train_xy[0]), len(val_xy[0])):
            raise data.DataError(f"{folder} was trained on {counts[0]} / validated on {counts[1]} images, "
                             f"not {len(train_xy[0])} / {len(val_xy[0])}: other data")
        cards.append({
            "run": short_path(folder), "sha256": sha256(model_file), "fingerprint_checked": "fingerprint" in d,
            **{k: card.get(k) for k in ("arch", "params", "config", "epochs_run", "train_wall_s", "precision",
                                        "hardware", "date")},
            "validation": card.get("metrics", {}).get("validation"),
        })
        models.append(keras.saving.load_model(model_file, compile=False))
    model = ensemble(models, name=name)
    if float16_weights:
        round_to_float16(model)
    run_dir = Path(run_dir) if run_dir else RUNS_DIR / str(profile.get("profile", "custom")) / f"{name}-ensemble"
    _set_aside(run_dir, {})
    run_dir.mkdir(parents=True, exist_ok=True)
    hardware_seen = [c["hardware"] for c in cards]
    card = {
        "name": name,
        "arch": "ensemble",
        "params": int(model.count_params()),
        "input": {"crop": int(model.input_shape[1]), "size": 48, "channels": 1, "range": "0-255"},
        "config": {"arch": "ensemble", "combine": "mean of the members' probabilities", "members": len(cards)},
        "members": cards,
        "epochs_run": sum(int(c["epochs_run"] or 0) for c in cards),  # all members' epochs together
        "train_wall_s": round(sum(float(c["train_wall_s"] or 0) for c in cards), 1),
        "precision": "float32",
        "hardware": hardware_seen[0] if all(h == hardware_seen[0] for h in hardware_seen) else hardware_seen,
        "data": _data_block(profile, splits, cleaned, fingerprint, len(train_xy[0]), len(val_xy[0])),
        "metrics": {"validation": evaluate_model(model, *val_xy), "precision": "float32"},
        "weights_dtype": "float16" if float16_weights else "float32",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    model.save(run_dir / "model.keras")
    (run_dir / "card.json").write_text(json.dumps(card, indent=2, default=list))
    card["model"] = model
    return card


def _data_block(profile, splits, cleaned, fingerprint: str, train_images: int, val_images: int) -> dict[str, Any]:
    """The card's ``data`` entry: where the data came from, its fingerprint, what was used."""
    from fer.evaluate import short_path

    source = profile.get("data_source") or _located_source()
    return {
        "profile": profile.get("profile"),
        "source": short_path(source) if Path(str(source)).exists() else str(source),
        "fingerprint": fingerprint,
        "train_images": int(train_images),
        "dropped_from_train": int(len(splits["train"][0]) - len(cleaned["train"][0])),
        "validation": next((s for s in ("val", "public_test") if s in cleaned), "split of train"),
        "validation_images": int(val_images),
    }


def _located_source() -> str:
    """Where ``fer.data.locate`` finds FER2013 now (what a profile without ``data_source`` used)."""
    from fer import data

    try:
        return str(data.locate(download_ok=False))  # never download just to name the source
    except data.DataError:
        return "unknown"


def data_fingerprint(train_xy: tuple, val_xy: tuple) -> str:
    """sha256 of the training and validation arrays: the same data wherever its file lives."""
    import hashlib

    h = hashlib.sha256()
    for arr in (*train_xy, *val_xy):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def finished_run(run_dir: Path, cfg: TrainConfig, fingerprint: str) -> dict[str, Any] | None:
    """The card of a finished run in ``run_dir`` trained exactly like ``cfg`` on the same data
    (with ``model`` loaded into it), or None. Data is compared by content (``fingerprint``), not
    by path; a card without a fingerprint is never reused."""
    card_file, model_file = run_dir / "card.json", run_dir / "model.keras"
    if not (card_file.exists() and model_file.exists()):
        return None
    try:
        card = json.loads(card_file.read_text())
    except (OSError, ValueError):
        return None
    same_config = _with_defaults(card.get("config") or {}) == json.loads(json.dumps(asdict(cfg), default=list))
    same_data = card.get("data", {}).get("fingerprint") == fingerprint
    same_files = all((card.get(key) or {}).get("sha256") == digest for key, digest in _input_files(cfg).items())
    if not (same_config and same_data and same_files):
        return None
    card["model"] = keras.saving.load_model(model_file)
    return card


def ship(run_dir: str | os.PathLike, name: str | None = None, weights_dir: str | os.PathLike | None = None) -> Path:
    """Copy a run's ``model.keras`` into ``fer/weights/<name>.keras`` with its card + sha256."""
    from fer.config import WEIGHTS_DIR
    from fer.predict import sha256

    run_dir = Path(run_dir)
    card = json.loads((run_dir / "card.json").read_text())
    name = name or card["name"]
    dest_dir = Path(weights_dir or WEIGHTS_DIR)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{name}.keras"
    # Loaded without compiling and saved again: the shipped file holds no optimizer state
    # (AdamW's two moments would triple its size) and is all inference needs. A run whose
    # weights were rounded to float16 values is stored as float16 (half the size, no loss);
    # fer.load_classifier turns it back into float32 layers.
    from fer.models import float32_copy, retyped_copy

    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    model = retyped_copy(model, "float16") if card.get("weights_dtype") == "float16" else float32_copy(model)
    model.save(dest)
    card["shipped_precision"] = "float32"  # what it computes in once loaded
    card.pop("history", None)  # the run folder keeps the full curves; the card stays readable
    card["sha256"] = sha256(dest)
    card["size_bytes"] = dest.stat().st_size
    dest.with_suffix(".json").write_text(json.dumps(card, indent=2, default=list) + "\n")
    return dest
