"""Metrics: accuracy and macro-F1 with bootstrap intervals, per-class tables, confusion,
calibration, the most confident mistakes, test-time augmentation and the unseen-image protocol.

Everything here takes plain arrays (labels as indices into ``fer.CLASSES``, probabilities
``(N, 7)``) and returns numbers or pandas tables, so ``notebooks/03_evaluate.ipynb`` only
arranges them and ``fer.reporting.plots`` only draws them. Every interval in the project is
:func:`bootstrap_ci`'s. Speed is :mod:`fer.evaluation.speed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fer.config import CLASSES, NUM_CLASSES

# --------------------------------------------------------------------------- metrics


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's rule)."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float] = accuracy,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(point, low, high)``: the metric and its percentile bootstrap interval.

    Test sets of a few thousand faces give accuracies uncertain by about ±1.5 points; the
    interval says whether a difference between two models is worth reading.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("cannot bootstrap an empty split")
    point = metric(y_true, y_pred)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y_true), size=(n_boot, len(y_true)))
    stats = np.array([metric(y_true[i], y_pred[i]) for i in idx])
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(point), float(lo), float(hi)


def summary(y_true: np.ndarray, proba: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Accuracy and macro-F1 with 95 % bootstrap intervals, and ECE, of one split."""
    y_pred = np.asarray(proba).argmax(axis=1)
    acc = bootstrap_ci(y_true, y_pred, accuracy, n_boot, seed=seed)
    f1 = bootstrap_ci(y_true, y_pred, macro_f1, min(n_boot, 300), seed=seed)  # F1 is ~50x slower
    return {
        "images": int(len(y_true)),
        "accuracy": acc[0], "accuracy_ci": [acc[1], acc[2]],
        "macro_f1": f1[0], "macro_f1_ci": [f1[1], f1[2]],
        "ece": expected_calibration_error(y_true, proba),
    }


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray):
    """scikit-learn's classification report as a DataFrame (one row per class, then averages)."""
    import pandas as pd
    from sklearn.metrics import classification_report

    rep = classification_report(y_true, y_pred, labels=list(range(NUM_CLASSES)), target_names=list(CLASSES),
                                output_dict=True, zero_division=0)
    rep.pop("accuracy", None)
    df = pd.DataFrame(rep).T
    df["support"] = df["support"].astype(int)
    return df


