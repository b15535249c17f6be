"""Data-parallel training with Keras 3's own distribution API (``keras.distribution``):
``python -m fer train ... --devices all`` replicates the model on every local accelerator and
splits each batch between them; ``--coordinator HOST:PORT --num-processes N --process-id I``
(or Keras' ``KERAS_DISTRIBUTION_*`` variables) joins several processes, one per machine, into
one run through ``keras.distribution.initialize`` (``jax.distributed`` underneath). No
scheduler or collective of this project's: Keras' ``DataParallel`` places the variables and
the batches, JAX averages the gradients.

Implemented by Keras for the JAX backend only. Under TensorFlow (whose ``MirroredStrategy`` and
``MultiWorkerMirroredStrategy`` are reported broken with Keras 3's ``fit``: keras-team/keras
#20585, #21069) and PyTorch, :func:`plan` says so and training runs on one device.

The rules a data-parallel run follows:

- **Batch and learning rate.** The profile's ``batch_size`` is the *global* batch, what one
  optimiser step sees, split evenly between the devices; so by default a run on 4 GPUs follows
  the same recipe as on one, only faster. ``--global-batch B`` changes it and scales the
  learning rate with it (the linear rule of Goyal et al. 2017, *Accurate, large minibatch SGD*;
  the cosine schedule's warm-up is what that rule needs). ``B`` must split evenly between the
  devices, and every batch is full: the last, partial batch of each epoch is left out.
- **Files.** Every process loads the data and takes its own slice of each global batch
  (:class:`fer.training.inputs.HostBatches` ``shard``). Process 0 alone writes the run folder (the
  log, ``best.keras``, the backup, ``model.keras``, the card) and ships; the others print
  nothing but errors.
- **Resume.** After an interruption start every process again with the same command: each
  restores the last backup from the run folder, which must therefore be the same folder for
  all of them (one machine, or a shared file system); the processes check that they resumed
  from the same epoch and stop with an error if not.

Saving under a multi-process distribution creates arrays on every process's devices, so process
0 alone, saving, waited for the others forever: it saves with the distribution unset
(:func:`undistributed`), from the replicated variables it holds in full.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, replace

import keras
import numpy as np

from fer.config import TrainConfig
from fer.devices import backend


class ParallelError(ValueError):
    """Devices, processes or a batch that do not fit together (the CLI prints it plainly)."""


ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclass(frozen=True)
class Plan:
    """Where one training run computes: ``devices`` (Keras device names, e.g. ``gpu:0``, of all
    processes together; empty: one device, no distribution), this ``process`` of ``processes``."""

    devices: tuple[str, ...] = ()
    processes: int = 1
    process: int = 0

    @property
    def distributed(self) -> bool:
        return len(self.devices) > 1

    @property
    def chief(self) -> bool:
        """Process 0: the one that writes."""
        return self.process == 0

    @property
    def shard(self) -> tuple[int, int]:
        """This process's share of each global batch: ``(index, count)``."""
        return self.process, self.processes

    def distribution(self):
        """``keras.distribution.DataParallel`` over the devices (each process feeds its own
        share of the batches, so Keras does not shard them again)."""
        return keras.distribution.DataParallel(devices=list(self.devices), auto_shard_dataset=False)

    def scope(self):
        """The distribution's scope (variables made in it are replicated), or a no-op."""
        return self.distribution().scope() if self.distributed else contextlib.nullcontext()

    def describe(self) -> str:
        if not self.distributed:
            return "one device"
        where = f" in {self.processes} processes" if self.processes > 1 else ""
        return f"{len(self.devices)} devices ({', '.join(self.devices)}){where}"

    def record(self) -> dict:
        """The model card's entry (``hardware.data_parallel``)."""
        return {"devices": list(self.devices), "processes": self.processes, "api": "keras.distribution.DataParallel"}


