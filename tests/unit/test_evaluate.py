"""fer.evaluate: the numbers the evaluation report rests on, on cases with a known answer."""

import json

import numpy as np
import pytest

from fer import data, evaluate
from fer.config import NUM_CLASSES


def one_hot_proba(labels, confidence):
    """Probabilities whose top class is ``labels`` with ``confidence``, the rest spread evenly."""
    p = np.full((len(labels), NUM_CLASSES), (1 - confidence) / (NUM_CLASSES - 1))
    p[np.arange(len(labels)), labels] = confidence
    return p


def test_ece_is_zero_when_confidence_matches_accuracy():
    # 10 predictions at 70 % confidence, 7 of them right: perfectly calibrated.
    y_true = np.array([0] * 7 + [1] * 3)
    proba = one_hot_proba(np.zeros(10, int), 0.7)
    assert evaluate.expected_calibration_error(y_true, proba) == pytest.approx(0.0, abs=1e-9)


def test_ece_of_overconfident_model_is_the_gap():
    # Always 90 % sure, right half the time: ECE = |0.9 - 0.5| = 0.4.
    y_true = np.array([0, 1] * 50)
    proba = one_hot_proba(np.zeros(100, int), 0.9)
    assert evaluate.expected_calibration_error(y_true, proba) == pytest.approx(0.4)


def test_ece_weights_bins_by_image_count():
    # 80 images at 0.95 all right (gap 0.05), 20 at 0.35 all wrong (gap 0.35): 0.8*0.05 + 0.2*0.35.
    y_true = np.array([0] * 80 + [1] * 20)
    proba = np.vstack([one_hot_proba(np.zeros(80, int), 0.95), one_hot_proba(np.zeros(20, int), 0.35)])
    assert evaluate.expected_calibration_error(y_true, proba) == pytest.approx(0.8 * 0.05 + 0.2 * 0.35)


def test_reliability_counts_every_image_once():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(NUM_CLASSES), size=500)
    y = rng.integers(0, NUM_CLASSES, 500)
    table = evaluate.reliability(y, proba, bins=10)
    assert table["images"].sum() == 500
    filled = table.dropna()
    assert ((filled["confidence"] >= filled["low"]) & (filled["confidence"] <= filled["high"])).all()


def test_bootstrap_interval_contains_the_point_estimate_and_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    widths = []
    for n in (200, 5000):
        y = rng.integers(0, NUM_CLASSES, n)
        pred = np.where(rng.random(n) < 0.6, y, (y + 1) % NUM_CLASSES)  # ~60 % accurate
        point, lo, hi = evaluate.bootstrap_ci(y, pred, n_boot=400)
        assert lo <= point <= hi
        assert point == pytest.approx(np.mean(y == pred))
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~sqrt(25) = 5x narrower


def test_bootstrap_interval_is_degenerate_for_a_perfect_model():
    y = np.arange(70) % NUM_CLASSES
    assert evaluate.bootstrap_ci(y, y, n_boot=100) == (1.0, 1.0, 1.0)


