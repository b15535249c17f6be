"""fer.evaluation.metrics: the numbers the evaluation report rests on, on cases with a known answer."""

import numpy as np
import pytest

from fer import data
from fer.config import NUM_CLASSES
from fer.evaluation import metrics


def one_hot_proba(labels, confidence):
    """Probabilities whose top class is ``labels`` with ``confidence``, the rest spread evenly."""
    p = np.full((len(labels), NUM_CLASSES), (1 - confidence) / (NUM_CLASSES - 1))
    p[np.arange(len(labels)), labels] = confidence
    return p


def test_ece_is_zero_when_confidence_matches_accuracy():
    # 10 predictions at 70 % confidence, 7 of them right: perfectly calibrated.
    y_true = np.array([0] * 7 + [1] * 3)
    proba = one_hot_proba(np.zeros(10, int), 0.7)
    assert metrics.expected_calibration_error(y_true, proba) == pytest.approx(0.0, abs=1e-9)


def test_ece_of_overconfident_model_is_the_gap():
    # Always 90 % sure, right half the time: ECE = |0.9 - 0.5| = 0.4.
    y_true = np.array([0, 1] * 50)
    proba = one_hot_proba(np.zeros(100, int), 0.9)
    assert metrics.expected_calibration_error(y_true, proba) == pytest.approx(0.4)


def test_ece_weights_bins_by_image_count():
    # 80 images at 0.95 all right (gap 0.05), 20 at 0.35 all wrong (gap 0.35): 0.8*0.05 + 0.2*0.35.
    y_true = np.array([0] * 80 + [1] * 20)
    proba = np.vstack([one_hot_proba(np.zeros(80, int), 0.95), one_hot_proba(np.zeros(20, int), 0.35)])
    assert metrics.expected_calibration_error(y_true, proba) == pytest.approx(0.8 * 0.05 + 0.2 * 0.35)


def test_reliability_counts_every_image_once():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(NUM_CLASSES), size=500)
    y = rng.integers(0, NUM_CLASSES, 500)
    table = metrics.reliability(y, proba, bins=10)
    assert table["images"].sum() == 500
    filled = table.dropna()
    assert ((filled["confidence"] >= filled["low"]) & (filled["confidence"] <= filled["high"])).all()


def test_bootstrap_interval_contains_the_point_estimate_and_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    widths = []
    for n in (200, 5000):
        y = rng.integers(0, NUM_CLASSES, n)
        pred = np.where(rng.random(n) < 0.6, y, (y + 1) % NUM_CLASSES)  # ~60 % accurate
        point, lo, hi = metrics.bootstrap_ci(y, pred, n_boot=400)
        assert lo <= point <= hi
        assert point == pytest.approx(np.mean(y == pred))
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~sqrt(25) = 5x narrower


def test_bootstrap_interval_is_degenerate_for_a_perfect_model():
    y = np.arange(70) % NUM_CLASSES
    assert metrics.bootstrap_ci(y, y, n_boot=100) == (1.0, 1.0, 1.0)


def test_bootstrap_rejects_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="labels"):
        metrics.bootstrap_ci(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        metrics.bootstrap_ci(np.zeros(0), np.zeros(0))


def test_summary_macro_f1_counts_rare_classes_equally():
    # Always predicting class 3: accuracy is its share, macro-F1 far lower.
    y = np.array([3] * 90 + [1] * 10)
    proba = one_hot_proba(np.full(100, 3), 0.9)
    s = metrics.summary(y, proba, n_boot=50)
    assert s["accuracy"] == pytest.approx(0.9)
    assert s["macro_f1"] < 0.5
    assert s["accuracy_ci"][0] <= s["accuracy"] <= s["accuracy_ci"][1]


def test_confident_mistakes_are_wrong_and_sorted_by_confidence():
    y = np.array([0, 0, 0, 0])
    proba = np.vstack([one_hot_proba([1], 0.6), one_hot_proba([0], 0.99), one_hot_proba([2], 0.9), one_hot_proba([3], 0.3)])
    assert metrics.confident_mistakes(y, proba, k=2).tolist() == [2, 0]
    assert metrics.confident_mistakes(y, proba, k=10).tolist() == [2, 0, 3]


def test_confusion_rows_are_true_classes_and_normalise_to_one():
    y, pred = np.array([0, 0, 1, 6]), np.array([0, 1, 1, 6])
    cm = metrics.confusion(y, pred)
    assert cm.shape == (NUM_CLASSES, NUM_CLASSES)
    assert cm[0, 1] == 1 and cm[0, 0] == 1 and cm[1, 0] == 0
    norm = metrics.confusion(y, pred, normalize=True)
    assert norm[0].sum() == pytest.approx(1.0) and norm[2].sum() == 0  # an absent class stays 0


def test_per_class_table_has_every_class_and_the_averages():
    y = np.arange(14) % NUM_CLASSES
    table = metrics.per_class_table(y, y)
    assert {"angry", "surprise", "macro avg", "weighted avg"} <= set(table.index)
    assert (table.loc["happy", ["precision", "recall", "f1-score"]] == 1).all()


def test_unseen_mask_flags_test_images_that_occur_in_train():
    splits = data.synthetic(n_train=3, n_test=2, seed=0)
    x_tr, y_tr = splits["train"]
    x_te, y_te = splits["public_test"]
    x_te = x_te.copy()
    x_te[0] = x_tr[5]  # leak one training image into the test split
    mask = metrics.unseen_mask({"train": (x_tr, y_tr), "public_test": (x_te, y_te)})
    assert mask.tolist() == [False] + [True] * (len(x_te) - 1)
