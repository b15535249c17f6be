"""fer.training.recipe: the one shape every profile trains (members → ensemble → distilled lite →
baseline), where each step writes, and the members side by side as separate processes."""

from __future__ import annotations

import json

import pytest

from fer import config
from fer.training import recipe


def test_members_are_consecutive_seeds_and_every_step_has_its_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "RUNS_DIR", tmp_path)
    profile = {"profile": "p", "seed": 4, "members": 3}
    assert recipe.member_seeds(profile) == [4, 5, 6]
    dirs = recipe.run_dirs(profile)
    assert [d.name for d in dirs["members"]] == ["member-s4", "member-s5", "member-s6"]
    assert dirs["ensemble"] == tmp_path / "p" / "main-ensemble" and dirs["lite"] == tmp_path / "p" / "lite"
    assert recipe.member_seeds({"profile": "p"}) == [0]
    with pytest.raises(ValueError, match="at least 1"):
        recipe.member_seeds({"members": 0})


@pytest.mark.parametrize("name", ["smoke", "cpu", "full"])
def test_every_profile_has_the_shape(name):
    """At least two members, a lite distilled from the ensemble; the baseline trained only in full."""
    profile = config.load_profile(name)
    assert len(recipe.member_seeds(profile)) >= 2
    lite = config.config_from_profile(profile, "lite", {"teacher": "ensemble.keras", "seed": recipe.lite_seed(profile)})
    assert 0 < lite.distill <= 1 and lite.teacher == "ensemble.keras"
    assert recipe.trains_baseline(profile) is (name == "full")
    text = recipe.describe(profile)
    assert f"{len(recipe.member_seeds(profile))} members" in text and "distilled from the ensemble" in text
    assert ("search" in text) is (profile.get("tune_in_recipe", True) is not False)
    assert recipe.expected_time(profile)  # printed at the top of notebook 02


def test_the_full_baseline_is_the_seed_notebooks_recipe():
    cfg = config.config_from_profile(config.load_profile("full"), "baseline")
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.epochs) == ("adamw", 5e-4, 0.0, 64, 50)
    assert (cfg.schedule, cfg.plateau_factor, cfg.plateau_patience) == ("plateau", 0.1, 2)
    assert cfg.flip and (cfg.rotation, cfg.zoom, cfg.shift, cfg.erasing, cfg.mixup, cfg.label_smoothing) == (0, 0, 0, 0, 0, 0)


def test_auto_is_full_with_a_gpu_and_cpu_without(monkeypatch):
    import fer.devices

    monkeypatch.setattr(fer.devices, "accelerators", lambda: ["NVIDIA H100"])
    assert config.auto_profile() == "full" and config.load_profile("auto")["profile"] == "full"
    monkeypatch.setattr(fer.devices, "accelerators", lambda: [])
    assert config.load_profile("auto")["profile"] == "cpu"


def test_members_go_side_by_side_only_on_a_gpu(monkeypatch):
    monkeypatch.setattr(recipe, "accelerators", lambda: [])
    assert not recipe.side_by_side({"members": 3})
    monkeypatch.setattr(recipe, "accelerators", lambda: ["GPU"])
    assert recipe.side_by_side({"members": 3}) and not recipe.side_by_side({"members": 1})
    assert not recipe.side_by_side({"members": 3, "side_by_side": False})


def test_teacher_entry_reads_a_card_or_a_config(tmp_path):
    f = tmp_path / "t.keras"
    f.write_bytes(b"abc")
    assert recipe.teacher_entry({"teacher": {"path": "x", "sha256": "y", "params": 3}}) == {"path": "x", "sha256": "y"}
    assert recipe.teacher_entry({"config": {"teacher": str(f)}})["sha256"].startswith("ba7816bf")
    assert recipe.teacher_entry({"config": {}}) is None


def _tiny(tmp_path, **extra) -> dict:
    profile = config.load_profile("smoke")
    profile.update(profile="tiny", epochs=1, **extra)
    for block in ("main", "lite"):
        profile[block] = {**profile[block], "max_train": 64}
    return profile


@pytest.mark.slow
def test_side_by_side_members_are_separate_runs_then_the_ensemble_teaches_the_lite(tmp_path, monkeypatch):
    """The GPU path on a CPU: each member is its own ``python -m fer train`` process (prefixed output),
    then the ensemble and the lite are made in this process, the lite from the ensemble's file."""
    from fer.data import sources
    from fer.inference import cards as fer_cards

    monkeypatch.setattr(recipe, "RUNS_DIR", tmp_path)
    profile = _tiny(tmp_path, side_by_side=True)
    splits = sources.load_source("synthetic", seed=0)
    out = recipe.train(profile, splits)
    dirs = recipe.run_dirs(profile)
    logs = [(d / "log.csv").read_text() for d in dirs["members"]]
    assert all(log.count("\n") == 2 for log in logs)  # header + one epoch each, written by the children
    assert (tmp_path / "tiny" / "recipe-profile.yaml").exists()
    assert [m["config"]["seed"] for m in out["main"]["members"]] == [0, 1]
    assert out["main"]["members"][0]["history"]["val_accuracy"]  # the card keeps each member's curve
    teacher = json.loads((dirs["lite"] / "card.json").read_text())["teacher"]
    assert teacher["sha256"] == fer_cards.sha256(dirs["ensemble"] / "model.keras")
    again = recipe.train(profile, splits)  # every step reused: the ensemble file keeps its bytes
    assert fer_cards.sha256(dirs["ensemble"] / "model.keras") == teacher["sha256"]
    assert again["lite"]["epochs_run"] == 1
    # the explicit ship step: cards with curves, the run file they came from, the TFLite file beside
    from fer.cli import main

    weights = tmp_path / "weights"
    assert main(["ship", str(dirs["ensemble"]), str(dirs["lite"]), "--weights-dir", str(weights)]) == 0
    shipped_main, shipped_lite = (json.loads((weights / f"{n}.json").read_text()) for n in ("main", "lite"))
    assert shipped_main["source_run"]["sha256"] == shipped_lite["teacher"]["sha256"] == teacher["sha256"]
    assert shipped_main["members"][1]["history"]["loss"] and shipped_lite["history"]["val_accuracy"]
    assert (weights / "main.tflite").exists() and (weights / "lite.tflite").exists()


@pytest.mark.slow
def test_a_failing_member_stops_the_recipe_with_what_to_do(tmp_path, monkeypatch):
    from fer.data import sources

    monkeypatch.setattr(recipe, "RUNS_DIR", tmp_path)
    profile = _tiny(tmp_path, side_by_side=True)
    profile["main"] = {**profile["main"], "optimizer": "rmsprop"}  # refused by the children's training
    with pytest.raises(RuntimeError, match="member-s0, member-s1 failed.*resumes"):
        recipe.train(profile, sources.load_source("synthetic", seed=0))
