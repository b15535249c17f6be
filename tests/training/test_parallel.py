"""fer.training.parallel's rules without a second process: the plan for each option (and for a backend
without keras.distribution), the global batch and learning-rate rule, each process's share of
a global batch, and callbacks that only process 0 runs. The multi-process runs themselves are in
tests/e2e/test_train_parallel.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fer.config import TrainConfig
from fer.training import inputs as pipeline
from fer.training import parallel
from fer.training.parallel import ParallelError, Plan

TWO = Plan(devices=("gpu:0", "gpu:1"))


@pytest.fixture(autouse=True)
def no_distribution_env(monkeypatch):
    for name in parallel.ENV:
        monkeypatch.delenv(name, raising=False)


def test_one_device_is_the_default_plan():
    said = []
    assert parallel.plan(announce=said.append) == Plan()
    assert parallel.plan("1", announce=said.append) == Plan()
    assert said == [] and not Plan().distributed and Plan().chief and Plan().shard == (0, 1)


def test_without_jax_several_devices_train_on_one_and_say_why(monkeypatch):
    monkeypatch.setattr(parallel, "backend", lambda: "tensorflow")
    said = []
    assert parallel.plan("all", announce=said.append) == Plan()
    assert len(said) == 1 and "JAX" in said[0] and "one device" in said[0]
    with pytest.raises(ParallelError, match="JAX"):  # they would each train alone into one folder
        parallel.plan(coordinator="127.0.0.1:1234", num_processes=2, process_id=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"devices": "two"}, "'all' or a number"),
    ({"devices": 0}, "at least 1"),
    ({"num_processes": 0}, "at least 1"),
    ({"num_processes": 2, "process_id": 0}, "coordinator"),
    ({"num_processes": 2, "coordinator": "127.0.0.1:1234"}, "process's id"),
    ({"num_processes": 2, "coordinator": "127.0.0.1:1234", "process_id": 2}, "0 to 1"),
    ({"num_processes": 2, "coordinator": "127.0.0.1:1234", "process_id": 0, "devices": 2}, "CUDA_VISIBLE_DEVICES"),
])
def test_options_that_do_not_fit_together_are_refused_before_anything_starts(kwargs, message):
    with pytest.raises(ParallelError, match=message):
        parallel.plan(**kwargs)


def test_keras_distribution_variables_are_the_defaults(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "3")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "3")
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234")
    with pytest.raises(ParallelError, match="0 to 2, not 3"):
        parallel.plan()


def test_the_global_batch_scales_the_learning_rate_and_must_split_evenly():
    cfg = TrainConfig(batch_size=64, lr=2e-3)
    assert parallel.scaled(cfg, TWO) is cfg  # by default the recipe is the one-device recipe
    bigger = parallel.scaled(cfg, TWO, 256)
    assert (bigger.batch_size, bigger.lr) == (256, pytest.approx(8e-3))
    assert parallel.scaled(cfg, Plan(), 32).lr == pytest.approx(1e-3)  # the rule holds on one device too
    with pytest.raises(ParallelError, match="multiple of 2"):
        parallel.scaled(cfg, TWO, 65)
    with pytest.raises(ParallelError, match="at least 1"):
        parallel.scaled(cfg, TWO, -4)


def plain(**kw) -> TrainConfig:
    """No augmentation: a batch's images are its faces, so shares can be compared with the whole."""
    return TrainConfig(**{**dict(batch_size=8, flip=False, rotation=0.0, zoom=0.0, shift=0.0, erasing=0.0,
                                 mixup=0.0), **kw})


def test_the_processes_shares_of_a_global_batch_make_it_up():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (29, 48, 48), dtype=np.uint8), np.arange(29) % 7
    whole = pipeline.HostBatches(x, y, plain(), 48)
    shares = [pipeline.HostBatches(x, y, plain(), 48, shard=(i, 2)) for i in range(2)]
    assert len(whole) == 4 and [len(s) for s in shares] == [3, 3]  # full batches only: 5 faces wait an epoch
    for s in shares:
        s.set_epoch(1)
    whole.set_epoch(1)
    for i in range(3):
        images = np.concatenate([s[i][0] for s in shares])
        labels = np.concatenate([s[i][1] for s in shares])
        np.testing.assert_array_equal(images, whole[i][0])
        np.testing.assert_array_equal(labels, whole[i][1])
    assert len(pipeline.HostBatches(x, y, plain(), 48, drop_remainder=True)) == 3  # several devices, one process
    with pytest.raises(ValueError, match="equal shares"):
        pipeline.HostBatches(x, y, plain(batch_size=9), 48, shard=(0, 2))
    with pytest.raises(ValueError, match="fill one batch"):
        pipeline.HostBatches(x[:5], y[:5], plain(), 48, shard=(0, 2))


def test_each_share_draws_its_own_augmentation():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (32, 48, 48), dtype=np.uint8), np.arange(32) % 7
    cfg = TrainConfig(batch_size=16, mixup=0.0, erasing=0.0)
    a, b = (pipeline.HostBatches(np.repeat(x[:1], 32, 0), y, cfg, 44, shard=(i, 2))[0][0] for i in range(2))
    assert not np.array_equal(a, b)  # the same face, shifted and flipped otherwise in each process


def test_fit_inputs_for_each_pipeline():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (40, 48, 48), dtype=np.uint8), np.arange(40) % 7
    train, val, kwargs = pipeline.fit_inputs((x, y), (x[:10], y[:10]), plain(), 44, "host")
    assert isinstance(train, pipeline.HostBatches) and val[0].shape == (10, 44, 44, 1) and val[1].shape == (10, 7)
    assert kwargs["validation_batch_size"] == 8 and len(kwargs["callbacks"]) == 1
    kwargs["callbacks"][0].on_epoch_begin(3)
    assert train.epoch == 3  # a resumed run draws the epoch it resumes
    with pytest.raises(ValueError, match="host pipeline"):
        pipeline.fit_inputs((x, y), None, plain(), 44, "tf.data", full_batches=True)


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append((epoch, keras.distribution.distribution()))


def test_writers_run_on_process_0_only_and_outside_the_distribution():
    chief, other = Recorder(), Recorder()
    parallel.ChiefOnly(chief, TWO).on_epoch_end(0)
    parallel.ChiefOnly(other, Plan(devices=TWO.devices, processes=2, process=1)).on_epoch_end(0)
    assert chief.calls == [(0, None)] and other.calls == []


def test_a_plan_describes_itself_for_the_log_and_the_card():
    assert Plan().describe() == "one device"
    spread = Plan(devices=("gpu:0", "gpu:1", "gpu:2", "gpu:3"), processes=2, process=1)
    assert spread.describe() == "4 devices (gpu:0, gpu:1, gpu:2, gpu:3) in 2 processes"
    assert spread.record()["processes"] == 2 and not spread.chief and spread.shard == (1, 2)


def test_the_train_command_refuses_processes_without_a_coordinator_plainly(capsys):
    from fer.cli import main

    assert main(["train", "--profile", "smoke", "--num-processes", "2", "--process-id", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 processes need the coordinator's HOST:PORT") and "Traceback" not in err
