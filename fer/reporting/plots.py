"""Figures for the notebooks and reports (matplotlib + seaborn), one function per figure.

Each function draws from plain arrays or tables (``fer.evaluation.metrics`` computes them) and returns
the matplotlib ``Figure``, so a notebook cell is one call and the report embeds the result.
Faces drawn on photos come from :func:`fer.inference.overlay.draw_predictions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fer.config import CLASSES


def _plt():
    """pyplot, imported on first use (matplotlib picks Agg by itself on a headless machine)."""
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------- data


def class_balance(counts: Mapping[str, Mapping[str, int]]):
    """Images per class for each split (``fer.data.audit.audit(...)['splits'][s]['classes']``)."""
    import pandas as pd
    import seaborn as sns

    plt = _plt()
    rows = [{"split": s, "class": c, "images": n} for s, cls in counts.items() for c, n in cls.items()]
    df = pd.DataFrame(rows)
    df["share"] = df["images"] / df.groupby("split")["images"].transform("sum")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    sns.barplot(df, x="class", y="images", hue="split", ax=axes[0])
    axes[0].set_title("images per class")
    sns.barplot(df, x="class", y="share", hue="split", ax=axes[1], legend=False)
    axes[1].set_title("share of each split")
    axes[1].yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
        ax.set_xlabel("")
    fig.tight_layout()
    return fig


def sample_grid(x: np.ndarray, y: np.ndarray, per_class: int = 8, seed: int = 0, title: str | None = None):
    """``per_class`` random faces of every class, one row per class."""
    plt = _plt()
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(CLASSES), per_class, figsize=(per_class * 1.1, len(CLASSES) * 1.2))
    for r, name in enumerate(CLASSES):
        idx = np.flatnonzero(y == r)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for c in range(per_class):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(pick):
                ax.imshow(x[pick[c]], cmap="gray", vmin=0, vmax=255)
        axes[r, 0].text(-4, 24, name, ha="right", va="center", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.12, right=0.98, top=0.94 if title else 0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    return fig


def pixel_statistics(x: np.ndarray, y: np.ndarray):
    """Mean face per class, and the distribution of per-image brightness and contrast by class."""
    import pandas as pd
    import seaborn as sns

    plt = _plt()
    fig = plt.figure(figsize=(13, 5.2))
    grid = fig.add_gridspec(2, len(CLASSES), height_ratios=[1, 1.4])
    for i, name in enumerate(CLASSES):
        ax = fig.add_subplot(grid[0, i])
        m = y == i
        if m.any():
            ax.imshow(x[m].mean(axis=0), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"mean {name}", fontsize=9)
        ax.axis("off")
    flat = x.reshape(len(x), -1).astype(np.float32)
    df = pd.DataFrame({"class": np.array(CLASSES)[y], "brightness": flat.mean(1), "contrast": flat.std(1)})
    for j, col in enumerate(("brightness", "contrast")):
        ax = fig.add_subplot(grid[1, j * 4 : j * 4 + (4 if j == 0 else 3)])
        sns.boxplot(df, x="class", y=col, ax=ax, fliersize=1, order=list(CLASSES))
        ax.set_title(f"per-image {col} (pixel {'mean' if j == 0 else 'std'}, 0-255)", fontsize=10)
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- training


def learning_curves(histories: Mapping[str, Any]):
    """Loss and accuracy per epoch (train dashed, validation solid) of one or more runs.

    ``histories`` maps a run name to a Keras history dict or a ``log.csv`` DataFrame.
    """
    import pandas as pd

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for i, (name, hist) in enumerate(histories.items()):
        df = hist if isinstance(hist, pd.DataFrame) else pd.DataFrame(
            {k: v for k, v in hist.items() if isinstance(v, list)})
        epochs = np.arange(1, len(df) + 1)
        color = f"C{i}"
        for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
            if key in df:
                ax.plot(epochs, df[key], "--", color=color, alpha=0.7, label=f"{name} train")
            if f"val_{key}" in df:
                ax.plot(epochs, df[f"val_{key}"], "-", color=color, label=f"{name} validation")
            ax.set_xlabel("epoch")
            ax.set_title(key)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def trial_scores(table):
    """Validation accuracy of every keras-tuner trial, best first."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(range(len(table)), table["val_accuracy"], color="C0")
    ax.set_xticks(range(len(table)), table["trial"].astype(str), rotation=90, fontsize=7)
    ax.set_xlabel("trial")
    ax.set_ylabel("best val accuracy")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- evaluation


