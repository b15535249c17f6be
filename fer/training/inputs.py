"""Input pipelines: shuffled, augmented, MixUp-ed training batches and plain validation
batches, either as ``tf.data`` (Keras layers in tf.data threads; TensorFlow only) or made on the
host with NumPy/OpenCV (:class:`HostBatches`; any Keras backend). ``TrainConfig.pipeline``
chooses (:func:`resolve_pipeline`)."""

from __future__ import annotations

import math
import os

import keras
import numpy as np

from fer.config import NUM_CLASSES, TrainConfig
from fer.devices import backend
from fer.inference.preprocess import center_crop, fit_crop
from fer.training.distill import blend_targets


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


def make_dataset(x: np.ndarray, y: np.ndarray | None, cfg: TrainConfig, crop: int, training: bool):
    """``tf.data`` of (image float32 ``(B, crop, crop, 1)`` in 0-255, one-hot label) batches.

    ``y`` holds class indices, or ``(N, 7)`` target distributions (:func:`fer.training.distill.soft_targets`)."""
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

    With a ``teacher`` (a :class:`fer.inference.predict.Classifier`; ``distill_online``) each finished
    batch is labelled by it too, view by view, and the targets become
    :func:`fer.training.distill.blend_targets` of
    the (mixed) labels and its probabilities: the teacher and the student see the same crop,
    flip, rotation, erasing and mixture ("consistent teaching", Beyer et al. 2022, *Knowledge
    distillation: a good teacher is patient and consistent*).

    In a data-parallel fit over several processes (:mod:`fer.training.parallel`) each process makes its
    ``shard=(index, count)`` of every global batch of ``cfg.batch_size`` faces: all processes
    draw the same order, take their own slice of each batch, augment and mix it within that
    slice. Batches must then be full (``drop_remainder``, implied by ``count > 1``; so must they
    on several devices of one process, which split each batch evenly): the last, partial batch
    of an epoch is left out, a different few faces each epoch.
    """

    def __init__(self, x: np.ndarray, targets: np.ndarray, cfg: TrainConfig, crop: int,
                 workers: int | None = None, teacher=None, shard: tuple[int, int] = (0, 1),
                 drop_remainder: bool = False):
        super().__init__(workers=workers or 1, max_queue_size=16)
        if x.ndim != 3 or x.shape[1:] != (48, 48):
            raise ValueError(f"HostBatches needs (N, 48, 48) faces, not {x.shape}")
        self.index, self.count = shard
        if cfg.batch_size % self.count or not 0 <= self.index < self.count:
            raise ValueError(f"a batch of {cfg.batch_size} does not split into {self.count} equal shares")
        self.x, self.cfg, self.crop, self.teacher = x, cfg, crop, teacher
        self.drop_remainder = drop_remainder or self.count > 1
        if self.drop_remainder and len(x) < cfg.batch_size:
            raise ValueError(f"{len(x)} training faces do not fill one batch of {cfg.batch_size}")
        self.y = targets.astype("float32") if targets.ndim == 2 else np.eye(NUM_CLASSES, dtype="float32")[targets]
        self.set_epoch(0)

    def __len__(self) -> int:
        n = len(self.x) / self.cfg.batch_size
        return math.floor(n) if self.drop_remainder else math.ceil(n)

    def __getitem__(self, i: int):
        bs = self.cfg.batch_size
        idx = self.order[i * bs : (i + 1) * bs]
        if self.count > 1:  # this process's share of the global batch, and its own random numbers
            share = bs // self.count
            idx = idx[self.index * share : (self.index + 1) * share]
        rng = np.random.default_rng([self.cfg.seed, self.epoch, i, *([self.index] if self.count > 1 else [])])
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


def fit_inputs(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None,
               cfg: TrainConfig, crop: int, pipeline: str, teacher=None, shard: tuple[int, int] = (0, 1),
               full_batches: bool = False) -> tuple:
    """What ``model.fit`` needs for ``pipeline`` (``tf.data`` or ``host``): ``(train_data,
    validation_data, fit_kwargs)``; ``train`` holds faces and class indices or target
    distributions. ``fit_kwargs`` carries the host pipeline's validation batch size and the
    callback that tells :class:`HostBatches` each epoch's number (so a resumed run draws what it
    would have drawn). ``full_batches`` (a data-parallel fit, :mod:`fer.training.parallel`): every
    training batch full, and ``shard`` this process's slice of each."""
    if pipeline == "tf.data":
        if full_batches:
            raise ValueError("a data-parallel fit reads its batches from the host pipeline")
        return (make_dataset(*train, cfg, crop, training=True),
                make_dataset(*val, cfg, crop, training=False) if val is not None else None, {"callbacks": []})
    batches = HostBatches(*train, cfg, crop, teacher=teacher, shard=shard, drop_remainder=full_batches)
    val_data = None if val is None else (center_crop(val[0], crop)[..., None].astype("float32"),
                                         val[1].astype("float32") if val[1].ndim == 2  # vote targets
                                         else keras.utils.to_categorical(val[1], NUM_CLASSES))
    kwargs = {"validation_batch_size": cfg.batch_size,  # of the arrays
              "callbacks": [keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: batches.set_epoch(epoch))]}
    return batches, val_data, kwargs


def resolve_pipeline(pipeline: str = "auto") -> str:
    """``tf.data`` or ``host`` (see ``TrainConfig.pipeline``) for this Keras backend."""
    if pipeline == "auto":
        return "tf.data" if backend() == "tensorflow" else "host"
    if pipeline == "tf.data" and backend() != "tensorflow":
        raise ValueError(f"pipeline 'tf.data' needs the TensorFlow backend, not {backend()!r}; use 'host'")
    return pipeline
