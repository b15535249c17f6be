"""fer.reporting.plots: every figure draws from the data it is given; predictions land on their faces."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fer import data  # noqa: E402
from fer.config import CLASSES  # noqa: E402
from fer.data import audit
from fer.evaluation import metrics
from fer.reporting import plots


@pytest.fixture(scope="module")
def splits():
    return data.synthetic(n_train=10, n_test=4, seed=0)


def test_data_figures(splits):
    x, y = splits["train"]
    report = audit.audit(splits)
    counts = {s: r["classes"] for s, r in report["splits"].items()}
    fig = plots.class_balance(counts)
    assert len(fig.axes) == 2
    heights = sorted(p.get_height() for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == sorted(n for cls in counts.values() for n in cls.values() if n > 0)
    fig = plots.sample_grid(x, y, per_class=3)
    assert len(fig.axes) == 3 * len(CLASSES)
    for r, name in enumerate(CLASSES):  # row r: three faces of class r, named on the left
        row = fig.axes[3 * r: 3 * r + 3]
        assert row[0].texts[0].get_text() == name
        for ax in row:
            (image,) = ax.images
            assert any(np.array_equal(image.get_array(), face) for face in x[y == r])
    fig = plots.pixel_statistics(x, y)
    assert len(fig.axes) == len(CLASSES) + 2
    for i, (ax, name) in enumerate(zip(fig.axes[: len(CLASSES)], CLASSES, strict=True)):  # the mean face of each class
        assert ax.get_title() == f"mean {name}"
        np.testing.assert_allclose(ax.images[0].get_array(), x[y == i].mean(axis=0))


def test_evaluation_figures(splits):
    x, y = splits["public_test"]
    proba = np.random.default_rng(0).dirichlet(np.ones(len(CLASSES)), size=len(y))
    counts = metrics.confusion(y, proba.argmax(1))
    fig = plots.confusion_matrices(counts)
    # every cell annotated with its count (left) and its row share (right), in reading order
    assert [t.get_text() for t in fig.axes[0].texts] == [f"{v:.0f}" for v in counts.ravel()]
    norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    assert [t.get_text() for t in fig.axes[1].texts] == [f"{v:.2f}" for v in norm.ravel()]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(CLASSES)
    table = metrics.reliability(y, proba)
    ece = metrics.expected_calibration_error(y, proba)
    fig = plots.reliability_diagram(table, ece)
    assert f"{ece:.3f}" in fig.axes[0].get_title()
    bars = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(bars, table["accuracy"].fillna(0))
    idx = metrics.confident_mistakes(y, proba, k=5)
    titles = plots.mistake_titles(y, proba, idx)
    assert titles[0] == (f"true: {CLASSES[y[idx[0]]]}\npred: {CLASSES[proba[idx[0]].argmax()]} "
                         f"{proba[idx[0]].max():.0%}")
    fig = plots.face_gallery(x[idx], titles, cols=4)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 4 * -(-len(idx) // 4) and len(drawn) == len(idx)  # full rows, blanks empty
    assert [ax.get_title() for ax in drawn] == titles
    for ax, face in zip(drawn, x[idx], strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), face)


def test_learning_curves_accept_history_and_log_table():
    import pandas as pd

    hist = {"loss": [2.0, 1.5], "val_loss": [1.9, 1.7], "accuracy": [0.3, 0.5], "val_accuracy": [0.3, 0.4], "wall_s": 3.0}
    fig = plots.learning_curves({"a": hist, "b": pd.DataFrame(hist).drop(columns="wall_s")})
    assert len(fig.axes[0].lines) == 4 and len(fig.axes[1].lines) == 4
    for ax, key in zip(fig.axes, ("loss", "accuracy"), strict=True):  # each curve is its run's numbers
        assert ax.get_title() == key
        curves = {line.get_label(): line for line in ax.lines}
        assert set(curves) == {f"{r} {s}" for r in "ab" for s in ("train", "validation")}
        for run in "ab":
            np.testing.assert_allclose(curves[f"{run} train"].get_ydata(), hist[key])
            np.testing.assert_allclose(curves[f"{run} validation"].get_ydata(), hist[f"val_{key}"])
            np.testing.assert_array_equal(curves[f"{run} train"].get_xdata(), [1, 2])
