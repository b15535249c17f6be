"""Training one model: optimiser and learning-rate schedule, callbacks, and ``fit``, which
resumes an interrupted run from its run folder.

``fit(train, val, cfg)`` trains ``cfg.arch`` and returns it with its history. The crop that
training uses is stored in the model's input shape, and ``fer.inference.predict`` reads it from there, so
training and inference preprocess identically. Whole runs (card, reuse, shipping) are
:mod:`fer.training.runs`; input batches :mod:`fer.training.inputs`; distillation :mod:`fer.training.distill`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from fer.config import NUM_CLASSES, TrainConfig
from fer.devices import backend, set_precision
from fer.inference import cards
from fer.training import parallel
from fer.training.distill import (
    host_teacher,
    load_teacher,
    resolve_online_teacher,
    soft_targets,
    teach_in_step,
)
from fer.training.inputs import fit_inputs, resolve_pipeline


def class_weights(y: np.ndarray, mode: str) -> dict[int, float] | None:
    """Per-class loss weights: ``balanced`` = N / (K·n_c); ``sqrt`` = its square root."""
    if mode == "none":
        return None
    y = y.argmax(axis=1) if y.ndim == 2 else y  # vote targets: weighed by their plurality class
    counts = np.bincount(y, minlength=NUM_CLASSES).astype(float)
    w = len(y) / (NUM_CLASSES * np.maximum(counts, 1))
    if mode == "sqrt":
        w = np.sqrt(w)
    elif mode != "balanced":
        raise ValueError(f"class_weight must be none, balanced or sqrt, not {mode!r}")
    return {i: float(v) for i, v in enumerate(w)}


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


class Progress(keras.callbacks.Callback):
    """One line per epoch for a run without Keras' own output (notebooks, ``make reproduce``):
    ``main-s0: epoch 3/45 · 2.1 min elapsed · ETA 31 min · val. accuracy 0.612``."""

    def __init__(self, label: str, epochs: int, offset: float = 0.0, first: int = 0):
        super().__init__()
        self.label, self.epochs, self.offset, self.first = label, epochs, offset, first

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        done = epoch + 1
        elapsed = time.time() - self.start
        per_epoch = elapsed / max(done - self.first, 1)
        score = next((f" · {k.replace('val_', 'val. ')} {logs[k]:.3f}" for k in ("val_accuracy", "accuracy") if k in logs), "")
        print(f"{self.label}: epoch {done}/{self.epochs} · {(self.offset + elapsed) / 60:.1f} min elapsed · "
              f"ETA {per_epoch * (self.epochs - done) / 60:.1f} min{score}", flush=True)


def fit(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    cfg: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    callbacks: list | None = None,
    verbose: int | str = "auto",
    fingerprint: str | None = None,
    plan: parallel.Plan | None = None,
    label: str | None = None,
):
    """Train ``cfg.arch`` on ``train``; validate on ``val``. Returns ``(model, history_dict)``.

    ``run_dir`` holds ``log.csv``, ``best.keras`` (best validation accuracy) and a
    ``BackupAndRestore`` folder: calling ``fit`` again with the same ``run_dir`` and settings
    after an interruption resumes from the last finished epoch instead of starting over, and the
    returned history and ``wall_s`` cover the whole run. Anything else already in ``run_dir``
    (a finished run, or one with other settings or data) is moved aside to
    ``<run_dir>-<date>``, never resumed into or overwritten. ``fingerprint`` identifies the data.

    ``plan`` (:func:`fer.training.parallel.plan`) trains data-parallel on several devices or processes:
    ``cfg.batch_size`` is the global batch; process 0 alone writes ``run_dir``; the returned
    model is a copy of the trained one on this process alone.

    With ``verbose=0`` (notebooks) a :class:`Progress` line per epoch, named ``label``, says how far
    the run is and how long it has left.
    """
    from fer.training import networks

    x, y = _capped(train, cfg)
    online = bool(cfg.teacher and cfg.distill_online)  # the teacher labels each batch, not each face
    targets = soft_targets(x, y, cfg) if cfg.teacher and not online else y  # the teacher runs in float32
    placement = resolve_online_teacher(cfg.online_teacher) if online else None
    pipeline = _pipeline(cfg, placement)
    policy = _seed_and_precision(cfg)
    plan = plan or parallel.Plan()
    # a data-parallel fit has only full batches (each split evenly between the devices)
    steps = (len(x) // cfg.batch_size) if plan.distributed else math.ceil(len(x) / cfg.batch_size)

    def build():
        return compile_model(_whole_model(cfg) if cfg.arch == "ensemble" else networks.build(cfg.arch, cfg.hp), cfg, steps)

    model = _student(build, cfg, plan, placement)
    teacher = host_teacher(cfg.teacher) if placement == "host" else None
    train_ds, val_ds, extra = fit_inputs((x, targets), val, cfg, int(model.input_shape[1]), pipeline, teacher=teacher,
                                         shard=plan.shard, full_batches=plan.distributed)
    cbs: list = extra.pop("callbacks", [])
    if plan.distributed and val_ds is not None:  # process 0 validates, every process learns the result
        cbs.append(parallel.ChiefValidation(val_ds, extra.pop("validation_batch_size"), build, plan))
        val_ds = None
    monitor = "val_accuracy" if val is not None else "accuracy"
    cbs += _schedule_callbacks(cfg, monitor)
    earlier: dict[str, list] = {}
    if run_dir is not None:
        run_dir = Path(run_dir)
        earlier = _open_run_dir(run_dir, cfg, policy, fingerprint, plan)
        cbs += _run_dir_callbacks(run_dir, cfg, plan, monitor, earlier)
    cbs += list(callbacks or [])  # after BackupAndRestore, so an epoch is saved before they run
    if verbose == 0 and plan.chief:
        cbs.append(Progress(label or (run_dir.name if run_dir else cfg.arch), cfg.epochs,
                            offset=sum(earlier.get("epoch_s", [])), first=len(earlier.get("epoch_s", []))))
    start = time.time()
    with plan.scope():
        hist = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            class_weight=class_weights(y, cfg.class_weight),
            shuffle=False,  # the pipeline shuffles already
            callbacks=cbs,
            verbose=verbose if plan.chief else 0,
            **extra,
        )
    if plan.distributed:
        model = parallel.local_copy(model, build)
    history = _curves(hist, time.time() - start, earlier, run_dir)
    history.update(policy=policy, pipeline=pipeline, **({"online_teacher": placement} if online else {}),
                   train_images=int(len(x)), **({"data_parallel": plan.record()} if plan.distributed else {}))
    return model, history


def _capped(train: tuple[np.ndarray, np.ndarray], cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """``train``, or a seeded random ``cfg.max_train`` of its images when it holds more."""
    x, y = train
    if cfg.max_train and len(x) > cfg.max_train:
        idx = np.random.default_rng(cfg.seed).permutation(len(x))[: cfg.max_train]
        x, y = x[idx], y[idx]
    return x, y


def _pipeline(cfg: TrainConfig, placement: str | None) -> str:
    """The input pipeline this fit uses: the host one wherever the online teacher runs there."""
    if placement == "host" and cfg.pipeline == "tf.data":
        raise ValueError("the online teacher runs in the host pipeline here (TensorFlow on a CPU); "
                         "use pipeline host or auto, or online_teacher step")
    return "host" if placement == "host" else resolve_pipeline(cfg.pipeline)


def _seed_and_precision(cfg: TrainConfig) -> str:
    """Seed Keras (and make TensorFlow's ops deterministic when asked); set and return the precision policy."""
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic and backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return set_precision(cfg.precision)


def _student(build, cfg: TrainConfig, plan: parallel.Plan, placement: str | None):
    """The compiled network to train, made under ``plan``'s scope: from ``cfg.init`` when given,
    with the teacher in its train step when it runs there."""
    with plan.scope():  # under a distribution every variable is replicated on every device
        model = build()
        if cfg.init and cfg.arch != "ensemble":  # an ensemble is its init file already
            load_weights_from(model, cfg.init)
        if placement == "step":
            teach_in_step(model, load_teacher(cfg.teacher), cfg)
    return model


def _whole_model(cfg: TrainConfig):
    """``arch: ensemble``: the averaged model in ``cfg.init`` (``fer/weights/main.keras``) as one
    graph to fine-tune, the loss on the averaged probabilities. Its members are built again from
    the recipes its card lists, under the run's precision policy (the shipped file's float32
    copies would train in float32, about three times slower on a CPU with bfloat16), and given
    the shipped weights."""
    from fer.training import networks

    if not cfg.init:
        raise ValueError("arch ensemble fine-tunes an averaged model: give init, a .keras ensemble "
                         "(python -m fer ensemble), e.g. --init fer/weights/main.keras")
    shipped = load_teacher(cfg.init)  # checked against its card
    members = [layer for layer in shipped.layers if layer.name.startswith("member_")]
    recipes = cards.for_model(cfg.init).get("members") or []
    if not members or len(recipes) != len(members):
        raise ValueError(f"{cfg.init}: not an ensemble whose card lists its members ({len(members)} members, "
                         f"{len(recipes)} recipes); fine-tune a single network with its own arch instead")
    inputs = keras.Input(shape=shipped.input_shape[1:], name="face")
    outputs = []
    for i, (layer, recipe) in enumerate(zip(members, recipes, strict=True)):
        net = networks.build(recipe["arch"], (recipe.get("config") or {}).get("hp"))
        net.set_weights(layer.get_weights())
        net.name = f"member_{i}"
        outputs.append(net(inputs))
    return keras.Model(inputs, keras.layers.Average(dtype="float32", name="probs")(outputs), name=shipped.name)


def _schedule_callbacks(cfg: TrainConfig, monitor: str) -> list:
    """The callbacks that steer training on ``monitor``: the plateau schedule and early stopping."""
    cbs: list = []
    if cfg.schedule == "plateau":
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=cfg.plateau_factor,
                                                       patience=cfg.plateau_patience))  # no floor, as the seed
    if cfg.early_stop:
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=cfg.early_stop, restore_best_weights=True))
    return cbs