def plan(devices: str | int | None = None, coordinator: str | None = None, num_processes: int | None = None,
         process_id: int | None = None, announce=print) -> Plan:
    """The :class:`Plan` for ``--devices`` (``all``, or how many local devices; default: one,
    or all with several processes) and, for a run over several processes, the coordinator's
    ``HOST:PORT``, the number of processes and this one's id (each defaults to Keras'
    ``KERAS_DISTRIBUTION_*`` variable).

    Joins the processes (``keras.distribution.initialize``) before anything else uses JAX, so
    call it first. A backend without ``keras.distribution``, or a single device, gives the
    one-device plan and ``announce``s why; several processes there are an error (each would
    train alone, into the same folder)."""
    coordinator = coordinator or os.environ.get(ENV[0]) or None
    num_processes = int(num_processes if num_processes is not None else os.environ.get(ENV[1]) or 1)
    if process_id is None and os.environ.get(ENV[2]):
        process_id = int(os.environ[ENV[2]])
    if devices is None:
        devices = "all" if num_processes > 1 else 1
    if str(devices) != "all":
        try:
            devices = int(devices)
        except ValueError:
            raise ParallelError(f"--devices must be 'all' or a number of devices, not {devices!r}") from None
        if devices < 1:
            raise ParallelError(f"--devices must be 'all' or at least 1, not {devices}")
    if num_processes < 1:
        raise ParallelError(f"the number of processes must be at least 1, not {num_processes}")
    if num_processes > 1:
        if devices != "all":
            raise ParallelError("with several processes each one uses every device it sees (--devices all); "
                                "choose a machine's GPUs with CUDA_VISIBLE_DEVICES")
        if not coordinator or process_id is None:
            raise ParallelError(f"{num_processes} processes need the coordinator's HOST:PORT (--coordinator or {ENV[0]}) "
                                f"and this process's id, 0 to {num_processes - 1} (--process-id or {ENV[2]})")
        if not 0 <= process_id < num_processes:
            raise ParallelError(f"the process id must be 0 to {num_processes - 1}, not {process_id}")
    if devices == 1 and num_processes == 1:
        return Plan()
    if backend() != "jax" and num_processes > 1:  # each would train alone, into the same run folder
        raise ParallelError(f"several processes train one model through Keras' distribution API, which Keras "
                            f"implements for the JAX backend (KERAS_BACKEND=jax), not {backend()}")
    if backend() != "jax":
        announce(f"data-parallel training needs Keras' distribution API, which Keras implements for the JAX backend "
                 f"(KERAS_BACKEND=jax, pip install 'fer-study[scale]'), not {backend()}: training on one device")
        return Plan()
    if num_processes > 1:
        keras.distribution.initialize(job_addresses=coordinator, num_processes=num_processes, process_id=process_id)
    else:
        process_id = 0
    found = keras.distribution.list_devices()  # every process's, after initialize
    if num_processes == 1 and devices != "all":
        if devices > len(found):
            raise ParallelError(f"--devices {devices}: this machine has {len(found)} ({', '.join(found)})")
        found = found[:devices]
    if len(found) == 1:
        announce(f"one device ({found[0]}): training without a distribution")
        return Plan()
    return Plan(devices=tuple(found), processes=num_processes, process=process_id)


def scaled(cfg: TrainConfig, chosen: Plan, global_batch: int | None = None) -> TrainConfig:
    """``cfg`` for a data-parallel run: ``global_batch`` (default: ``cfg.batch_size``) as the
    batch and the learning rate scaled by the same factor, checked to split between the devices."""
    batch = int(global_batch or cfg.batch_size)
    if batch < 1:
        raise ParallelError(f"--global-batch must be at least 1, not {batch}")
    if batch % len(chosen.devices or (None,)):
        n = len(chosen.devices)
        raise ParallelError(f"a global batch of {batch} does not split evenly between {n} devices; "
                         f"give --global-batch a multiple of {n}")
    if batch == cfg.batch_size:
        return cfg
    return replace(cfg, batch_size=batch, lr=cfg.lr * batch / cfg.batch_size)