def confusion_matrices(counts: np.ndarray, title: str = ""):
    """The confusion matrix as counts and row-normalised (recall on the diagonal), side by side."""
    import seaborn as sns

    plt = _plt()
    norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    sns.heatmap(counts, annot=True, fmt=".0f", cmap="Blues", cbar=False, ax=axes[0],
                xticklabels=CLASSES, yticklabels=CLASSES)
    sns.heatmap(norm, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=axes[1],
                xticklabels=CLASSES, yticklabels=CLASSES)
    axes[0].set_title("counts")
    axes[1].set_title("normalised by true class (diagonal = recall)")
    for ax in axes:
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def reliability_diagram(table, ece: float | None = None, title: str = ""):
    """Accuracy against confidence per bin (``fer.evaluation.metrics.reliability``), with image counts."""
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(5, 5.5), height_ratios=[3, 1], sharex=True)
    centers = (table["low"] + table["high"]) / 2
    width = float(table["high"].iloc[0] - table["low"].iloc[0])
    ax.bar(centers, table["accuracy"].fillna(0), width=width * 0.95, color="C0", label="accuracy")
    ax.plot(centers, table["confidence"], "o", color="C3", ms=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title((title + " " if title else "") + (f"ECE = {ece:.3f}" if ece is not None else ""))
    ax2.bar(centers, table["images"], width=width * 0.95, color="gray")
    ax2.set_xlabel("confidence (max probability)")
    ax2.set_ylabel("images")
    fig.tight_layout()
    return fig


def face_gallery(faces: np.ndarray, titles: Sequence[str], cols: int = 8, title: str | None = None):
    """Faces in a grid with a caption each (e.g. the most confident mistakes)."""
    plt = _plt()
    n = len(faces)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 2.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(faces[i], cmap="gray", vmin=0, vmax=255)
            ax.set_title(titles[i], fontsize=7.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def mistake_titles(y_true: np.ndarray, proba: np.ndarray, idx: np.ndarray) -> list[str]:
    """``"true: sad\\npred: neutral 93%"`` captions for ``face_gallery``."""
    return [f"true: {CLASSES[y_true[i]]}\npred: {CLASSES[proba[i].argmax()]} {proba[i].max():.0%}" for i in idx]


def disagreement_titles(y: np.ndarray, votes: np.ndarray, idx: np.ndarray) -> list[str]:
    """``"FER2013: sad\nFER+: neutral 8/10"`` captions for ``face_gallery``: a face's FER2013 label
    and its FER+ majority with the votes it got."""
    from fer.data import ferplus

    m = ferplus.majority(votes[idx])
    return [f"FER2013: {CLASSES[y[i]]}\nFER+: {CLASSES[k]} {votes[i, ferplus.CLASS_COLUMNS[k]]}/10"
            for i, k in zip(idx, m, strict=True)]


# --------------------------------------------------------------------------- photos


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], cols: int = 3):
    """RGB images side by side with titles (the static demo figure)."""
    plt = _plt()
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4.2, rows * 4.2), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i])
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- video


def label_timeline(table, title: str = ""):
    """A video's per-frame result (``fer.apps.demo.replay(...).table``): the largest face's label as a
    coloured strip, and its probabilities over time below it."""
    plt = _plt()
    import seaborn as sns
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    palette = dict(zip(CLASSES, sns.color_palette("tab10", len(CLASSES)), strict=True))
    codes = np.array([CLASSES.index(lab) if isinstance(lab, str) else np.nan for lab in table["label"]], float)
    t = table["time_s"].to_numpy()
    edges = np.append(t, t[-1] + (t[-1] - t[-2] if len(t) > 1 else 0.1))
    fig, (strip, curves) = plt.subplots(2, 1, figsize=(10, 3.8), sharex=True,
                                        gridspec_kw={"height_ratios": [1, 3]})
    strip.pcolormesh(edges, [0, 1], np.ma.masked_invalid(codes)[None, :],
                     cmap=ListedColormap([palette[c] for c in CLASSES]), vmin=-0.5, vmax=len(CLASSES) - 0.5)
    strip.set_yticks([])
    strip.set_title(title or "label per frame (largest face; blank: no face)", fontsize=10)
    for c in CLASSES:
        curves.plot(t, table[c], color=palette[c], lw=1.6)
    curves.set_ylim(0, 1)
    curves.set_xlabel("time (s)")
    curves.set_ylabel("probability")
    curves.legend(handles=[Patch(color=palette[c], label=c) for c in CLASSES], ncol=7, fontsize=8,
                  loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- robustness


def robustness(table, title: str = ""):
    """Accuracy against strength, one panel per perturbation (``fer.evaluation.robustness.table``): the 95 %
    interval as a band, the unperturbed accuracy dashed, one y axis so the panels compare."""
    from fer.evaluation.robustness import PERTURBATIONS, is_identity

    plt = _plt()
    baseline = float(table["accuracy"][is_identity(table)].iloc[0])
    names = list(dict.fromkeys(table["perturbation"]))
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    size = (3.3 * cols, 2.7 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=size, sharey=True, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        part = table[table["perturbation"] == name]
        pos = np.arange(len(part))
        ax.fill_between(pos, part["low"], part["high"], color="C0", alpha=0.25, lw=0)
        ax.plot(pos, part["accuracy"], "o-", color="C0", ms=4)
        ax.axhline(baseline, ls="--", color="0.4", lw=1)
        ax.set_xticks(pos, part["label"], fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(PERTURBATIONS[name].axis, fontsize=8)
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    for ax in axes.flat[len(names) :]:
        ax.remove()
    for r in range(rows):
        axes[r, 0].set_ylabel("accuracy")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
