"""Evaluation: metrics with confidence intervals, calibration, errors, TTA and latency.

Everything here takes plain arrays (labels as indices into ``fer.CLASSES``, probabilities
``(N, 7)``) and returns numbers or pandas tables, so ``notebooks/03_evaluate.ipynb`` only
arranges them and ``fer.plots`` only draws them. The headline numbers are also written to
``reports/metrics/<profile>.json``, which ``python -m fer reproduce`` shows in the report index.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fer.cards import ANCHORS, plain
from fer.config import CLASSES, NUM_CLASSES, PROJECT_DIR, REPORTS_DIR, RUNS_DIR, short_path

# --------------------------------------------------------------------------- which model


def resolve_model_path(profile: str, model_path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The model a notebook evaluates, and a sentence saying where it came from.

    An explicit ``model_path`` wins; otherwise the main model trained by
    ``02_train_tune`` for this profile (``runs/<profile>/main/model.keras``); otherwise the
    bundled model in ``fer/weights``.
    """
    from fer.predict import bundled_path

    if model_path:
        path = Path(model_path).expanduser()
        if not path.exists() and not path.is_absolute() and (PROJECT_DIR / path).exists():
            path = PROJECT_DIR / path  # "fer/weights/main.keras" from a notebook in notebooks/
        if not path.exists():
            raise FileNotFoundError(f"model_path={model_path!s} does not exist; pass a .keras file or None.")
        return path, f"the model given as model_path ({short_path(path)})"
    trained = RUNS_DIR / str(profile) / "main" / "model.keras"
    if trained.exists():
        return trained, f"the main model trained by 02_train_tune for profile {profile!r} ({short_path(trained)})"
    path = bundled_path()  # raises with what to do when there is none
    return path, f"the bundled model ({short_path(path)}); no model trained for profile {profile!r} was found"


def training_table(cards: Mapping[str, Mapping[str, Any]]):
    """One row per model card: parameters, epochs, wall time, validation accuracy without/with TTA.

    An ensemble's card is followed by one row per member (``main · seed 1, 45 ep``), so the
    gain of averaging is visible next to what each member reached alone."""
    import pandas as pd

    def row(name, card, metrics, validation, source):
        return {
            "model": name, "arch": card.get("arch"), "params": card.get("params"),
            "epochs": card.get("epochs_run"), "wall_min": round((card.get("train_wall_s") or float("nan")) / 60, 1),
            "val_acc_single": metrics.get("accuracy_single"), "val_acc_flip": metrics.get("accuracy_flip"),
            "val_acc_tencrop": metrics.get("accuracy_tencrop"), "val_macro_f1": metrics.get("macro_f1_single"),
            "validation": validation, "source": source,
        }

    rows = []
    for name, card in cards.items():
        validation, source = card.get("data", {}).get("validation"), card.get("source", "this run")
        rows.append(row(name, card, card.get("metrics", {}).get("validation", {}), validation, source))
        for member in card.get("members", []):
            cfg = member.get("config") or {}
            label = f"{name} · seed {cfg.get('seed')}, {member.get('epochs_run')} ep"
            rows.append(row(label, member, member.get("validation") or {}, validation, member.get("run")))
    return pd.DataFrame(rows).set_index("model")


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


# --------------------------------------------------------------------------- errors, TTA, latency


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


def evaluate_model(model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """A model card's ``metrics.validation``: accuracy and macro-F1 of the Keras ``model`` on
    ``(x, y)``, plain and with flip / ten-crop TTA."""
    from fer.predict import Classifier

    out: dict[str, float] = {}
    for mode, row in tta_table(Classifier(model), x, y).iterrows():
        name = "single" if mode == "none" else mode
        out[f"accuracy_{name}"] = float(row["accuracy"])
        out[f"macro_f1_{name}"] = float(row["macro_f1"])
    return out


def latency(classifier, faces: np.ndarray, batch_sizes=(1, 32, 256), repeats: int = 20, tta=None):
    """Median milliseconds per call and images/s of ``classifier.predict_proba`` per batch size.

    The first call traces the model and is excluded; each size is timed ``repeats`` times
    (fewer for large batches) so a loaded machine shows as spread, not as a single bad number.
    """
    import pandas as pd

    faces = np.asarray(faces)
    rows = []
    for bs in batch_sizes:
        batch = np.resize(faces, (bs, *faces.shape[1:]))
        classifier.predict_proba(batch, tta=tta)  # warm-up: tracing
        n = max(3, repeats if bs <= 32 else repeats // 4)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            classifier.predict_proba(batch, tta=tta)
            times.append(time.perf_counter() - start)
        med = float(np.median(times))
        rows.append({"batch": bs, "ms_per_call": 1000 * med, "ms_per_image": 1000 * med / bs,
                     "images_per_s": bs / med, "calls": n})
    return pd.DataFrame(rows).set_index("batch")


# --------------------------------------------------------------------------- protocol


def unseen_mask(splits: Mapping[str, tuple[np.ndarray, np.ndarray]], split: str = "public_test") -> np.ndarray:
    """True for images of ``split`` whose exact pixels never occur in ``train``.

    FER2013's PublicTest shares images with Training; accuracy on the rest is the honest number.
    """
    # the audit's own fingerprint, so both agree on "same image"
    from fer.audit import image_digests

    x = splits[split][0]
    if "train" not in splits:
        return np.ones(len(x), dtype=bool)
    seen = set(image_digests(splits["train"][0]).tolist())
    return np.array([d not in seen for d in image_digests(x).tolist()], dtype=bool)


def comparison_table(ours: Mapping[str, float], params: str = "", split_name: str = "PublicTest"):
    """Our accuracies beside the seed and published anchors, with each one's protocol."""
    import pandas as pd

    rows = [{"model": name, "accuracy": 100 * acc, "split": split_name, "params": params,
             "protocol": "train copies of PublicTest images removed before training; "
                         "PublicTest also guided the search (no separate validation split)"}
            for name, acc in ours.items()]
    return pd.DataFrame(rows + [dict(a) for a in ANCHORS]).set_index("model")


# --------------------------------------------------------------------------- metrics files


def metrics_path(profile: str) -> Path:
    return REPORTS_DIR / "metrics" / f"{profile}.json"


def write_metrics(profile: str, section: str, values: Mapping[str, Any]) -> Path:
    """Merge ``values`` under ``section`` into ``reports/metrics/<profile>.json``.

    Each notebook owns one section (``explore``, ``train``, ``evaluate``), so running one
    notebook again replaces its numbers and keeps the others'.
    """
    path = metrics_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    current[section] = plain(values)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path