def _open_run_dir(run_dir: Path, cfg: TrainConfig, policy: str, fingerprint: str | None,
                  plan: parallel.Plan) -> dict[str, list]:
    """Make ``run_dir`` ready (process 0: another run set aside, ``config.json`` written); return the
    log of the epochs an interrupted run finished (empty otherwise, and on the other processes)."""
    earlier: dict[str, list] = {}
    if plan.chief:
        files = input_files(cfg)  # a teacher or starting point is named by path: its contents count too
        settings = json.loads(json.dumps({**asdict(cfg), "policy": policy, "data": fingerprint,
                                          **({"files": files} if files else {})}, default=list))
        moved = set_aside(run_dir, settings)
        if moved:
            print(f"{run_dir} held another run (finished, or other settings or data); moved it to {moved}")
        earlier = read_log(run_dir / "log.csv")  # epochs finished before an interruption
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(settings, indent=2))
    parallel.barrier(plan, "fer-run-folder-ready")  # the others restore from what process 0 kept
    return earlier


def _run_dir_callbacks(run_dir: Path, cfg: TrainConfig, plan: parallel.Plan, monitor: str,
                       earlier: dict[str, list]) -> list:
    """The callbacks that keep a run in ``run_dir``: epoch times, the backup to resume from, the
    log, the best epoch's model and TensorBoard (process 0 alone writes)."""
    # double_checkpoint: the epoch before stays beside the latest backup, so a kill in
    # the middle of writing it (a truncated file, seen on a GPU) resumes from there
    backup = (parallel.SharedBackup(str(run_dir / "backup"), plan, double_checkpoint=True) if plan.processes > 1
              else keras.callbacks.BackupAndRestore(str(run_dir / "backup"), double_checkpoint=True))
    writers = [
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor=monitor, mode="max", save_best_only=True),
        *([keras.callbacks.TensorBoard(str(run_dir / "tb"))] if cfg.tensorboard else []),
    ]
    return [
        EpochTimer(offset=sum(earlier.get("epoch_s", []))),  # before CSVLogger: adds epoch_s/elapsed_s
        backup,
        *([parallel.ChiefOnly(cb, plan) for cb in writers] if plan.distributed else writers),
    ]


