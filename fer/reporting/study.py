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

from fer.config import PROJECT_DIR, REPORTS_DIR, short_path
from fer.inference.cards import plain


def resolve_model_path(profile: str, model_path: str | os.PathLike | None = None,
                       train_models: bool = True) -> tuple[Path, str]:
    """The model notebook 03 evaluates, and a sentence saying where it came from.

    An explicit ``model_path`` wins; with ``train_models`` it is the ensemble that 02 trained in
    this run (``runs/<profile>/main-ensemble/model.keras``: an error if 02 has not made it); with
    ``train_models=False`` the bundled model in ``fer/weights``, and the sentence says so.
    """
    from fer.inference.predict import bundled_path
    from fer.training.recipe import run_dirs

    if model_path:
        path = Path(model_path).expanduser()
        if not path.exists() and not path.is_absolute() and (PROJECT_DIR / path).exists():
            path = PROJECT_DIR / path  # "fer/weights/main.keras" from a notebook in notebooks/
        if not path.exists():
            raise FileNotFoundError(f"model_path={model_path!s} does not exist; pass a .keras file or None.")
        return path, f"the model given as model_path ({short_path(path)})"
    if train_models:
        trained = run_dirs({"profile": profile})["ensemble"] / "model.keras"
        if not trained.exists():
            raise FileNotFoundError(
                f"{short_path(trained)} does not exist: 02_train_tune has not trained the {profile!r} recipe's "
                "ensemble. Run 02 first, or set train_models=False to evaluate the bundled model.")
        return trained, f"the ensemble that 02_train_tune trained in this run (profile {profile!r}, {short_path(trained)})"
    path = bundled_path()  # raises with what to do when there is none
    return path, (f"the bundled model ({short_path(path)}), trained by the full recipe and shipped; "
                  "train_models=False: nothing was trained in this run, only the evaluation is run here")


def model_entry(path: str | os.PathLike, card: Mapping[str, Any], trained_in_this_run: bool) -> dict[str, Any]:
    """``evaluate.model`` of the metrics file: which model 03 evaluated."""
    from fer.inference import cards

    members = card.get("members") or []
    return {"path": short_path(path), "kind": "ensemble" if members else "single", "members": len(members) or 1,
            "trained_in_this_run": bool(trained_in_this_run), "sha256": cards.sha256(path)}


def recipe_header(settings: Mapping[str, Any], tune: bool, train_models: bool) -> str:
    """What notebook 02 is about to do: the profile (and why, under ``auto``), the recipe, the time."""
    from fer.devices import accelerators
    from fer.training import recipe

    gpus = accelerators()
    device = f"GPU: {', '.join(gpus)}" if gpus else "no GPU, the CPU"
    lines = [f"profile {settings['profile']} on this machine ({device})"]
    if not train_models:
        lines.append("train_models=False: nothing is trained. Shown: the recipe of the shipped models "
                     "(the full profile), their cards and their learning curves where kept.")
    lines.append(f"recipe: {recipe.describe(settings, tune=tune)}")
    if train_models:
        lines.append(f"expected time: {recipe.expected_time(settings)}")
    return "\n".join(lines)


