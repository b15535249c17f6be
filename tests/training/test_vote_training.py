"""Training on FER+ votes (``labels: ferplus``): the soft-target loss on a tiny model, vote targets
through both input pipelines and a teacher's blend, a run that needs votes and finds none, and
fine-tuning an averaged model (``arch: ensemble``) as one graph."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from fer import config, data
from fer.data import DataError, ferplus
from fer.inference import cards
from fer.training import distill, networks, runs
from fer.training import fit as train

TINY_LITE = {"stem_width": 8, "widths": [8, 16], "crop": 40}


@pytest.fixture(scope="module")
def splits():
    return data.synthetic(n_train=12, n_test=4, seed=2)


def vote_targets(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Soft targets: 70 % on the face's class, the rest spread at random."""
    rng = np.random.default_rng(seed)
    t = 0.3 * rng.dirichlet(np.ones(7), len(y))
    t[np.arange(len(y)), y] += 0.7
    return t.astype(np.float32)


def tiny_config(**kw):
    base = dict(arch="lite", hp=TINY_LITE, epochs=1, batch_size=16, lr=3e-3, warmup_epochs=0, precision="float32",
                label_smoothing=0.0, labels="ferplus")
    return config.TrainConfig(**{**base, **kw})


def test_the_loss_is_cross_entropy_against_the_vote_distribution(splits):
    x, y = splits["public_test"]
    targets = vote_targets(y)
    model = train.compile_model(networks.build("lite", TINY_LITE), tiny_config(), steps_per_epoch=1)
    head = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    head.bias.assign(np.linspace(-3, 3, 7))  # far from uniform, so soft and one-hot targets give other losses
    faces = x[:, 4:44, 4:44, None].astype("float32")
    probs = model.predict(faces, verbose=0)
    expected = float(np.mean(-(targets * np.log(np.clip(probs, 1e-7, 1))).sum(axis=1)))
    loss = model.evaluate(faces, targets, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(expected, rel=1e-4)
    one_hot = model.evaluate(faces, np.eye(7, dtype="float32")[y], verbose=0, return_dict=True)["loss"]
    assert loss != pytest.approx(one_hot, rel=1e-3)  # the votes, not the label, are learned


@pytest.mark.parametrize("pipeline", ["tf.data", "host"])
def test_vote_targets_train_and_validate_in_both_pipelines(splits, pipeline):
    (x, y), (xv, yv) = splits["train"], splits["public_test"]
    cfg = tiny_config(pipeline=pipeline, epochs=2, class_weight="balanced")
    _, history = train.fit((x, vote_targets(y)), (xv, vote_targets(yv, 1)), cfg, verbose=0)
    assert np.isfinite(history["loss"]).all() and len(history["val_accuracy"]) == 2
    assert history["train_images"] == len(x)


def test_a_vote_run_without_votes_says_so(splits, capsys, monkeypatch):
    monkeypatch.setattr(ferplus, "_SAID", set())  # the reason is printed once per process: an earlier test may have
    profile = {"profile": "t", "data_source": "synthetic", "seed": 0,
               "main": {"arch": "lite", "hp": TINY_LITE, "epochs": 1, "labels": "ferplus", "precision": "float32"}}
    with pytest.raises(DataError, match="labels: ferplus trains on FER\\+ votes"):
        runs.run(profile, splits, run_dir=None, reuse=False)
    assert "FER+ figures left out: generated faces have no FER+ votes" in capsys.readouterr().err


def test_faces_without_votes_are_left_out_of_the_targets(splits):
    x, y = splits["public_test"]
    votes = np.zeros((len(y), 10), np.int16)
    votes[::2, ferplus.VOTE_COLUMNS.index("happiness")] = 10
    votes[1, ferplus.VOTE_COLUMNS.index("NF")] = 10
    faces, targets = runs._vote_targets((x, y), ferplus.by_image({"public_test": (x, y)}, {"public_test": votes}))
    assert len(faces) == len(x[::2]) and (targets.argmax(1) == config.CLASSES.index("happy")).all()


def test_options_are_checked():
    with pytest.raises(ValueError, match="labels must be fer2013 or ferplus"):
        tiny_config(labels="votes")
    with pytest.raises(ValueError, match="arch ensemble fine-tunes an averaged model"):
        tiny_config(arch="ensemble")


@pytest.fixture(scope="module")
def tiny_ensemble(tmp_path_factory):
    """Two tiny lite nets averaged, saved with a card listing their recipes (as ensemble_run writes)."""
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("ens") / "main.keras"
    model = networks.ensemble([networks.build("lite", TINY_LITE) for _ in range(2)], name="main")
    model.save(path)
    cards.write(path, {"name": "main", "arch": "ensemble",
                       "members": [{"arch": "lite", "config": {"hp": TINY_LITE}} for _ in range(2)]})
    return path


def test_an_ensemble_fine_tunes_as_one_graph_from_its_file(splits, tiny_ensemble):
    x, y = splits["train"]
    before = distill.load_teacher(tiny_ensemble)
    cfg = tiny_config(arch="ensemble", hp={}, init=str(tiny_ensemble), lr=1e-2)
    model, history = train.fit((x, vote_targets(y)), None, cfg, verbose=0)
    assert [layer.name for layer in model.layers if layer.name.startswith("member_")] == ["member_0", "member_1"]
    assert model.count_params() == before.count_params() and np.isfinite(history["loss"]).all()
    start = before.predict(x[:4, 4:44, 4:44, None].astype("float32"), verbose=0)
    assert not np.allclose(model.predict(x[:4, 4:44, 4:44, None].astype("float32"), verbose=0), start, atol=1e-4)
    for name in ("member_0", "member_1"):  # every member learned, from the shipped weights
        new, old = model.get_layer(name).get_weights(), before.get_layer(name).get_weights()
        assert [w.shape for w in new] == [w.shape for w in old]
        assert any(not np.allclose(a, b) for a, b in zip(new, old, strict=True)), name


def test_a_teacher_blends_with_the_votes(splits, tiny_ensemble):
    x, y = splits["public_test"]
    votes = vote_targets(y)
    cfg = tiny_config(teacher=str(tiny_ensemble), distill=0.5)
    blended = distill.soft_targets(x, votes, cfg)
    teacher = distill.host_teacher(tiny_ensemble).predict_proba(x, tta="flip")
    np.testing.assert_allclose(blended, 0.5 * votes + 0.5 * teacher, atol=1e-5)


def test_a_card_without_member_recipes_is_refused(tmp_path, tiny_ensemble):
    path = tmp_path / "main.keras"
    path.write_bytes(tiny_ensemble.read_bytes())
    cards.write(path, {"name": "main", "arch": "ensemble"})
    with pytest.raises(ValueError, match="not an ensemble whose card lists its members"):
        train.fit(data.synthetic(n_train=2, n_test=1)["train"], None, tiny_config(arch="ensemble", init=str(path)), verbose=0)
    assert json.loads(cards.card_path(path).read_text())["arch"] == "ensemble"


def test_a_shipped_cards_agreement_is_measured_and_written_only_on_its_own_data(tmp_path, monkeypatch):
    import zipfile

    import cv2

    from fer.evaluation.metrics import evaluate_model

    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    fer_zip = tmp_path / "fer.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(fer_zip, "w") as zf:
        for i, c in enumerate([*config.CLASSES, "happy", "sad", *config.CLASSES[:5], *config.CLASSES[:5]]):
            split = "train" if i < 7 else "test"
            name = f"{split}/{c}/{'Training' if i < 7 else 'PublicTest'}_{i}.png"
            zf.writestr(name, cv2.imencode(".png", rng.integers(0, 255, (48, 48), dtype=np.uint8))[1].tobytes())
    votes = tmp_path / "votes.csv"
    votes.write_text("file,ferplus_image," + ",".join(ferplus.VOTE_COLUMNS) + "\n"
                     "test/happy/PublicTest_7.png,f.png,0,9,1,0,0,0,0,0,0,0\ntest/sad/PublicTest_8.png,f.png,6,0,0,4,0,0,0,0,0,0\n")
    monkeypatch.setenv("FER_VOTES", str(votes))
    path = tmp_path / "main.keras"
    model = networks.build("lite", TINY_LITE)
    model.save(path)
    x, y = data.load(fer_zip)["public_test"]
    cards.write(path, {"name": "main", "data": {"validation": "public_test"},
                       "metrics": {"validation": evaluate_model(model, x, y)}})
    written = runs.add_agreement(path, fer_zip)
    assert written["agreement_images"] == 2 and written["labels_agreement"] == 0.5  # the sad face's majority: neutral
    assert written["agreement_pass_accuracy_single"] == written["accuracy_single"]  # same device, same figure
    assert cards.read(path)["metrics"]["validation"]["agreement_single"] == written["agreement_single"]
    card = cards.read(path)
    card["metrics"]["validation"]["accuracy_single"] += 0.5  # 6 of the 12 faces: other data
    cards.write(path, card)
    with pytest.raises(DataError, match="other data than the card's; nothing written"):
        runs.add_agreement(path, fer_zip)
