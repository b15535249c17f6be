"""Training stack on generated data: shapes, budgets, a smoke fit, resume, determinism, TTA."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from fer import config, data
from fer.config import CLASSES
from fer.data import audit
from fer.evaluation import metrics as evaluate
from fer.inference import dtypes, preprocess, runtimes
from fer.inference.predict import Classifier
from fer.inference.preprocess import tta_views
from fer.training import distill, networks, runs
from fer.training import fit as train
from fer.training import inputs as pipeline

TINY = {"stem_width": 8, "widths": (8, 16, 32, 64), "dropout": 0.1}


@pytest.fixture(scope="module")
def splits():
    return data.synthetic(n_train=24, n_test=6, seed=1)


def tiny_profile():
    """A params profile whose main block trains a tiny ResNet for one float32 epoch (a new dict)."""
    return {"profile": "t", "data_source": "synthetic", "seed": 0,
            "main": {"arch": "resnet", "epochs": 1, "batch_size": 16, "warmup_epochs": 0, "precision": "float32",
                      "hp": {"crop": 40, "stem_width": 8, "widths": [8, 16], "blocks": [1, 1]}}}


def tiny_config(**kw):
    base = dict(arch="resnet", hp=TINY, epochs=1, batch_size=32, lr=3e-3, warmup_epochs=0, precision="float32")
    return config.TrainConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "arch, budget, crop",
    [("baseline", 4_600_000, 48), ("resnet", 5_000_000, 44), ("lite", 100_000, 44)],
)
def test_architectures_output_probabilities_within_budget(arch, budget, crop):
    model = networks.build(arch)
    assert model.count_params() <= budget
    assert model.input_shape == (None, crop, crop, 1)
    out = model(np.random.default_rng(0).uniform(0, 255, (3, crop, crop, 1)).astype("float32"))
    assert out.shape == (3, len(CLASSES))
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-5)


def test_seed_baseline_has_the_seed_shape():
    model = networks.build("baseline")
    convs = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert convs == [64, 128, 512, 512]
    assert dense == [256, 512, len(CLASSES)]


def test_unknown_architecture_and_option_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        networks.build("vgg99")
    with pytest.raises(ValueError, match="unknown training option"):
        config.TrainConfig.from_dict({"epochs": 1, "learning_rate": 0.1})


def test_profile_block_merges_tuner_hp_and_notebook_overrides():
    profile = {"profile": "x", "epochs": 3, "seed": 7, "main": {"arch": "resnet", "lr": 0.1, "hp": {"dropout": 0.2}}}
    cfg = config.config_from_profile(profile, "main", hp={"lr": 0.01, "widths": [8, 16, 32, 64]})
    assert (cfg.epochs, cfg.seed, cfg.lr) == (3, 7, 0.01)
    assert cfg.hp == {"dropout": 0.2, "widths": [8, 16, 32, 64]}
    profile["lite"] = {"arch": "lite", "epochs": 30}
    profile["baseline"] = {"arch": "baseline"}
    assert config.config_from_profile(profile, "lite").epochs == 30  # its own length
    assert config.config_from_profile(profile, "baseline").epochs == 3  # the profile's default


def test_augmentation_keeps_shape_and_range(splits):
    x, y = splits["train"]
    cfg = tiny_config(mixup=0.2)
    images, labels = next(iter(pipeline.make_dataset(x, y, cfg, crop=40, training=True)))
    assert images.shape[1:] == (40, 40, 1)
    assert 0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 255
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_augmentation_and_mixup_stay_float32_under_mixed_precision(splits, policy):
    # under a mixed global policy the augmentation layers computed in bfloat16/float16, and
    # MixUp then failed (float32 weights times bfloat16 images): params/full.yaml could not train
    x, y = splits["train"]
    keras.mixed_precision.set_global_policy(policy)
    try:
        images, labels = next(iter(pipeline.make_dataset(x, y, tiny_config(mixup=0.2), crop=40, training=True)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert images.dtype == "float32" and labels.dtype == "float32"
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smoke", "cpu", "full"])
def test_every_profile_block_trains_under_mixed_precision(name, splits, tmp_path):
    # each block's own recipe (architecture, optimizer, mixup, augmentation) for a few steps, in
    # the mixed precision the profile gets on a bf16 CPU or a GPU: the full profile crashed there
    import dataclasses

    from fer.config import load_profile

    profile = load_profile(name)
    blocks = [b for b in ("main", "lite", "baseline") if b in profile]
    try:
        for block in blocks:
            # the recipe's lite learns from the ensemble it makes first; here it trains on labels alone
            plain = {"distill": 0.0, "distill_online": False} if profile[block].get("distill") else None
            cfg = dataclasses.replace(config.config_from_profile(profile, block, plain), epochs=1, batch_size=8,
                                      precision="mixed_bfloat16")
            _, history = train.fit(splits["train"], None, cfg, run_dir=tmp_path / block, verbose=0)
            assert np.isfinite(history["loss"]).all(), block
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert blocks == ["main", "lite", "baseline"]


def test_input_pipelines_run_without_tf_data_autotuning(splits):
    # with autotuning on, each epoch's new iterator waited up to a minute for the old one's
    # autotuner thread (benchmarks/epoch_start.py)
    x, y = splits["train"]
    for training in (True, False):
        ds = pipeline.make_dataset(x, y, tiny_config(), crop=40, training=training)
        assert ds.options().autotune.enabled is False


def test_host_augmentation_is_the_identity_when_switched_off_and_draws_like_the_keras_layers(splits):
    x = splits["train"][0]
    off = tiny_config(flip=False, rotation=0, zoom=0, erasing=0)
    out = pipeline.augment_batch(x, off, 48, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == (len(x), 48, 48, 1)
    np.testing.assert_array_equal(out[..., 0], x)
    flipped = pipeline.augment_batch(x, tiny_config(rotation=0, zoom=0, erasing=0), 48, np.random.default_rng(0))
    assert all(np.array_equal(f[..., 0], a) or np.array_equal(f[..., 0], a[:, ::-1]) for f, a in zip(flipped, x, strict=True))
    assert not np.array_equal(flipped[..., 0], x)  # some of them flipped
    # the full recipe moves pixels about as much as the Keras layers that tf.data runs
    cfg = config.TrainConfig(mixup=0.0)
    faces = np.repeat(x, 8, axis=0)
    centre = preprocess.center_crop(faces, 44).astype(np.float32)
    host = pipeline.augment_batch(faces, cfg, 44, np.random.default_rng(1))
    layers = np.asarray(pipeline.augmenter(cfg, 44)(faces[..., None].astype("float32"), training=True))
    assert host.shape == layers.shape and 0 <= host.min() and host.max() <= 255
    moved_host, moved_layers = (np.abs(a[..., 0] - centre).mean() for a in (host, layers))
    assert 0.7 < moved_host / moved_layers < 1.4, (moved_host, moved_layers)


def test_host_batches_are_repeatable_mixed_and_reshuffled_each_epoch(splits):
    x, y = splits["train"]
    cfg = tiny_config(mixup=0.2, batch_size=16, seed=3)
    batches = pipeline.HostBatches(x, y, cfg, 40, workers=2)
    assert len(batches) == -(-len(x) // 16)
    images, labels = batches[0]
    assert images.shape == (16, 40, 40, 1) and images.dtype == np.float32
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)
    assert (labels.max(axis=1) < 1).any()  # mixed
    again = pipeline.HostBatches(x, y, cfg, 40)[0]
    for a, b in zip((images, labels), again, strict=True):
        np.testing.assert_array_equal(a, b)
    batches.on_epoch_end()
    assert not np.array_equal(batches[0][0], images)
    batches.on_epoch_end()
    jumped = pipeline.HostBatches(x, y, cfg, 40)
    jumped.set_epoch(2)  # what a resumed run asks for: the batches of epoch 2, as if run through
    np.testing.assert_array_equal(jumped[1][0], batches[1][0])
    with pytest.raises(ValueError, match="48, 48"):
        pipeline.HostBatches(x[:, :40, :40], y, cfg, 40)


@pytest.mark.slow
def test_host_pipeline_fits_under_tensorflow_too(splits, tmp_path, monkeypatch):
    # the pipeline Keras on JAX/PyTorch uses (no tf.data there); chosen explicitly here
    drawn, getitem = [], pipeline.HostBatches.__getitem__
    monkeypatch.setattr(pipeline.HostBatches, "__getitem__", lambda self, i: (drawn.append(self.epoch), getitem(self, i))[1])
    cfg = tiny_config(epochs=4, pipeline="host", class_weight="balanced")  # Keras weighs the batches
    model, history = train.fit(splits["train"], splits["public_test"], cfg, run_dir=tmp_path, verbose=0)
    # each epoch draws its own batches (Keras also ends an "epoch" after peeking at the first batch)
    assert [e for i, e in enumerate(drawn) if i == 0 or e != drawn[i - 1]] == [0, 1, 2, 3]
    assert history["pipeline"] == "host" and history["accuracy"][-1] > 0.5  # chance: 0.14
    assert len(history["val_accuracy"]) == 4
    assert keras.saving.load_model(tmp_path / "best.keras").count_params() == model.count_params()
    assert pipeline.resolve_pipeline("auto") == "tf.data"  # this environment's backend is TensorFlow
    with pytest.raises(ValueError, match="pipeline"):
        tiny_config(pipeline="gpu")


@pytest.mark.slow
def test_a_run_with_float16_weights_ships_half_size_and_computes_what_its_card_says(splits, tmp_path):
    profile = tiny_profile()
    card = runs.run(profile, splits, run_dir=tmp_path / "run", verbose=0, float16_weights=True)
    assert card["weights_dtype"] == "float16"
    for w in card["model"].get_weights():
        np.testing.assert_array_equal(w, w.astype(np.float16).astype(w.dtype))
    dest = runs.ship(tmp_path / "run", weights_dir=tmp_path / "weights")
    full = runs.run(profile, splits, run_dir=tmp_path / "run32", verbose=0)  # same seed, float32 weights
    runs.ship(tmp_path / "run32", name="f32", weights_dir=tmp_path / "weights")
    assert dest.stat().st_size < (tmp_path / "weights" / "f32.keras").stat().st_size
    shipped = keras.saving.load_model(dest, compile=False)
    assert {str(v.dtype) for v in shipped.weights} == {"float16"}  # stored at half size
    val_xy = audit.training_splits(audit.clean(splits), seed=0)[1]
    assert evaluate.evaluate_model(dtypes.float32_copy(shipped), *val_xy) == card["metrics"]["validation"]
    assert full["weights_dtype"] == "float32"
    # a finished float32 run asked for float16 weights is rounded and evaluated again, not retrained
    trained = json.loads((tmp_path / "run32" / "card.json").read_text())
    rounded = runs.run(profile, splits, run_dir=tmp_path / "run32", verbose=0, float16_weights=True)
    assert rounded["weights_dtype"] == "float16" and rounded["history"] == trained["history"]
    assert rounded["train_wall_s"] == trained["train_wall_s"] and not list(tmp_path.glob("run32-*"))
    for w in rounded["model"].get_weights():
        np.testing.assert_array_equal(w, w.astype(np.float16).astype(w.dtype))
    assert rounded["metrics"]["validation"] == evaluate.evaluate_model(rounded["model"], *val_xy)
    assert json.loads((tmp_path / "run32" / "card.json").read_text())["weights_dtype"] == "float16"
    # and then reused as it is
    assert runs.run(profile, splits, run_dir=tmp_path / "run32", verbose=0, float16_weights=True)["metrics"] == rounded["metrics"]


def test_class_weights_favour_rare_classes():
    y = np.array([0] * 90 + [1] * 10)
    w = train.class_weights(y, "balanced")
    assert w[1] > w[0] and train.class_weights(y, "none") is None
    assert train.class_weights(y, "sqrt")[1] == pytest.approx(np.sqrt(w[1]))


@pytest.mark.slow
def test_smoke_fit_learns_generated_patterns(splits, tmp_path):
    model, history = train.fit(splits["train"], splits["public_test"], tiny_config(epochs=4), run_dir=tmp_path, verbose=0)
    assert history["accuracy"][-1] > 0.5  # 7 classes: chance is 0.14
    import csv

    logged = list(csv.DictReader(open(tmp_path / "log.csv")))  # one row an epoch, as fit reported it
    assert [int(r["epoch"]) for r in logged] == [0, 1, 2, 3]
    assert [float(r["val_accuracy"]) for r in logged] == pytest.approx(history["val_accuracy"], abs=1e-6)
    best = keras.saving.load_model(tmp_path / "best.keras")  # the checkpoint: the same network
    assert best.count_params() == model.count_params()
    assert json.loads((tmp_path / "config.json").read_text())["arch"] == "resnet"


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_interrupted_fit_resumes_from_last_epoch(splits, tmp_path):
    cfg = tiny_config(epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train.fit(splits["train"], splits["public_test"], cfg, run_dir=tmp_path, callbacks=[Interrupt()], verbose=0)
    assert (tmp_path / "backup").exists()
    ran = EpochCounter()
    _, history = train.fit(splits["train"], splits["public_test"], cfg, run_dir=tmp_path, verbose=0, callbacks=[ran])
    assert ran.epochs == [1]  # only the epoch that had not finished ran again
    epochs = [line.split(",")[0] for line in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1"]
    # the history (and so the model card) covers the whole run, not just the resumed part
    assert len(history["loss"]) == 2 and len(history["epoch_s"]) == 2
    assert history["wall_s"] >= sum(history["epoch_s"]) > 0
    assert history["elapsed_s"][1] >= history["elapsed_s"][0]


@pytest.mark.slow
def test_a_run_killed_while_writing_its_backup_resumes_from_the_epoch_before(splits, tmp_path, monkeypatch):
    """A kill in the middle of the backup's write (seen on a GPU: SIGTERM at an epoch's end left a
    truncated latest.weights.h5) must not leave a run that cannot resume."""
    real, calls = keras.Model.save_weights, []

    def killed_on_second_save(self, filepath, *args, **kwargs):
        calls.append(filepath)
        real(self, filepath, *args, **kwargs)
        if len(calls) == 2:  # epoch 1's backup: half-written, then the process dies
            data = Path(filepath).read_bytes()
            Path(filepath).write_bytes(data[: len(data) // 5])
            raise KeyboardInterrupt

    cfg = tiny_config(epochs=3)
    monkeypatch.setattr(keras.Model, "save_weights", killed_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        train.fit(splits["train"], splits["public_test"], cfg, run_dir=tmp_path, verbose=0)
    monkeypatch.setattr(keras.Model, "save_weights", real)
    ran = EpochCounter()
    train.fit(splits["train"], splits["public_test"], cfg, run_dir=tmp_path, verbose=0, callbacks=[ran])
    assert ran.epochs == [1, 2]  # epoch 0's state, kept beside the broken file, was restored
    epochs = [line.split(",")[0] for line in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2"]


class EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.mark.slow
def test_a_run_folder_with_other_settings_is_set_aside_not_resumed_or_overwritten(splits, tmp_path):
    run_dir = tmp_path / "main"
    with pytest.raises(KeyboardInterrupt):  # an interrupted run with lr 3e-3 ...
        train.fit(splits["train"], splits["public_test"], tiny_config(epochs=2), run_dir=run_dir,
                  callbacks=[Interrupt()], verbose=0)
    ran = EpochCounter()  # ... is not resumed by a run with other settings
    train.fit(splits["train"], splits["public_test"], tiny_config(epochs=2, lr=1e-3), run_dir=run_dir,
              callbacks=[ran], verbose=0)
    assert ran.epochs == [0, 1]
    (old,) = [p for p in tmp_path.iterdir() if p.name.startswith("main-")]
    assert json.loads((old / "config.json").read_text())["lr"] == 3e-3 and (old / "backup").exists()
    assert len((old / "log.csv").read_text().splitlines()) == 2  # header + its one epoch
    assert len((run_dir / "log.csv").read_text().splitlines()) == 3  # header + the new run's two


@pytest.mark.slow
def test_seeded_runs_are_repeatable(splits):
    cfg = tiny_config(epochs=1, deterministic=True, max_train=64)
    weights = []
    for _ in range(2):
        model, _ = train.fit(splits["train"], None, cfg, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


class TrainableTrace(keras.callbacks.Callback):
    """The model's trainable weights after every optimizer step."""

    def on_train_begin(self, logs=None):
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([np.array(v) for v in self.model.trainable_weights])


