"""keras-tuner search on generated data: results saved, space respected, reruns resume."""

import json

import keras_tuner as kt
import pandas as pd
import pytest

from fer import data
from fer.training import networks, tune

PROFILE = {
    "profile": "t",
    "seed": 0,
    "max_trials": 2,
    "main": {"arch": "resnet", "batch_size": 32, "warmup_epochs": 0, "precision": "float32", "hp": {"crop": 40}},
    "tune": {"algorithm": "random", "epochs": 1, "width": [8], "stem_width": [8], "blocks": ["1111"]},
}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    splits = data.synthetic(n_train=12, n_test=4)
    return tune.search(PROFILE, splits, directory=tmp_path_factory.mktemp("tune"), verbose=0), splits


@pytest.mark.slow
def test_search_saves_best_hyperparameters_in_the_profile_space(result):
    res, _ = result
    assert res.trials == 2 and len(res.table) == 2
    saved = json.loads((res.directory / "best_hp.json").read_text())
    assert saved == res.best_hp
    assert saved["widths"] == [8, 16, 32, 64] and saved["stem_width"] == 8
    assert 5e-4 <= saved["lr"] <= 5e-3
    saved_table = pd.read_csv(res.directory / "trials.csv", index_col=0, dtype={"trial": str})
    assert saved_table["val_accuracy"].tolist() == pytest.approx(res.table["val_accuracy"].tolist())
    assert saved_table["lr"].tolist() == pytest.approx(res.table["lr"].tolist())
    assert saved_table["trial"].tolist() == res.table["trial"].tolist()
    assert res.table["val_accuracy"].is_monotonic_decreasing


@pytest.mark.slow
def test_rerun_resumes_and_says_so(result, capsys):
    res, splits = result
    again = tune.search(PROFILE, splits, directory=res.directory, verbose=0)
    assert "resuming the search" in capsys.readouterr().out
    assert again.trials == res.trials  # nothing silently wiped, nothing re-run


def test_default_space_stays_within_the_parameter_budget():
    hp = kt.HyperParameters()
    tune.space(hp, "resnet")
    choices = {p.name: p.values for p in hp.space if hasattr(p, "values")}
    for width in choices["width"]:
        for blocks in choices["blocks"]:
            model = networks.build("resnet", {"widths": [width * m for m in (1, 2, 4, 8)], "stem_width": 32,
                                            "blocks": [int(b) for b in blocks]})
            assert model.count_params() <= 5_000_000


@pytest.mark.slow
def test_params_limit_the_search_and_the_rest_keep_the_profile_values(tmp_path):
    profile = {**PROFILE, "tune": {**PROFILE["tune"], "params": ["lr"]}}
    profile["main"] = {**PROFILE["main"], "weight_decay": 0.02, "hp": {"crop": 40, "dropout": 0.3}}
    res = tune.search(profile, data.synthetic(n_train=12, n_test=4), directory=tmp_path, verbose=0)
    assert set(res.best_hp) == {"lr"}  # dropout, weight decay, augmentation, widths: the profile's
    assert set(res.table.columns) == {"trial", "val_accuracy", "lr", "epochs"}


def test_unknown_or_empty_params_are_refused_before_any_trial():
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        tune.space(kt.HyperParameters(), "resnet", params=["lr", "depth"])
    with pytest.raises(ValueError, match="nothing to search"):
        tune.space(kt.HyperParameters(), "baseline", params=["width"])


@pytest.mark.slow
def test_changed_settings_start_a_new_search_beside_the_old_one(result, capsys):
    res, splits = result
    changed = {**PROFILE, "main": {**PROFILE["main"], "label_smoothing": 0.0}}
    tune.search(changed, splits, directory=res.directory, verbose=0)
    out = capsys.readouterr().out
    assert "new search" in out and "resuming" not in out
    folders = sorted(p.parent.name for p in res.directory.glob("*/oracle.json"))
    assert len(folders) == 2 and all(f.startswith("random-") for f in folders)
    # the first search is still there and still resumes; options that trials do not use
    # (the final training's epochs) do not start another
    tune.search({**PROFILE, "epochs": 99}, splits, directory=res.directory, verbose=0)
    assert "resuming the search" in capsys.readouterr().out
    assert len(list(res.directory.glob("*/oracle.json"))) == 2


def test_learning_rate_and_weight_decay_ranges_follow_the_optimizer():
    # Keras scales decoupled weight decay by the learning rate: AdamW needs far larger values than
    # SGD, whose learning rates are in turn far larger than AdamW's
    ranges = {"adamw": {"lr": (5e-4, 5e-3), "weight_decay": (1e-3, 1e-1)},
              "sgd": {"lr": (1e-2, 2e-1), "weight_decay": (1e-4, 1e-2)}}
    for optimizer, expected in ranges.items():
        hp = kt.HyperParameters()
        tune.space(hp, "resnet", params=["lr", "weight_decay"], optimizer=optimizer)
        assert {p.name: (p.min_value, p.max_value) for p in hp.space} == expected
