"""Training stack on generated data: shapes, budgets, a smoke fit, resume, determinism, TTA."""

import json

import keras
import numpy as np
import pytest

from fer import data, export, models, train
from fer.config import CLASSES
from fer.predict import Classifier, tta_views

TINY = {"stem_width": 8, "widths": (8, 16, 32, 64), "dropout": 0.1}


@pytest.fixture(scope="module")
def splits():
    return data.synthetic(n_train=24, n_test=6, seed=1)


def tiny_config(**kw):
    base = dict(arch="resnet", hp=TINY, epochs=1, batch_size=32, lr=3e-3, warmup_epochs=0, precision="float32")
    return train.TrainConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "arch, budget, crop",
    [("baseline", 4_600_000, 48), ("resnet", 5_000_000, 44), ("lite", 100_000, 44)],
)
def test_architectures_output_probabilities_within_budget(arch, budget, crop):
    model = models.build(arch)
    assert model.count_params() <= budget
    assert model.input_shape == (None, crop, crop, 1)
    out = model(np.random.default_rng(0).uniform(0, 255, (3, crop, crop, 1)).astype("float32"))
    assert out.shape == (3, len(CLASSES))
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-5)


def test_seed_baseline_has_the_seed_shape():
    model = models.build("baseline")
    convs = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert convs == [64, 128, 512, 512]
    assert dense == [256, 512, len(CLASSES)]


def test_unknown_architecture_and_option_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        models.build("vgg99")
    with pytest.raises(ValueError, match="unknown training option"):
        train.TrainConfig.from_dict({"epochs": 1, "learning_rate": 0.1})


def test_profile_block_merges_tuner_hp_and_notebook_overrides():
    profile = {"profile": "x", "epochs": 3, "seed": 7, "train": {"arch": "resnet", "lr": 0.1, "hp": {"dropout": 0.2}}}
    cfg = train.config_from_profile(profile, "train", hp={"lr": 0.01, "widths": [8, 16, 32, 64]})
    assert (cfg.epochs, cfg.seed, cfg.lr) == (3, 7, 0.01)
    assert cfg.hp == {"dropout": 0.2, "widths": [8, 16, 32, 64]}
    profile["lite"] = {"arch": "lite", "epochs": 30}
    profile["baseline"] = {"arch": "baseline"}
    assert train.config_from_profile(profile, "lite").epochs == 30  # its own length
    assert train.config_from_profile(profile, "baseline").epochs == 3  # the profile's default


def test_augmentation_keeps_shape_and_range(splits):
    x, y = splits["train"]
    cfg = tiny_config(mixup=0.2)
    images, labels = next(iter(train.make_dataset(x, y, cfg, crop=40, training=True)))
    assert images.shape[1:] == (40, 40, 1)
    assert 0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 255
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_input_pipelines_run_without_tf_data_autotuning(splits):
    # with autotuning on, each epoch's new iterator waited up to a minute for the old one's
    # autotuner thread (benchmarks/epoch_start.py)
    x, y = splits["train"]
    for training in (True, False):
        ds = train.make_dataset(x, y, tiny_config(), crop=40, training=training)
        assert ds.options().autotune.enabled is False


def test_class_weights_favour_rare_classes():
    y = np.array([0] * 90 + [1] * 10)
    w = train.class_weights(y, "balanced")
    assert w[1] > w[0] and train.class_weights(y, "none") is None
    assert train.class_weights(y, "sqrt")[1] == pytest.approx(np.sqrt(w[1]))


def test_smoke_fit_learns_generated_patterns(splits, tmp_path):
    model, history = train.fit(splits["train"], splits["public_test"], tiny_config(epochs=4), run_dir=tmp_path, verbose=0)
    assert history["accuracy"][-1] > 0.5  # 7 classes: chance is 0.14
    assert (tmp_path / "log.csv").exists() and (tmp_path / "best.keras").exists()
    assert json.loads((tmp_path / "config.json").read_text())["arch"] == "resnet"


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt


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


class EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


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


def test_seeded_runs_are_repeatable(splits):
    cfg = tiny_config(epochs=1, deterministic=True, max_train=64)
    weights = []
    for _ in range(2):
        model, _ = train.fit(splits["train"], None, cfg, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_tta_views_match_training_crop():
    faces = np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48) % 251
    single = tta_views(faces, 44, None)
    np.testing.assert_array_equal(single[0], train.center_crop(faces, 44))
    flip = tta_views(faces, 44, "flip")
    np.testing.assert_array_equal(flip[1], single[0][:, :, ::-1])
    ten = tta_views(faces, 40, "tencrop")
    assert ten.shape == (10, 2, 40, 40)
    np.testing.assert_array_equal(ten[1], faces[:, :40, :40])  # top-left corner
    with pytest.raises(ValueError, match="tta"):
        tta_views(faces, 44, "twentycrop")