def confusion(y_true: np.ndarray, y_pred: np.ndarray, normalize: bool = False) -> np.ndarray:
    """7×7 confusion matrix (rows: true class); ``normalize`` divides each row by its total."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=list(range(NUM_CLASSES))).astype(float)
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    return cm


# --------------------------------------------------------------------------- calibration


def reliability(y_true: np.ndarray, proba: np.ndarray, bins: int = 15):
    """Per confidence bin: images, mean confidence and accuracy (the reliability diagram's data)."""
    import pandas as pd

    proba = np.asarray(proba)
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = which == b
        rows.append({
            "low": edges[b], "high": edges[b + 1], "images": int(m.sum()),
            "confidence": float(conf[m].mean()) if m.any() else np.nan,
            "accuracy": float(correct[m].mean()) if m.any() else np.nan,
        })
    return pd.DataFrame(rows)


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    """ECE: the image-weighted mean gap between confidence and accuracy over confidence bins.

    0 means "when the model says 70 %, it is right 70 % of the time".
    """
    table = reliability(y_true, proba, bins).dropna()
    if table.empty:
        return float("nan")
    w = table["images"] / table["images"].sum()
    return float((w * (table["confidence"] - table["accuracy"]).abs()).sum())


# --------------------------------------------------------------------------- errors, TTA


def confident_mistakes(y_true: np.ndarray, proba: np.ndarray, k: int = 16) -> np.ndarray:
    """Indices of the ``k`` wrong predictions made with the highest confidence, most confident first.

    These are where label noise and genuinely ambiguous faces show up.
    """
    proba = np.asarray(proba)
    wrong = np.flatnonzero(proba.argmax(axis=1) != np.asarray(y_true))
    order = np.argsort(-proba[wrong].max(axis=1), kind="stable")
    return wrong[order[:k]]


def tta_table(classifier, x: np.ndarray, y: np.ndarray, modes=(None, "flip", "tencrop")):
    """Accuracy, macro-F1 and seconds per mode of test-time augmentation (none, flip, ten-crop)."""
    import pandas as pd

    rows = []
    for tta in modes:
        start = time.perf_counter()
        pred = classifier.predict_proba(x, tta=tta).argmax(axis=1)
        rows.append({"tta": tta or "none", "views": {None: 1, "flip": 2, "tencrop": 10}[tta],
                     "accuracy": accuracy(y, pred), "macro_f1": macro_f1(y, pred),
                     "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows).set_index("tta")


def evaluate_model(model, x: np.ndarray, y: np.ndarray, votes: np.ndarray | None = None) -> dict[str, Any]:
    """A model card's ``metrics.validation``: accuracy and macro-F1 of the Keras ``model`` on
    ``(x, y)``, plain and with flip / ten-crop TTA, and the single view's 95 % bootstrap interval
    (:func:`summary`'s, so the card, the README and notebook 03 quote one interval). With FER+
    ``votes`` ``(N, 10)`` also :func:`agreement_fields` per view."""
    from fer.inference.predict import Classifier

    classifier = Classifier(model)
    out: dict[str, Any] = {}
    preds = {mode or "single": classifier.predict_proba(x, tta=mode).argmax(axis=1) for mode in (None, "flip", "tencrop")}
    for view, pred in preds.items():
        out[f"accuracy_{view}"], out[f"macro_f1_{view}"] = accuracy(y, pred), macro_f1(y, pred)
    out["accuracy_single_ci"] = accuracy_interval(y, preds["single"])
    if votes is not None:
        for view, pred in preds.items():
            out |= agreement_fields(votes, pred, y, view)
    return out


# --------------------------------------------------------------------------- agreement with people


def agreement(votes: np.ndarray, y_pred: np.ndarray, y_labels: np.ndarray | None = None, n_boot: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """How often ``y_pred`` is the FER+ majority (``fer.data.ferplus.majority``: more than 5 of 10
    votes on one of the 7 classes), over the faces that have one, with its 95 % bootstrap
    interval; the same on the strong-majority faces (>= 8 of 10); per majority class; and, with
    FER2013's ``y_labels``, how often those labels are the majority (the context line)."""
    from fer.data import ferplus

    votes, y_pred = np.asarray(votes), np.asarray(y_pred)
    if len(votes) != len(y_pred):
        raise ValueError(f"{len(votes)} vote rows but {len(y_pred)} predictions")
    m, s = ferplus.majority(votes), ferplus.strong(votes)
    has = m >= 0
    if not has.any():
        raise ValueError("no face has a FER+ majority among the 7 classes: nothing to agree with")
    point, lo, hi = bootstrap_ci(m[has], y_pred[has], accuracy, n_boot, seed=seed)
    out: dict[str, Any] = {"images": int(has.sum()), "agreement": point, "agreement_ci": [lo, hi],
                           "strong_images": int(s.sum())}
    if s.any():
        point, lo, hi = bootstrap_ci(m[s], y_pred[s], accuracy, n_boot, seed=seed)
        out |= {"agreement_strong": point, "agreement_strong_ci": [lo, hi]}
    out["per_class"] = {c: {"images": int((m == i).sum()), "agreement": accuracy(m[m == i], y_pred[m == i])}
                        for i, c in enumerate(CLASSES)}
    if y_labels is not None:
        y_labels = np.asarray(y_labels)
        out["labels_agreement"] = accuracy(m[has], y_labels[has])
        out["labels_agreement_strong"] = accuracy(m[s], y_labels[s]) if s.any() else float("nan")
    return out


def agreement_table(by_view: Mapping[str, Mapping[str, Any]]):
    """:func:`agreement` results by view (``{"single": ..., "tencrop": ...}``) as one table,
    with FER2013's own labels as the last row (the context)."""
    import pandas as pd

    def ci(a, key):
        return f"{a[key]:.3f} [{a[key + '_ci'][0]:.3f}, {a[key + '_ci'][1]:.3f}]" if key in a else ""

    rows = {view: {"faces with a majority": a["images"], "agreement": ci(a, "agreement"),
                   "faces >= 8/10": a["strong_images"], "agreement >= 8/10": ci(a, "agreement_strong")}
            for view, a in by_view.items()}
    first = next(iter(by_view.values()))
    if "labels_agreement" in first:
        rows["FER2013's own labels"] = {"faces with a majority": first["images"], "agreement": f"{first['labels_agreement']:.3f}",
                                        "faces >= 8/10": first["strong_images"],
                                        "agreement >= 8/10": f"{first['labels_agreement_strong']:.3f}"}
    return pd.DataFrame(rows).T


def agreement_fields(votes: np.ndarray, y_pred: np.ndarray, y_labels: np.ndarray, view: str) -> dict[str, Any]:
    """A card's agreement entries for one ``view`` (single, flip, tencrop): ``agreement_<view>``
    and ``agreement_strong_<view>``; the single view adds the intervals, the face counts and
    FER2013's own labels' agreement (``labels_agreement``, ``labels_agreement_strong``)."""
    a = agreement(votes, y_pred, y_labels, n_boot=1000 if view == "single" else 1)
    out = {f"agreement_{view}": a["agreement"], f"agreement_strong_{view}": a.get("agreement_strong")}
    if view == "single":
        out |= {"agreement_single_ci": a["agreement_ci"], "agreement_strong_single_ci": a.get("agreement_strong_ci"),
                "agreement_images": a["images"], "agreement_strong_images": a["strong_images"],
                "labels_agreement": a["labels_agreement"], "labels_agreement_strong": a["labels_agreement_strong"]}
    return out


def accuracy_interval(y_true: np.ndarray, y_pred: np.ndarray, seed: int = 0) -> list[float]:
    """The 95 % bootstrap interval of the accuracy, as :func:`summary` draws it (1,000 resamples)."""
    return list(bootstrap_ci(y_true, y_pred, accuracy, 1000, seed=seed)[1:])


# --------------------------------------------------------------------------- protocol


def unseen_mask(splits: Mapping[str, tuple[np.ndarray, np.ndarray]], split: str = "public_test") -> np.ndarray:
    """True for images of ``split`` whose exact pixels never occur in ``train``.

    FER2013's PublicTest shares images with Training; accuracy on the rest is the honest number.
    """
    # the audit's own fingerprint, so both agree on "same image"
    from fer.data.audit import image_digests

    x = splits[split][0]
    if "train" not in splits:
        return np.ones(len(x), dtype=bool)
    seen = set(image_digests(splits["train"][0]).tolist())
    return np.array([d not in seen for d in image_digests(x).tolist()], dtype=bool)
