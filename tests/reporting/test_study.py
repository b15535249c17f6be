"""fer.reporting.study: which model notebook 03 evaluates, notebook 02's table of models, and the
metrics file each notebook writes its section of."""

import json

import numpy as np
import pytest

from fer.reporting import study


def test_write_metrics_merges_sections(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "REPORTS_DIR", tmp_path)
    study.write_metrics("p", "explore", {"images": np.int64(5)})
    path = study.write_metrics("p", "evaluate", {"accuracy": np.float32(0.5), "ci": np.array([0.4, 0.6])})
    saved = json.loads(path.read_text())
    assert saved == {"explore": {"images": 5}, "evaluate": {"accuracy": 0.5, "ci": [pytest.approx(0.4), pytest.approx(0.6)]}}
    study.write_metrics("p", "explore", {"images": 6})
    again = json.loads(path.read_text())
    assert again["explore"] == {"images": 6} and again["evaluate"] == saved["evaluate"]


def test_resolve_model_path_explicit_then_this_runs_ensemble_or_the_bundled_one_when_told(tmp_path, monkeypatch):
    from fer.training import recipe

    monkeypatch.setattr(recipe, "RUNS_DIR", tmp_path)
    explicit = tmp_path / "mine.keras"
    explicit.write_bytes(b"x")
    assert study.resolve_model_path("smoke", explicit)[0] == explicit
    with pytest.raises(FileNotFoundError, match="model_path"):
        study.resolve_model_path("smoke", tmp_path / "missing.keras")
    with pytest.raises(FileNotFoundError, match="Run 02 first, or set train_models=False"):
        study.resolve_model_path("smoke")  # 02 has not trained: never the bundled model in its place
    trained = tmp_path / "smoke" / "main-ensemble" / "model.keras"
    trained.parent.mkdir(parents=True)
    trained.write_bytes(b"x")
    path, why = study.resolve_model_path("smoke")
    assert path == trained and "trained in this run" in why
    path, why = study.resolve_model_path("smoke", train_models=False)
    assert path.parent.name == "weights" and "bundled" in why and "nothing was trained in this run" in why


def test_model_entry_says_which_model_03_evaluated(tmp_path):
    f = tmp_path / "model.keras"
    f.write_bytes(b"abc")
    entry = study.model_entry(f, {"members": [{}, {}, {}]}, trained_in_this_run=True)
    assert entry["kind"] == "ensemble" and entry["members"] == 3 and entry["trained_in_this_run"] is True
    assert entry["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert study.model_entry(f, {}, trained_in_this_run=False)["kind"] == "single"


def test_relative_model_path_also_resolves_from_the_project_root(tmp_path, monkeypatch):
    # Notebooks run in notebooks/, where "fer/weights/x.keras" would not exist as written.
    monkeypatch.chdir(tmp_path)
    path, _ = study.resolve_model_path("smoke", "pyproject.toml")
    assert path == study.PROJECT_DIR / "pyproject.toml"


def test_training_table_lists_an_ensembles_members_under_it():
    member = {"arch": "resnet", "params": 10, "epochs_run": 45, "train_wall_s": 600.0, "run": "runs/cpu/main-s1",
              "config": {"seed": 1}, "validation": {"accuracy_single": 0.6, "accuracy_tencrop": 0.62}}
    cards = {
        "main": {"arch": "ensemble", "params": 20, "epochs_run": 90, "train_wall_s": 1200.0,
                 "data": {"validation": "public_test"}, "members": [member, {**member, "config": {"seed": 2}}],
                 "metrics": {"validation": {"accuracy_single": 0.63, "accuracy_tencrop": 0.65}}},
        "lite": {"arch": "lite", "params": 5, "epochs_run": 10, "train_wall_s": 60.0,
                 "data": {"validation": "public_test"}, "metrics": {"validation": {"accuracy_single": 0.5}}},
    }
    table = study.training_table(cards)
    assert list(table.index) == ["main", "main · seed 1, 45 ep", "main · seed 2, 45 ep", "lite"]
    assert table.loc["main", "val_acc_tencrop"] == 0.65 and table.loc["main · seed 2, 45 ep", "wall_min"] == 10.0
    assert table.loc["main · seed 1, 45 ep", "source"] == "runs/cpu/main-s1"
    assert table.loc["main · seed 1, 45 ep", "validation"] == "public_test"


def test_the_shipped_models_curves_are_said_lost_and_a_runs_curves_are_drawn():
    shipped = study.shipped_cards()
    assert set(shipped) == {"main", "lite"} and all(c["source"] == "shipped" for c in shipped.values())
    assert study.curves(shipped) == {}
    lost = study.lost_curves(shipped)
    assert "main · seed 0" in lost and "lite" in lost and "not kept" in lost
    assert "NVIDIA H200" in study.provenance(shipped) and "Only the evaluation is re-run here" in study.provenance(shipped)
    curve = {"loss": [1.0, 0.9], "accuracy": [0.3, 0.4], "val_accuracy": [0.35, 0.45]}
    run = {"main": {"members": [{"config": {"seed": 0}, "history": curve}]}, "lite": {"history": curve}}
    assert set(study.curves(run)) == {"main · seed 0", "lite"} and study.lost_curves(run) == ""


def test_train_metrics_name_the_ensemble_and_the_lites_teacher(tmp_path):
    for name in ("ens", "lite"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.keras").write_bytes(name.encode())
    teacher = {"path": str(tmp_path / "ens" / "model.keras"), "sha256": "t"}
    cards = {"members": [], "main": {"run_dir": tmp_path / "ens", "members": [{}, {}], "params": 8},
             "lite": {"run_dir": tmp_path / "lite", "teacher": teacher, "params": 2}}
    m = study.train_metrics(cards, trained=True, tuned=False, best_hp=None)
    assert m["models"]["main"]["kind"] == "ensemble" and m["models"]["main"]["members"] == 2
    assert m["models"]["lite"]["teacher"] == {"path": teacher["path"], "sha256": "t"}
    assert m["models"]["main"]["sha256"] == study.model_entry(tmp_path / "ens" / "model.keras", {}, True)["sha256"]