def test_classifier_sees_what_validation_saw(splits):
    """Classifier preprocessing == the training pipeline's validation preprocessing."""
    model = models.build("resnet", TINY)
    x, y = splits["public_test"]
    batch, _ = next(iter(train.make_dataset(x, y, tiny_config(batch_size=len(x)), crop=44, training=False)))
    expected = model.predict(batch, verbose=0)
    got = Classifier(model).predict_proba(x)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_finished_run_is_reused_only_with_the_same_configuration_and_data(splits, tmp_path, capsys):
    profile = {"profile": "t", "data_source": "synthetic", "seed": 0,
               "train": {"arch": "resnet", "epochs": 1, "batch_size": 16, "warmup_epochs": 0, "precision": "float32",
                         "hp": {"crop": 40, "stem_width": 8, "widths": [8, 16], "blocks": [1, 1]}}}
    first = train.run(profile, splits, run_dir=tmp_path, verbose=0)
    again = train.run(profile, splits, run_dir=tmp_path, verbose=0)
    assert "reusing the finished run" in capsys.readouterr().out
    assert again["date"] == first["date"]
    for a, b in zip(first["model"].get_weights(), again["model"].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert first["data"]["source"] == "synthetic" and len(first["data"]["fingerprint"]) == 64
    other_data = data.synthetic(n_train=24, n_test=6, seed=2)  # same sizes, other pixels
    train.run(profile, other_data, run_dir=tmp_path, verbose=0)
    assert "reusing" not in capsys.readouterr().out
    changed = train.run(profile, splits, hp={"lr": 0.01}, run_dir=tmp_path, verbose=0)
    assert "reusing" not in capsys.readouterr().out and changed["config"]["lr"] == 0.01
    train.run(profile, splits, hp={"lr": 0.01}, run_dir=tmp_path, verbose=0, reuse=False)
    assert "reusing" not in capsys.readouterr().out
    # each earlier run was moved aside whole, and each log holds one run's epochs only
    aside = sorted(p for p in tmp_path.parent.iterdir() if p.name.startswith(tmp_path.name + "-"))
    assert len(aside) == 3
    for folder in (*aside, tmp_path):
        assert (folder / "model.keras").exists() and len((folder / "log.csv").read_text().splitlines()) == 2


def test_shipped_copy_of_a_bfloat16_run_is_float32_with_the_same_predictions(splits, tmp_path):
    profile = {"profile": "t", "data_source": "synthetic", "seed": 0,
               "train": {"arch": "resnet", "epochs": 1, "batch_size": 16, "warmup_epochs": 0,
                         "precision": "mixed_bfloat16", "hp": {"crop": 40, "stem_width": 8, "widths": [8, 16], "blocks": [1, 1]}}}
    try:
        card = train.run(profile, splits, run_dir=tmp_path / "run", verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert {layer.dtype_policy.name for layer in card["model"].layers} >= {"mixed_bfloat16"}
    dest = train.ship(tmp_path / "run", weights_dir=tmp_path / "weights")
    shipped = Classifier(keras.saving.load_model(dest, compile=False))
    assert {layer.dtype_policy.name for layer in shipped.model.layers} == {"float32"}
    shipped_card = json.loads(dest.with_suffix(".json").read_text())
    assert shipped_card["shipped_precision"] == "float32"
    # the card's metrics are those of the shipped float32 file, not of the bf16 run
    val_xy = data.training_splits(data.clean(splits), seed=0)[1]
    assert shipped_card["metrics"]["precision"] == "float32"
    assert shipped_card["metrics"]["validation"] == train.evaluate_model(shipped.model, *val_xy)
    x = splits["public_test"][0]
    ref = Classifier(card["model"]).predict_proba(x)
    np.testing.assert_allclose(shipped.predict_proba(x), ref, atol=0.02)  # bf16 activations vs float32
    # a bf16 model's own ops are not TFLite builtins: the conversion goes through a float32 copy
    lite = Classifier(card["model"], runtime=export.LiteRuntime(export.to_tflite(card["model"])))
    np.testing.assert_allclose(lite.predict_proba(x), shipped.predict_proba(x), atol=1e-4)
