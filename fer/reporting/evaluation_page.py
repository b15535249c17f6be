"""The page ``python -m fer evaluate --report DIR`` writes: ``index.html`` with its figures (the
confusion matrix, the most confident mistakes, robustness), ``predictions.csv`` and ``summary.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fer.config import CLASSES, IMAGE_SIZE, PACKAGE_DIR
from fer.evaluation import evaluate
from fer.evaluation.evaluate import Evaluation
from fer.reporting import plots


def write_report(ev: Evaluation, s: dict[str, Any], out_dir: str | os.PathLike, robustness=None) -> Path:
    """``out_dir/index.html`` with its figures, plus ``predictions.csv`` and ``summary.json``."""
    import jinja2


    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ev.table.to_csv(out / "predictions.csv", index=False)
    figures = {}
    if s.get("confusion"):
        figures["confusion.png"] = plots.confusion_matrices(np.array(s["confusion"], float), title="")
    if ev.mistakes:
        figures["mistakes.png"] = plots.face_gallery(*mistake_gallery(ev), title="")
    if robustness is not None:
        figures["robustness.png"] = plots.robustness(robustness)
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=100, bbox_inches="tight")
        plots._plt().close(fig)
    summary = dict(s)
    if robustness is not None:
        from fer.evaluation import robustness as rb

        summary["robustness"] = rb.summary(robustness)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"), autoescape=True)
    page = env.get_template("evaluation.html").render(
        s=s, summary_text=evaluate.text(s), figures=list(figures), classes=CLASSES,
        robustness=None if robustness is None else robustness.to_html(index=False, float_format="%.3f", border=0))
    (out / "index.html").write_text(page)
    return out / "index.html"


def mistake_gallery(ev: Evaluation) -> tuple[np.ndarray, list[str]]:
    """The most confident mistakes as ``fer.reporting.plots.face_gallery`` takes them: crops and captions
    (file name, true class, prediction and its probability)."""
    titles = []
    for _, i, _ in ev.mistakes:
        row = ev.table.iloc[i]
        titles.append(f"{Path(row['image']).name[:18]}\ntrue {row['label']}\npred {row['predicted']} {row['confidence']:.0%}")
    crops = np.stack([m[2] for m in ev.mistakes]) if ev.mistakes else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return crops, titles


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