def test_bootstrap_rejects_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="labels"):
        evaluate.bootstrap_ci(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        evaluate.bootstrap_ci(np.zeros(0), np.zeros(0))


def test_summary_macro_f1_counts_rare_classes_equally():
    # Always predicting class 3: accuracy is its share, macro-F1 far lower.
    y = np.array([3] * 90 + [1] * 10)
    proba = one_hot_proba(np.full(100, 3), 0.9)
    s = evaluate.summary(y, proba, n_boot=50)
    assert s["accuracy"] == pytest.approx(0.9)
    assert s["macro_f1"] < 0.5
    assert s["accuracy_ci"][0] <= s["accuracy"] <= s["accuracy_ci"][1]


def test_confident_mistakes_are_wrong_and_sorted_by_confidence():
    y = np.array([0, 0, 0, 0])
    proba = np.vstack([one_hot_proba([1], 0.6), one_hot_proba([0], 0.99), one_hot_proba([2], 0.9), one_hot_proba([3], 0.3)])
    assert evaluate.confident_mistakes(y, proba, k=2).tolist() == [2, 0]
    assert evaluate.confident_mistakes(y, proba, k=10).tolist() == [2, 0, 3]


def test_confusion_rows_are_true_classes_and_normalise_to_one():
    y, pred = np.array([0, 0, 1, 6]), np.array([0, 1, 1, 6])
    cm = evaluate.confusion(y, pred)
    assert cm.shape == (NUM_CLASSES, NUM_CLASSES)
    assert cm[0, 1] == 1 and cm[0, 0] == 1 and cm[1, 0] == 0
    norm = evaluate.confusion(y, pred, normalize=True)
    assert norm[0].sum() == pytest.approx(1.0) and norm[2].sum() == 0  # an absent class stays 0


def test_per_class_table_has_every_class_and_the_averages():
    y = np.arange(14) % NUM_CLASSES
    table = evaluate.per_class_table(y, y)
    assert {"angry", "surprise", "macro avg", "weighted avg"} <= set(table.index)
    assert (table.loc["happy", ["precision", "recall", "f1-score"]] == 1).all()


def test_unseen_mask_flags_test_images_that_occur_in_train():
    splits = data.synthetic(n_train=3, n_test=2, seed=0)
    x_tr, y_tr = splits["train"]
    x_te, y_te = splits["public_test"]
    x_te = x_te.copy()
    x_te[0] = x_tr[5]  # leak one training image into the test split
    mask = evaluate.unseen_mask({"train": (x_tr, y_tr), "public_test": (x_te, y_te)})
    assert mask.tolist() == [False] + [True] * (len(x_te) - 1)


def test_write_metrics_merges_sections(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "REPORTS_DIR", tmp_path)
    evaluate.write_metrics("p", "explore", {"images": np.int64(5)})
    path = evaluate.write_metrics("p", "evaluate", {"accuracy": np.float32(0.5), "ci": np.array([0.4, 0.6])})
    saved = json.loads(path.read_text())
    assert saved == {"explore": {"images": 5}, "evaluate": {"accuracy": 0.5, "ci": [pytest.approx(0.4), pytest.approx(0.6)]}}
    evaluate.write_metrics("p", "explore", {"images": 6})
    again = json.loads(path.read_text())
    assert again["explore"] == {"images": 6} and again["evaluate"] == saved["evaluate"]


def test_resolve_model_path_prefers_explicit_then_trained_then_bundled(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "RUNS_DIR", tmp_path)
    explicit = tmp_path / "mine.keras"
    explicit.write_bytes(b"x")
    assert evaluate.resolve_model_path("smoke", explicit)[0] == explicit
    with pytest.raises(FileNotFoundError, match="model_path"):
        evaluate.resolve_model_path("smoke", tmp_path / "missing.keras")
    trained = tmp_path / "smoke" / "main" / "model.keras"
    trained.parent.mkdir(parents=True)
    trained.write_bytes(b"x")
    path, why = evaluate.resolve_model_path("smoke")
    assert path == trained and "02_train_tune" in why
    path, why = evaluate.resolve_model_path("other")
    assert path.parent.name == "weights" and "bundled" in why


def test_relative_model_path_also_resolves_from_the_project_root(tmp_path, monkeypatch):
    # Notebooks run in notebooks/, where "fer/weights/x.keras" would not exist as written.
    monkeypatch.chdir(tmp_path)
    path, _ = evaluate.resolve_model_path("smoke", "pyproject.toml")
    assert path == evaluate.PROJECT_DIR / "pyproject.toml"


def test_comparison_table_keeps_the_anchors_and_states_protocols():
    table = evaluate.comparison_table({"ours": 0.7})
    assert table.loc["ours", "accuracy"] == pytest.approx(70.0)
    assert table.loc["seed repository CNN (2020)", "accuracy"] == 66.8
    assert table["protocol"].str.len().gt(0).all()


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
    table = evaluate.training_table(cards)
    assert list(table.index) == ["main", "main · seed 1, 45 ep", "main · seed 2, 45 ep", "lite"]
    assert table.loc["main", "val_acc_tencrop"] == 0.65 and table.loc["main · seed 2, 45 ep", "wall_min"] == 10.0
    assert table.loc["main · seed 1, 45 ep", "source"] == "runs/cpu/main-s1"
    assert table.loc["main · seed 1, 45 ep", "validation"] == "public_test"
