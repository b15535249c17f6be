"""What the notebooks share about the study itself: which model 03 evaluates, notebook 02's table
of the models trained, and ``reports/metrics/<profile>.json``, where each notebook writes its
headline numbers for the report index (:mod:`fer.reporting.frontpage`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fer.config import PROJECT_DIR, REPORTS_DIR, RUNS_DIR, short_path
from fer.inference.cards import plain


def resolve_model_path(profile: str, model_path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The model a notebook evaluates, and a sentence saying where it came from.

    An explicit ``model_path`` wins; otherwise the main model trained by
    ``02_train_tune`` for this profile (``runs/<profile>/main/model.keras``); otherwise the
    bundled model in ``fer/weights``.
    """
    from fer.inference.predict import bundled_path

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