@contextlib.contextmanager
def undistributed():
    """No distribution inside: new variables and arrays live on this process alone."""
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def barrier(chosen: Plan, name: str) -> None:
    """Wait until every process has reached ``name`` (a no-op in one process)."""
    if chosen.processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def gather(chosen: Plan, value: int) -> list[int]:
    """``value`` from every process, in process order."""
    if chosen.processes == 1:
        return [int(value)]
    from jax.experimental import multihost_utils

    return [int(v) for v in np.asarray(multihost_utils.process_allgather(np.int32(value))).ravel()]


class ChiefOnly(keras.callbacks.Callback):
    """``callback`` on process 0 only, with the distribution unset while it runs (it writes)."""

    HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
             "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end")

    def __init__(self, callback, chosen: Plan):
        super().__init__()
        self.callback, self.active = callback, chosen.chief
        for hook in self.HOOKS:
            setattr(self, hook, self._forward(hook))

    def _forward(self, hook):
        def call(*args, **kwargs):
            if self.active:
                with undistributed():
                    getattr(self.callback, hook)(*args, **kwargs)
        return call

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)


class SharedBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` for several processes: every process restores from the (shared)
    run folder, and they must agree on the epoch they resume from; process 0 alone saves the
    backup and deletes it at the end."""

    def __init__(self, backup_dir: str, chosen: Plan, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.plan = chosen

    def on_train_begin(self, logs=None):
        # checked before restoring: loading the weights is a collective that all must join
        epochs = gather(self.plan, self._saved_epoch())
        if len(set(epochs)) > 1:
            raise RuntimeError(f"the processes would resume from different epochs ({epochs}, in process order; -1: "
                               f"no backup): each must see the same run folder ({self.backup_dir} on one machine "
                               "or on storage they share)")
        super().on_train_begin(logs)

    def _saved_epoch(self) -> int:
        """The epoch the backup in this process's run folder resumes from; -1 without one."""
        try:
            with open(self._training_metadata_path) as f:
                return int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError):
            return -1

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch, self._last_batch_seen = epoch + 1, 0
        if self.plan.chief and self.save_freq == "epoch":
            with undistributed():
                self._save_model()

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch) and self.plan.chief:
            with undistributed():
                self._save_model()

    def on_train_end(self, logs=None):
        if self.plan.chief:
            super().on_train_end(logs)


class ChiefValidation(keras.callbacks.Callback):
    """Validation for a data-parallel fit: after each epoch process 0 evaluates a copy of the
    model on this process alone (``build()``, then the trained weights) on every validation
    face, and every process receives its ``val_loss`` and ``val_accuracy`` (so that
    ``ReduceLROnPlateau``, ``EarlyStopping`` and ``ModelCheckpoint`` decide alike everywhere).

    Keras' own validation would split each validation batch between the devices too, which
    needs full batches: 3,589 PublicTest faces (37 x 97) fill none but batches of 37, 97 or
    all, and padding them with faces of weight 0 does not help, since compiled ``metrics``
    ignore sample weights and the loss divides by the batch size, padding included."""

    def __init__(self, val: tuple[np.ndarray, np.ndarray], batch_size: int, build, chosen: Plan):
        super().__init__()
        self.val, self.batch_size, self.build, self.plan = val, batch_size, build, chosen
        self.local = None

    def on_epoch_end(self, epoch, logs=None):
        values = np.zeros(2, np.float32)
        if self.plan.chief:
            with undistributed():
                if self.local is None:
                    self.local = self.build()
                self.local.set_weights([np.asarray(w) for w in self.model.get_weights()])
                got = self.local.evaluate(*self.val, batch_size=self.batch_size, verbose=0, return_dict=True)
            values[:] = got["loss"], got["accuracy"]
        if self.plan.processes > 1:
            from jax.experimental import multihost_utils

            values = np.asarray(multihost_utils.broadcast_one_to_all(values))
        if logs is not None:
            logs["val_loss"], logs["val_accuracy"] = float(values[0]), float(values[1])


def local_copy(model, build):
    """A model of this process alone (``build()``, outside any distribution) holding the
    trained ``model``'s weights, which a data-parallel run replicates in full on every process."""
    with undistributed():
        copy = build()
        copy.set_weights([np.asarray(w) for w in model.get_weights()])
    return copy