def shipped_cards(weights_dir: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The bundled models' cards by step (``main``: the ensemble, ``lite``), each marked ``source: shipped``."""
    from fer.config import WEIGHTS_DIR
    from fer.inference.cards import bundled

    found = {n: bundled(n, weights_dir or WEIGHTS_DIR) for n in ("main", "lite")}
    return {n: {**c, "source": "shipped"} for n, c in found.items() if c}


def summary_lines(cards: Mapping[str, Any]) -> list[str]:
    """One line per model of the recipe: size, epochs and training time."""
    out = []
    for name in ("main", "lite", "baseline"):
        if not (c := cards.get(name)):
            continue
        members = c.get("members") or []
        epochs = (f"{len(members)} members × {members[0].get('epochs_run')} epochs" if members
                  else f"{c.get('epochs_run')} epochs")
        out.append(f"{name}: {c.get('arch')}, {c.get('params', 0):,} parameters, {epochs}, "
                   f"{(c.get('train_wall_s') or 0) / 60:.1f} min of training{' in all' if members else ''}")
    return out


def provenance(cards: Mapping[str, Mapping[str, Any]], evaluation_only: bool = True) -> str:
    """Where and when the shipped models were trained, in one sentence per model; with
    ``evaluation_only`` (nothing trained in this run) it says so."""
    out = []
    for name, card in cards.items():
        if not isinstance(card, Mapping) or card.get("source") != "shipped":
            continue
        hw = card.get("hardware") or {}
        where = ", ".join(hw.get("gpus") or []) or hw.get("cpu") or "unknown hardware"
        out.append(f"{name}: trained by the {card.get('data', {}).get('profile', '?')} recipe on {where}, "
                   f"{str(card.get('date', '?'))[:10]}")
    if not out:
        return ""
    return "; ".join(out) + (". Only the evaluation is re-run here." if evaluation_only else ".")


def curves(cards: Mapping[str, Any]) -> dict[str, dict[str, list[float]]]:
    """The per-epoch curves the cards keep, by name (``main · seed 0`` per member, ``lite``, ``baseline``)."""
    out = {}
    for member in (cards.get("main") or {}).get("members") or []:
        if member.get("history"):
            out[f"main · seed {(member.get('config') or {}).get('seed')}"] = member["history"]
    for name in ("lite", "baseline"):
        if (cards.get(name) or {}).get("history"):
            out[name] = cards[name]["history"]
    return out


def lost_curves(cards: Mapping[str, Any]) -> str:
    """A sentence naming the models whose cards keep no per-epoch history, and why (the card's
    ``history_note``); empty when every model has its curves."""
    lost = [f"main · seed {(m.get('config') or {}).get('seed')}" for m in (cards.get("main") or {}).get("members") or []
            if not m.get("history")]
    lost += [n for n in ("lite", "baseline") if n in cards and not cards[n].get("history")]
    if not lost:
        return ""
    why = next((c.get("history_note") for c in cards.values() if isinstance(c, Mapping) and c.get("history_note")),
               "the card keeps none")
    return f"No per-epoch history for {', '.join(lost)}: {why}."


def training_table(cards: Mapping[str, Any], published_baseline: bool = False):
    """One row per model card: parameters, epochs, wall time, validation accuracy without/with TTA.

    An ensemble's card is followed by one row per member (``main · seed 1, 45 ep``), so the
    gain of averaging is visible next to what each member reached alone. ``cards`` may be what
    :func:`fer.training.recipe.train` returns (its ``members`` list is shown through the ensemble).
    ``published_baseline`` adds the seed's CNN at its published figure, labelled as such."""
    import pandas as pd

    from fer.reporting.results import ANCHORS

    cards = {n: c for n, c in cards.items() if n != "members" and isinstance(c, Mapping)}

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
    if published_baseline:
        seed = next(a for a in ANCHORS if a["model"].startswith("seed repository"))
        rows.append({"model": "baseline (published, not trained here)", "arch": "baseline",
                     "val_acc_single": seed["accuracy"] / 100, "validation": seed["split"],
                     "source": f"the seed repository's own figure: {seed['protocol']}"})
    return pd.DataFrame(rows).set_index("model")


def train_metrics(cards: Mapping[str, Any], trained: bool, tuned: bool, best_hp: Mapping[str, Any] | None) -> dict:
    """Notebook 02's section of the metrics file: each model of the recipe, and the lite's teacher."""
    from fer.inference import cards as fer_cards
    from fer.training.recipe import teacher_entry

    models = {}
    for name in ("main", "lite", "baseline"):
        c = cards.get(name)
        if not c:
            continue
        path = Path(c["run_dir"]) / "model.keras" if c.get("run_dir") else None
        models[name] = {
            "params": c.get("params"), "epochs": c.get("epochs_run"), "wall_s": c.get("train_wall_s"),
            "val_accuracy": c.get("metrics", {}).get("validation", {}).get("accuracy_single"),
            "validation": c.get("data", {}).get("validation"),
            "source": "trained in this run" if trained else c.get("source", "shipped"),
            "kind": "ensemble" if c.get("members") else "single", "members": len(c.get("members") or []) or 1,
            "path": short_path(path) if path else f"fer/weights/{name}.keras",
            "sha256": fer_cards.sha256(path) if path else c.get("sha256"),
        }
        if name == "lite":
            models[name]["teacher"] = teacher_entry(c)
    return {"trained_in_this_run": bool(trained), "tuned_in_this_run": bool(tuned), "best_hp": best_hp, "models": models}


# --------------------------------------------------------------------------- metrics files


def metrics_path(profile: str) -> Path:
    """``reports/metrics/<profile>.json`` (``auto`` resolved: :func:`fer.config.auto_profile`)."""
    from fer.config import auto_profile

    return REPORTS_DIR / "metrics" / f"{auto_profile() if profile == 'auto' else profile}.json"


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
