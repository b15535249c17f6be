"""fer.plots: every figure draws from the data it is given; predictions land on their faces."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fer import audit, data, evaluate, plots  # noqa: E402
from fer.config import CLASSES  # noqa: E402


@pytest.fixture(scope="module")
def splits():
    return data.synthetic(n_train=10, n_test=4, seed=0)


def test_data_figures(splits):
    x, y = splits["train"]
    report = audit.audit(splits)
    fig = plots.class_balance({s: r["classes"] for s, r in report["splits"].items()})
    assert len(fig.axes) == 2
    assert len(plots.sample_grid(x, y, per_class=3).axes) == 3 * len(CLASSES)
    assert len(plots.pixel_statistics(x, y).axes) == len(CLASSES) + 2


def test_evaluation_figures(splits):
    x, y = splits["public_test"]
    proba = np.random.default_rng(0).dirichlet(np.ones(len(CLASSES)), size=len(y))
    fig = plots.confusion_matrices(evaluate.confusion(y, proba.argmax(1)))
    assert fig.axes[0].texts[0].get_text() != ""  # annotated cells
    table = evaluate.reliability(y, proba)
    fig = plots.reliability_diagram(table, evaluate.expected_calibration_error(y, proba))
    assert "ECE" in fig.axes[0].get_title()
    idx = evaluate.confident_mistakes(y, proba, k=5)
    titles = plots.mistake_titles(y, proba, idx)
    assert all(t.startswith("true: ") for t in titles)
    assert plots.face_gallery(x[idx], titles, cols=4) is not None


def test_learning_curves_accept_history_and_log_table():
    import pandas as pd

    hist = {"loss": [2.0, 1.5], "val_loss": [1.9, 1.7], "accuracy": [0.3, 0.5], "val_accuracy": [0.3, 0.4], "wall_s": 3.0}
    fig = plots.learning_curves({"a": hist, "b": pd.DataFrame(hist).drop(columns="wall_s")})
    assert len(fig.axes[0].lines) == 4 and len(fig.axes[1].lines) == 4


def test_draw_predictions_boxes_the_face_and_keeps_the_image():
    image = np.full((200, 300, 3), 255, np.uint8)
    faces = [{"box": [50, 60, 80, 80], "label": "happy", "probs": {c: 1 / 7 for c in CLASSES}}]
    out = plots.draw_predictions(image, faces)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[60 + 40, 50] == [240, 200, 40]).all()  # left edge of the box: happy's colour, in RGB
    assert (out[60:140, 134:200] != 255).any(axis=2).sum() > 100  # the probability bars beside it
    assert (out[190, 290] == 255).all()  # far from the box: untouched
    assert (plots.draw_predictions(image, []) == image).all()
    gray = plots.draw_predictions(image[..., 0], faces)
    assert gray.shape == image.shape