def _curves(hist, wall_s: float, earlier: dict[str, list], run_dir: Path | None) -> dict:
    """The history's curves and ``wall_s``; for a resumed run, the whole run's, from its log."""
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    history["wall_s"] = wall_s + sum(earlier.get("epoch_s", []))
    if earlier:  # a resumed run: the whole run's curves, from the log
        history.update({k: v for k, v in read_log(run_dir / "log.csv").items() if k != "epoch"})
    return history


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


def with_defaults(settings: dict) -> dict:
    """Stored run settings with the defaults of training options added since they were written:
    a run made before an option existed was trained as its default says, so it still matches."""
    defaults = json.loads(json.dumps(asdict(TrainConfig()), default=list))
    return {**{k: v for k, v in defaults.items() if k not in settings}, **settings}


def set_aside(run_dir: Path, settings: dict) -> Path | None:
    """Move what ``run_dir`` holds to ``<run_dir>-<date>`` unless it is an interrupted run with
    these ``settings`` (which ``BackupAndRestore`` resumes). Returns where it went, or None."""
    kept = ("log.csv", "backup", "best.keras", "model.keras", "card.json")
    if not any((run_dir / name).exists() for name in kept):  # nothing trained there yet
        return None
    try:
        same = with_defaults(json.loads((run_dir / "config.json").read_text())) == settings
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


def input_files(cfg: TrainConfig) -> dict[str, str]:
    """sha256 of the model files a run starts from (``teacher``, ``init``), by option name: a run
    learned from another file of the same name is not this run, neither to reuse nor to resume."""
    return {key: cards.sha256(path) for key in ("teacher", "init") if (path := getattr(cfg, key))}