@pytest.mark.slow
def test_ema_leaves_the_moving_average_of_the_weights_in_the_model(splits, tmp_path):
    trace = TrainableTrace()
    model, _ = train.fit(splits["train"], None, tiny_config(epochs=2, ema=0.5, max_train=64), run_dir=tmp_path,
                         callbacks=[trace], verbose=0)
    assert len(trace.steps) == 4  # 64 faces, batches of 32, 2 epochs
    expected = trace.steps[0]  # Keras starts the average at the first step's weights
    for step in trace.steps[1:]:
        expected = [0.5 * a + 0.5 * w for a, w in zip(expected, step, strict=True)]
    final = [np.array(v) for v in model.trainable_weights]
    assert any(not np.allclose(f, w) for f, w in zip(final, trace.steps[-1], strict=True))  # not the raw weights
    for f, e in zip(final, expected, strict=True):
        np.testing.assert_allclose(f, e, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ema is a momentum"):
        tiny_config(ema=1.0)


class EmaProbe(keras.callbacks.Callback):
    """The optimizer's weight averages when training starts and after the first epoch, which
    it then interrupts if asked to."""

    def __init__(self, interrupt):
        super().__init__()
        self.interrupt = interrupt

    def averages(self):  # Keras keeps them in a private list of the optimizer
        return [np.array(v) for v in self.model.optimizer._model_variables_moving_average]

    def on_train_begin(self, logs=None):  # after BackupAndRestore has restored a backup
        self.begin = self.averages() if self.model.optimizer.built else None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.first = self.averages()
            if self.interrupt:
                raise KeyboardInterrupt


@pytest.mark.slow
def test_an_interrupted_ema_run_resumes_with_its_average(splits, tmp_path):
    cfg = tiny_config(epochs=2, ema=0.9, max_train=64)
    probe = EmaProbe(interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        train.fit(splits["train"], None, cfg, run_dir=tmp_path, callbacks=[probe], verbose=0)
    resumed = EmaProbe(interrupt=False)
    train.fit(splits["train"], None, cfg, run_dir=tmp_path, callbacks=[resumed], verbose=0)
    assert resumed.begin is not None
    for a, b in zip(resumed.begin, probe.first, strict=True):
        np.testing.assert_array_equal(a, b)


def test_tta_views_match_training_crop():
    faces = np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48) % 251
    single = tta_views(faces, 44, None)
    np.testing.assert_array_equal(single[0], preprocess.center_crop(faces, 44))
    flip = tta_views(faces, 44, "flip")
    np.testing.assert_array_equal(flip[1], single[0][:, :, ::-1])
    ten = tta_views(faces, 40, "tencrop")
    assert ten.shape == (10, 2, 40, 40)
    np.testing.assert_array_equal(ten[1], faces[:, :40, :40])  # top-left corner
    with pytest.raises(ValueError, match="tta"):
        tta_views(faces, 44, "twentycrop")


def test_classifier_sees_what_validation_saw(splits):
    """Classifier preprocessing == the training pipeline's validation preprocessing."""
    model = networks.build("resnet", TINY)
    x, y = splits["public_test"]
    batch, _ = next(iter(pipeline.make_dataset(x, y, tiny_config(batch_size=len(x)), crop=44, training=False)))
    expected = model.predict(batch, verbose=0)
    got = Classifier(model).predict_proba(x)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_finished_run_is_reused_only_with_the_same_configuration_and_data(splits, tmp_path, capsys):
    profile = tiny_profile()
    first = runs.run(profile, splits, run_dir=tmp_path, verbose=0)
    again = runs.run(profile, splits, run_dir=tmp_path, verbose=0)
    assert "reusing the finished run" in capsys.readouterr().out
    assert again["date"] == first["date"]
    for a, b in zip(first["model"].get_weights(), again["model"].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert first["data"]["source"] == "synthetic" and len(first["data"]["fingerprint"]) == 64
    other_data = data.synthetic(n_train=24, n_test=6, seed=2)  # same sizes, other pixels
    runs.run(profile, other_data, run_dir=tmp_path, verbose=0)
    assert "reusing" not in capsys.readouterr().out
    changed = runs.run(profile, splits, hp={"lr": 0.01}, run_dir=tmp_path, verbose=0)
    assert "reusing" not in capsys.readouterr().out and changed["config"]["lr"] == 0.01
    runs.run(profile, splits, hp={"lr": 0.01}, run_dir=tmp_path, verbose=0, reuse=False)
    assert "reusing" not in capsys.readouterr().out
    # each earlier run was moved aside whole, and each log holds one run's epochs only
    aside = sorted(p for p in tmp_path.parent.iterdir() if p.name.startswith(tmp_path.name + "-"))
    assert len(aside) == 3
    for folder in (*aside, tmp_path):
        assert (folder / "model.keras").exists() and len((folder / "log.csv").read_text().splitlines()) == 2


@pytest.mark.slow
def test_shipped_copy_of_a_bfloat16_run_is_float32_with_the_same_predictions(splits, tmp_path):
    profile = {"profile": "t", "data_source": "synthetic", "seed": 0,
               "main": {"arch": "resnet", "epochs": 1, "batch_size": 16, "warmup_epochs": 0,
                         "precision": "mixed_bfloat16", "mixup": 0.2,  # mixup: as params/full.yaml trains
                         "hp": {"crop": 40, "stem_width": 8, "widths": [8, 16], "blocks": [1, 1]}}}
    try:
        card = runs.run(profile, splits, run_dir=tmp_path / "run", verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert {layer.dtype_policy.name for layer in card["model"].layers} >= {"mixed_bfloat16"}
    dest = runs.ship(tmp_path / "run", weights_dir=tmp_path / "weights")
    shipped = Classifier(keras.saving.load_model(dest, compile=False))
    assert {layer.dtype_policy.name for layer in shipped.model.layers} == {"float32"}
    shipped_card = json.loads(dest.with_suffix(".json").read_text())
    assert shipped_card["shipped_precision"] == "float32"
    # the card's metrics are those of the shipped float32 file, not of the bf16 run
    val_xy = audit.training_splits(audit.clean(splits), seed=0)[1]
    assert shipped_card["metrics"]["precision"] == "float32"
    assert shipped_card["metrics"]["validation"] == evaluate.evaluate_model(shipped.model, *val_xy)
    x = splits["public_test"][0]
    ref = Classifier(card["model"]).predict_proba(x)
    np.testing.assert_allclose(shipped.predict_proba(x), ref, atol=0.02)  # bf16 activations vs float32
    # a bf16 model's own ops are not TFLite builtins: the conversion goes through a float32 copy
    lite = Classifier(card["model"], runtime=runtimes.LiteRuntime(runtimes.to_tflite(card["model"])))
    np.testing.assert_allclose(lite.predict_proba(x), shipped.predict_proba(x), atol=1e-4)


@pytest.mark.slow
def test_ensemble_averages_its_members_in_one_file(tmp_path):
    small = {"crop": 40, "stem_width": 8, "widths": [8, 16], "blocks": [1, 1]}
    keras.utils.set_random_seed(0)
    a, b = networks.build("resnet", small), networks.build("resnet", small)
    joint = networks.ensemble([a, b])
    assert joint.count_params() == a.count_params() + b.count_params()
    x = np.random.default_rng(0).uniform(0, 255, (5, 40, 40, 1)).astype("float32")
    mean = (np.asarray(a(x)) + np.asarray(b(x))) / 2
    assert not np.allclose(np.asarray(a(x)), np.asarray(b(x)), atol=1e-3)  # two different nets
    np.testing.assert_allclose(joint(x), mean, atol=1e-6)
    joint.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras", compile=False)
    np.testing.assert_allclose(loaded(x), mean, atol=1e-6)
    lite = runtimes.LiteRuntime(runtimes.to_tflite(loaded))
    np.testing.assert_allclose(lite(x), mean, atol=1e-5)
    with pytest.raises(ValueError, match="different inputs"):
        networks.ensemble([a, networks.build("resnet", {**small, "crop": 44})])
    with pytest.raises(ValueError, match="at least two"):
        networks.ensemble([a])


@pytest.mark.slow
def test_ensemble_run_combines_finished_runs_and_refuses_other_data(splits, tmp_path):
    from fer import cli
    from fer.inference.predict import load_classifier

    profile = tiny_profile()
    cards = [runs.run({**profile, "seed": s}, splits, run_dir=tmp_path / f"s{s}", verbose=0) for s in (0, 1)]
    card = runs.ensemble_run(profile, splits, [tmp_path / "s0", tmp_path / "s1"], run_dir=tmp_path / "ens")
    assert card["arch"] == "ensemble" and card["name"] == "main"
    assert card["params"] == sum(c["params"] for c in cards)
    assert card["epochs_run"] == 2 and card["data"]["fingerprint"] == cards[0]["data"]["fingerprint"]
    assert [m["config"]["seed"] for m in card["members"]] == [0, 1]
    assert all(m["fingerprint_checked"] for m in card["members"])
    val_xy = audit.training_splits(audit.clean(splits), seed=0)[1]
    dest = runs.ship(tmp_path / "ens", weights_dir=tmp_path / "weights")
    shipped = load_classifier(dest, backend="keras")
    assert shipped.card["metrics"]["validation"] == evaluate.evaluate_model(shipped.model, *val_xy)
    x = splits["public_test"][0]
    mean = np.mean([Classifier(c["model"]).predict_proba(x) for c in cards], axis=0)
    np.testing.assert_allclose(shipped.predict_proba(x), mean, atol=1e-5)
    # float16 weights: half the file, and the shipped file computes exactly what the card says
    half = runs.ensemble_run(profile, splits, [tmp_path / "s0", tmp_path / "s1"], run_dir=tmp_path / "half",
                              float16_weights=True)
    small = runs.ship(tmp_path / "half", weights_dir=tmp_path / "weights16")
    assert small.stat().st_size < dest.stat().st_size and half["weights_dtype"] == "float16"
    assert dtypes.policies(keras.saving.load_model(small, compile=False)) == {"float16"}  # stored as such
    loaded = load_classifier(small, backend="keras")
    assert dtypes.policies(loaded.model) == {"float32"}
    np.testing.assert_allclose(loaded.predict_proba(x), Classifier(half["model"]).predict_proba(x), atol=1e-6)
    assert loaded.card["metrics"]["validation"] == evaluate.evaluate_model(loaded.model, *val_xy)
    np.testing.assert_allclose(loaded.predict_proba(x), mean, atol=0.01)  # float16 rounding only
    # a member trained on other pixels is refused, also from the command line (one line, exit 2)
    other = data.synthetic(n_train=24, n_test=6, seed=2)
    runs.run(profile, other, run_dir=tmp_path / "other", verbose=0)
    with pytest.raises(data.DataError, match="other data"):
        runs.ensemble_run(profile, splits, [tmp_path / "s0", tmp_path / "other"], run_dir=tmp_path / "bad")
    assert cli.main(["ensemble", str(tmp_path / "s0"), str(tmp_path / "nowhere"), "--data", "synthetic"]) == 2
    assert cli.main(["ensemble", str(tmp_path / "s0"), "--data", "synthetic"]) == 2


@pytest.mark.slow
def test_distillation_targets_mix_label_and_teacher_and_train(splits, tmp_path):
    profile = tiny_profile()
    teacher = runs.run(profile, splits, run_dir=tmp_path / "teacher", verbose=0)
    path = str(tmp_path / "teacher" / "model.keras")
    x, y = audit.training_splits(audit.clean(splits), seed=0)[0]
    cfg = tiny_config(teacher=path, distill=0.6)
    probs = Classifier(teacher["model"]).predict_proba(x, tta="flip")
    targets = distill.soft_targets(x, y, cfg)
    np.testing.assert_allclose(targets, 0.4 * np.eye(len(CLASSES))[y] + 0.6 * probs, atol=1e-5)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    hot = distill.soft_targets(x, y, tiny_config(teacher=path, distill=1.0, distill_temperature=3.0))
    assert hot.max(axis=1).mean() < probs.max(axis=1).mean()  # a temperature above 1 softens
    # the targets reach the training batches unchanged (no flip/crop changes a label)
    batch = next(iter(pipeline.make_dataset(x, targets, tiny_config(), 40, training=True)))[1].numpy()
    gaps = np.abs(batch[:, None, :] - targets[None, :, :]).max(axis=2).min(axis=1)
    assert len(batch) == 32 and gaps.max() < 1e-6 and (batch.max(axis=1) < 1).any()
    student = runs.run(profile, splits, hp={"teacher": path, "distill": 0.6}, run_dir=tmp_path / "student", verbose=0)
    assert student["teacher"]["sha256"] == teacher_sha(path) and student["teacher"]["params"] == teacher["params"]
    assert student["config"]["teacher"] == path


@pytest.mark.slow
def test_a_run_is_reused_only_with_the_same_teacher_file_not_just_its_path(splits, tmp_path):
    profile = tiny_profile()
    path = tmp_path / "teacher.keras"
    teacher = runs.run(profile, splits, run_dir=tmp_path / "teacher", verbose=0)
    teacher["model"].save(path)
    hp = {"teacher": str(path), "distill": 0.6}
    first = runs.run(profile, splits, hp=hp, run_dir=tmp_path / "student", verbose=0)
    written = (tmp_path / "student" / "card.json").stat().st_mtime_ns
    runs.run(profile, splits, hp=hp, run_dir=tmp_path / "student", verbose=0)
    assert (tmp_path / "student" / "card.json").stat().st_mtime_ns == written  # same teacher: reused
    other = runs.run({**profile, "seed": 1}, splits, run_dir=tmp_path / "teacher-s1", verbose=0)
    other["model"].save(path)  # another model under the same name
    third = runs.run(profile, splits, hp=hp, run_dir=tmp_path / "student", verbose=0)
    assert third["teacher"]["sha256"] == teacher_sha(path) != first["teacher"]["sha256"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("student-")]  # the old run, set aside
    assert json.loads((tmp_path / "student" / "config.json").read_text())["files"] == {"teacher": teacher_sha(path)}


@pytest.mark.slow
def test_online_distillation_labels_each_augmented_batch_as_the_student_sees_it(splits, tmp_path):
    profile = tiny_profile()
    runs.run(profile, splits, run_dir=tmp_path / "teacher", verbose=0)
    path = str(tmp_path / "teacher" / "model.keras")
    teacher = Classifier(keras.saving.load_model(path))
    x, y = audit.training_splits(audit.clean(splits), seed=0)[0]
    cfg = tiny_config(teacher=path, distill=0.75, distill_online=True, mixup=0.4, distill_temperature=2.0)
    online = pipeline.HostBatches(x, y, cfg, 44, teacher=teacher)[0]
    images, plain = pipeline.HostBatches(x, y, tiny_config(mixup=0.4), 44)[0]  # the same draws, labels only
    np.testing.assert_array_equal(online[0], images)
    probs = teacher.forward(images[..., 2:42, 2:42, 0])  # the teacher's 40-px centre of the 44-px view
    soft = probs ** 0.5 / (probs ** 0.5).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(online[1], 0.25 * plain + 0.75 * soft, atol=1e-5)
    assert not np.allclose(online[1], plain, atol=0.05)
    # a student of another input size: a smaller view is padded by reflection to the teacher's
    small = np.arange(2 * 36 * 36, dtype="float32").reshape(2, 36, 36)
    padded = preprocess.fit_crop(small, 40)
    assert padded.shape == (2, 40, 40) and np.array_equal(padded[:, 2:38, 2:38], small)
    assert np.array_equal(padded[:, 1, 2:38], small[:, 1]) and preprocess.fit_crop(padded, 36).tolist() == small.tolist()
    # through run(): the host pipeline is chosen, the card names the teacher
    student = runs.run(profile, splits, hp={"teacher": path, "distill": 0.75, "distill_online": True},
                        run_dir=tmp_path / "student", verbose=0)
    assert student["pipeline"] == "host" and student["teacher"]["sha256"] == teacher_sha(path)


def test_auto_keeps_the_online_teacher_in_the_host_pipeline_only_on_a_tensorflow_cpu(monkeypatch):
    monkeypatch.setattr(distill, "accelerators", lambda: [])
    assert distill.resolve_online_teacher("auto") == "host"  # TensorFlow on a CPU
    monkeypatch.setattr(distill, "accelerators", lambda: ["NVIDIA H200"])
    assert distill.resolve_online_teacher("auto") == "step"  # beside the student on the GPU
    monkeypatch.setattr(distill, "accelerators", lambda: [])
    monkeypatch.setattr(distill, "backend", lambda: "jax")
    assert distill.resolve_online_teacher("auto") == "step"
    assert distill.resolve_online_teacher("host") == "host"  # an explicit choice stands


def test_the_teacher_is_a_float32_keras_model_never_a_tflite_copy(splits, tmp_path, monkeypatch):
    from fer.inference import cards
    from fer.inference.predict import ModelFileError

    path = tmp_path / "teacher.keras"
    dtypes.retyped_copy(networks.build("resnet", tiny_profile()["main"]["hp"]), "float16").save(path)  # as ship() stores it
    net = dtypes.float32_copy(keras.saving.load_model(path, compile=False))  # what the teacher must compute

    def no_tflite(*args, **kwargs):
        raise AssertionError("the teacher went through TFLite")

    monkeypatch.setattr(runtimes, "cached_tflite", no_tflite)
    monkeypatch.setattr(runtimes, "LiteRuntime", no_tflite)
    teacher = distill.load_teacher(path)
    assert dtypes.policies(keras.saving.load_model(path, compile=False)) == {"float16"}
    assert dtypes.policies(teacher) == {"float32"}
    x, y = splits["train"]
    probs = Classifier(net).predict_proba(x, tta="flip")
    targets = distill.soft_targets(x, y, tiny_config(teacher=str(path), distill=0.5))
    np.testing.assert_allclose(targets, 0.5 * np.eye(len(CLASSES))[y] + 0.5 * probs, atol=1e-5)
    views = x[:4, 4:44, 4:44].astype("float32")  # what the host pipeline hands an online teacher
    np.testing.assert_allclose(distill.host_teacher(path).forward(views),
                               Classifier(net).forward(views), atol=1e-5)
    # refused as fer.load_classifier refuses a model: missing, or not what its card says
    with pytest.raises(ModelFileError, match="no such model file"):
        distill.load_teacher(tmp_path / "nowhere.keras")
    cards.card_path(path).write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(ModelFileError, match="checksum"):
        distill.load_teacher(path)


@pytest.mark.slow
def test_an_online_teacher_in_the_train_step_gives_the_host_pipelines_targets(splits, tmp_path, monkeypatch):
    profile = tiny_profile()
    runs.run(profile, splits, run_dir=tmp_path / "teacher", verbose=0)
    path = str(tmp_path / "teacher" / "model.keras")
    teacher = Classifier(keras.saving.load_model(path))  # 40-px input
    x, y = audit.training_splits(audit.clean(splits), seed=0)[0]
    cfg = tiny_config(teacher=path, distill=0.75, distill_online=True, mixup=0.4, distill_temperature=2.0)
    images, plain = pipeline.HostBatches(x, y, tiny_config(mixup=0.4), 44)[0]  # a 44-px student's batch
    hosted = pipeline.HostBatches(x, y, cfg, 44, teacher=teacher)[0][1]  # the host pipeline's targets
    student = networks.build("resnet", {**profile["main"]["hp"], "crop": 44})
    train.compile_model(student, cfg, 1)
    y_pred = student(images, training=False)
    expected = float(student.compute_loss(images, hosted, y_pred, training=True))
    assert abs(float(student.compute_loss(images, plain, y_pred, training=True)) - expected) > 1e-3
    distill.teach_in_step(student, keras.saving.load_model(path), cfg)
    assert float(student.compute_loss(images, plain, y_pred, training=True)) == pytest.approx(expected, rel=1e-5)
    # outside training (validation) the loss is the labels' alone
    assert float(student.compute_loss(images, plain, y_pred, training=False)) != pytest.approx(expected, rel=1e-3)
    # the in-graph crop is the host one, both ways
    views = np.arange(2 * 44 * 44, dtype="float32").reshape(2, 44, 44)
    for crop in (40, 48):
        np.testing.assert_array_equal(np.asarray(preprocess.fit_crop_tensor(views[..., None], crop))[..., 0],
                                      preprocess.fit_crop(views, crop))
    # through run(): auto puts it in the step wherever the teacher runs in Keras (a GPU, JAX),
    # the step takes the default pipeline, and what is saved is the student alone
    monkeypatch.setattr(distill, "accelerators", lambda: ["a GPU"])
    card = runs.run(profile, splits, hp={"teacher": path, "distill": 0.75, "distill_online": True},
                     run_dir=tmp_path / "student", verbose=0)
    assert card["online_teacher"] == "step" and card["pipeline"] == "tf.data"
    assert card["teacher"]["sha256"] == teacher_sha(path)
    saved = keras.saving.load_model(tmp_path / "student" / "model.keras")
    assert saved.count_params() == card["params"] == networks.build("resnet", profile["main"]["hp"]).count_params()
    monkeypatch.setattr(distill, "accelerators", lambda: [])  # TensorFlow on a CPU: the host pipeline
    assert distill.resolve_online_teacher("auto") == "host" and distill.resolve_online_teacher("step") == "step"
    with pytest.raises(ValueError, match="host pipeline"):  # so auto with tf.data is refused here, before training
        runs.run(profile, splits, hp={"teacher": path, "distill": 0.75, "distill_online": True, "pipeline": "tf.data"},
                  run_dir=tmp_path / "refused", verbose=0)
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_a_run_can_start_from_a_trained_model_of_the_same_network(splits, tmp_path):
    profile = tiny_profile()
    first = runs.run(profile, splits, run_dir=tmp_path / "first", verbose=0)
    path = str(tmp_path / "first" / "model.keras")
    fresh = networks.build("resnet", profile["main"]["hp"])
    train.load_weights_from(fresh, path)
    for a, b in zip(fresh.get_weights(), first["model"].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    tuned = runs.run(profile, splits, hp={"init": path, "lr": 1e-9}, run_dir=tmp_path / "tuned", verbose=0)
    assert tuned["init"]["sha256"] == teacher_sha(path) and tuned["config"]["init"] == path
    # it started there: at lr 1e-9 the learned weights hardly moved (BatchNorm's statistics did)
    for a, b in zip(tuned["model"].trainable_weights, first["model"].trainable_weights, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    scratch = runs.run(profile, splits, hp={"lr": 1e-9, "seed": 1}, run_dir=tmp_path / "scratch", verbose=0)
    assert not np.allclose(scratch["model"].trainable_weights[0], first["model"].trainable_weights[0], atol=1e-3)
    # another network is refused before anything is written
    wider = {**profile["main"]["hp"], "widths": [8, 24]}
    with pytest.raises(ValueError, match="holds another network"):
        runs.run(profile, splits, hp={**wider, "init": path}, run_dir=tmp_path / "bad", verbose=0)
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    for missing in (tmp_path / "nowhere.keras", tmp_path / "broken.keras"):
        with pytest.raises(ValueError, match="could not be loaded as a Keras model"):
            runs.run(profile, splits, hp={"init": str(missing)}, run_dir=tmp_path / "bad", verbose=0)
    assert not (tmp_path / "bad").exists()


def teacher_sha(path):
    from fer.inference.cards import sha256

    return sha256(path)


@pytest.mark.parametrize(
    "options, message",
    [({"teacher": "t.keras"}, "distillation needs"), ({"distill": 0.5}, "distillation needs"),
     ({"teacher": "t.keras", "distill": 1.5}, "distillation needs"),
     ({"teacher": "t.keras", "distill": 0.5, "distill_temperature": 0}, "distill_temperature"),
     ({"distill_online": True}, "distill_online needs a teacher"),
     ({"teacher": "t.keras", "distill": 0.5, "distill_online": True, "pipeline": "tf.data", "online_teacher": "host"},
      "host pipeline"),
     ({"teacher": "t.keras", "distill": 0.5, "distill_online": True, "online_teacher": "gpu"}, "online_teacher must")],
)
def test_inconsistent_distillation_options_are_refused_before_training(options, message, splits, tmp_path):
    with pytest.raises(ValueError, match=message):
        tiny_config(**options)
    profile = {"profile": "t", "data_source": "synthetic", "seed": 0, "main": {"arch": "resnet", "epochs": 1}}
    with pytest.raises(ValueError, match=message):  # a profile or --hp saying so never starts a run
        runs.run(profile, splits, hp=options, run_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_runs_from_before_a_new_training_option_are_still_reused(splits, tmp_path, capsys):
    profile = tiny_profile()
    runs.run(profile, splits, run_dir=tmp_path, verbose=0)
    card = json.loads((tmp_path / "card.json").read_text())
    for key in ("teacher", "distill", "distill_temperature", "distill_online", "online_teacher", "init", "ema"):  # added later
        del card["config"][key]
    (tmp_path / "card.json").write_text(json.dumps(card))
    runs.run(profile, splits, run_dir=tmp_path, verbose=0)
    assert "reusing the finished run" in capsys.readouterr().out
    card["config"]["distill"] = 0.5  # but a stored value that differs from today's still counts
    (tmp_path / "card.json").write_text(json.dumps(card))
    runs.run(profile, splits, run_dir=tmp_path, verbose=0)
    assert "reusing" not in capsys.readouterr().out


@pytest.mark.slow
def test_cli_epochs_override_the_trained_blocks_own(tmp_path, capsys):
    from fer import cli

    profile = tmp_path / "p.yaml"
    profile.write_text("profile: p\nseed: 0\nepochs: 5\n"
                       "lite: {arch: lite, epochs: 3, batch_size: 64, warmup_epochs: 0, precision: float32,\n"
                       "       max_train: 128, hp: {stem_width: 16, widths: [16, 32]}}\n")
    argv = ["train", "--profile", str(profile), "--data", "synthetic", "--model", "lite", "--run-dir", str(tmp_path / "r")]
    assert cli.main([*argv, "--epochs", "1"]) == 0  # before the fix the lite block's 3 epochs ran
    card = json.loads((tmp_path / "r" / "card.json").read_text())
    assert card["epochs_run"] == 1 and card["config"]["epochs"] == 1
    assert "1 epochs in" in capsys.readouterr().out
