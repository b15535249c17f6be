"""Runs: a profile's model block trained end to end into a run folder (``model.keras`` +
``card.json``), finished runs reused, runs averaged into an ensemble, and a run shipped into
``fer/weights`` with its card (``python -m fer train|ensemble ... --ship``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras
import numpy as np

from fer.config import RUNS_DIR, WEIGHTS_DIR, TrainConfig, config_from_profile, short_path
from fer.devices import hardware
from fer.evaluation.metrics import evaluate_model
from fer.inference import cards
from fer.training.fit import fit, input_files, set_aside, with_defaults


def run_dir_for(profile: Mapping[str, Any], name: str) -> Path:
    """Where a profile's run of model ``name`` goes by default: ``runs/<profile>/<name>``."""
    return RUNS_DIR / str(profile.get("profile", "custom")) / name


def run(
    profile: Mapping[str, Any],
    splits: dict,
    block: str = "main",
    hp: Mapping[str, Any] | None = None,
    run_dir: str | os.PathLike | None = None,
    verbose: int | str = "auto",
    reuse: bool = True,
    float16_weights: bool = False,
    plan=None,
    global_batch: int | None = None,
) -> dict[str, Any]:
    """Train one profile block end to end and write ``model.keras`` + ``card.json`` to ``run_dir``.

    ``float16_weights`` rounds the trained weights to float16 values before the evaluation, so
    that :func:`ship` stores a half-size file (a 5 M-parameter model in float32 is over the
    16 MiB a shipped file may be) that computes exactly what the card reports. A finished
    float32 run is rounded and evaluated again in place, not trained again.

    With ``reuse`` a run that already finished in ``run_dir`` with the same configuration and
    data is loaded instead of trained again (an interrupted one resumes through
    ``BackupAndRestore``), so re-running ``make reproduce`` after a later failure costs nothing.

    Training images that also occur in an evaluation split, and constant (black) images, are
    dropped first (``fer.data.audit.clean``), so validation accuracy is measured on unseen faces.
    Model selection uses ``public_test`` (or ``val``, or a split of train), never a private
    test. Returns the model card (a dict) with ``model`` (the Keras model) and ``run_dir``
    (where it was written) added.

    ``plan`` (:func:`fer.training.parallel.plan`) trains data-parallel; ``global_batch`` replaces the
    block's batch size and scales its learning rate alike (:func:`fer.training.parallel.scaled`). In a
    run over several processes every process trains, process 0 alone evaluates and writes; the
    others return ``{"process": i, "run_dir": ...}`` once it has.
    """
    from fer.data import audit
    from fer.inference.dtypes import float32_copy, round_to_float16
    from fer.training import parallel

    plan = plan or parallel.Plan()
    cfg = config_from_profile(profile, block, hp)
    if global_batch or plan.distributed:
        cfg = parallel.scaled(cfg, plan, global_batch)
    name = block
    run_dir = Path(run_dir) if run_dir else run_dir_for(profile, name)
    cleaned = audit.clean(splits)
    train_xy, val_xy = audit.training_splits(cleaned, seed=cfg.seed)
    fingerprint = data_fingerprint(train_xy, val_xy)
    card = finished_run(run_dir, cfg, fingerprint) if reuse else None
    stored = card.get("weights_dtype", "float32") if card is not None else None
    if stored == ("float16" if float16_weights else "float32"):
        print(f"{name}: reusing the finished run in {run_dir} (same configuration and data); "
              "delete that folder to train again")
        return card
    if stored == "float32" and float16_weights:  # round the finished run; no need to train again
        if not plan.chief:  # process 0 rounds, evaluates and writes
            parallel.barrier(plan, "fer-run-written")
            return {"process": plan.process, "run_dir": run_dir}
        model = card.pop("model")
        print(f"{name}: rounding the finished run in {run_dir} to float16 weights and evaluating it again")
    else:
        model, history = fit(train_xy, val_xy, cfg, run_dir=run_dir, verbose=verbose, fingerprint=fingerprint, plan=plan)
        if not plan.chief:  # process 0 evaluates and writes; wait until it has
            parallel.barrier(plan, "fer-run-written")
            return {"process": plan.process, "run_dir": run_dir}
        card = cards.new(
            model, name, cfg.arch, asdict(cfg),
            epochs_run=len(history.get("loss", [])),
            train_wall_s=round(history["wall_s"], 1),
            precision=history["policy"],
            pipeline=history["pipeline"],
            **({"online_teacher": history["online_teacher"]} if "online_teacher" in history else {}),
            hardware={**hardware(), **({"data_parallel": history["data_parallel"]} if "data_parallel" in history else {})},
            data=_data_block(profile, splits, cleaned, fingerprint, history["train_images"], len(val_xy[0])),
            history={k: v for k, v in history.items() if isinstance(v, list)},
        )
    if float16_weights:
        round_to_float16(model)
    # measured on the float32 copy that ship() writes, so the card describes the shipped file
    card["metrics"] = {"validation": evaluate_model(float32_copy(model), *val_xy), "precision": "float32"}
    card["weights_dtype"] = "float16" if float16_weights else "float32"
    if cfg.teacher:
        card["teacher"] = cards.entry(cfg.teacher)
    if cfg.init:
        card["init"] = cards.entry(cfg.init)
    saved = _save(run_dir, model, card)
    parallel.barrier(plan, "fer-run-written")
    return saved


def _save(run_dir: Path, model, card: dict[str, Any]) -> dict[str, Any]:
    """Write a finished run: ``model.keras`` and ``card.json``; return the card with ``model`` and ``run_dir``."""
    model.save(run_dir / "model.keras")
    (run_dir / "card.json").write_text(json.dumps(cards.plain(card), indent=2))
    return {**card, "model": model, "run_dir": run_dir}


def ensemble_run(
    profile: Mapping[str, Any],
    splits: dict,
    members: list[str | os.PathLike],
    run_dir: str | os.PathLike | None = None,
    name: str = "main",
    float16_weights: bool = False,
) -> dict[str, Any]:
    """Average the finished training runs ``members`` into one model and write its run folder.

    ``float16_weights`` rounds the weights to float16 values before evaluating, so that
    :func:`ship` stores a half-size file that computes exactly what the card reports.

    Each member is a folder written by :func:`run` (``model.keras`` + ``card.json``). A member
    whose card records a data fingerprint must have been trained on exactly the data that
    ``profile``/``splits`` give now; an older card without one must at least match in image
    counts (and says so: ``fingerprint_checked: false``). The ensemble is evaluated like a
    single run, and its card lists every member's recipe, time and validation metrics, so
    the shipped file still traces back to ``python -m fer train`` runs.
    """
    from fer import data
    from fer.data import audit
    from fer.inference.dtypes import round_to_float16
    from fer.training.networks import ensemble

    cleaned = audit.clean(splits)
    seed = int(profile.get("seed") or 0)
    train_xy, val_xy = audit.training_splits(cleaned, seed=seed)
    fingerprint = data_fingerprint(train_xy, val_xy)
    entries, models = [], []
    for folder in map(Path, members):
        card_file, model_file = folder / "card.json", folder / "model.keras"
        if not (card_file.exists() and model_file.exists()):
            raise FileNotFoundError(f"{folder} is not a finished training run (no card.json and model.keras)")
        card = json.loads(card_file.read_text())
        d = card.get("data", {})
        if d.get("fingerprint") not in (None, fingerprint):
            raise data.DataError(f"{folder} was trained on other data than {profile.get('data_source')} gives now")
        counts = (d.get("train_images"), d.get("validation_images"))
        if d.get("fingerprint") is None and counts != (len(train_xy[0]), len(val_xy[0])):
            raise data.DataError(f"{folder} was trained on {counts[0]} / validated on {counts[1]} images, "
                             f"not {len(train_xy[0])} / {len(val_xy[0])}: other data")
        entries.append({
            "run": short_path(folder), "sha256": cards.sha256(model_file), "fingerprint_checked": "fingerprint" in d,
            **{k: card.get(k) for k in ("arch", "params", "config", "epochs_run", "train_wall_s", "precision",
                                        "hardware", "date")},
            "validation": card.get("metrics", {}).get("validation"),
        })
        models.append(keras.saving.load_model(model_file, compile=False))
    model = ensemble(models, name=name)
    if float16_weights:
        round_to_float16(model)
    run_dir = Path(run_dir) if run_dir else run_dir_for(profile, f"{name}-ensemble")
    set_aside(run_dir, {})
    run_dir.mkdir(parents=True, exist_ok=True)
    hardware_seen = [c["hardware"] for c in entries]
    card = cards.new(
        model, name, "ensemble", {"arch": "ensemble", "combine": "mean of the members' probabilities", "members": len(entries)},
        members=entries,
        epochs_run=sum(int(c["epochs_run"] or 0) for c in entries),  # all members' epochs together
        train_wall_s=round(sum(float(c["train_wall_s"] or 0) for c in entries), 1),
        precision="float32",
        hardware=hardware_seen[0] if all(h == hardware_seen[0] for h in hardware_seen) else hardware_seen,
        data=_data_block(profile, splits, cleaned, fingerprint, len(train_xy[0]), len(val_xy[0])),
        metrics={"validation": evaluate_model(model, *val_xy), "precision": "float32"},
        weights_dtype="float16" if float16_weights else "float32",
    )
    return _save(run_dir, model, card)


def _data_block(profile, splits, cleaned, fingerprint: str, train_images: int, val_images: int) -> dict[str, Any]:
    """The card's ``data`` entry: where the data came from, its fingerprint, what was used."""
    source = profile.get("data_source") or _located_source()
    return {
        "profile": profile.get("profile"),
        "source": short_path(source) if Path(str(source)).exists() else str(source),
        "fingerprint": fingerprint,
        "train_images": int(train_images),
        "dropped_from_train": int(len(splits["train"][0]) - len(cleaned["train"][0])),
        "validation": next((s for s in ("val", "public_test") if s in cleaned), "split of train"),
        "validation_images": int(val_images),
    }


def _located_source() -> str:
    """Where ``fer.data.sources.locate`` finds FER2013 now (what a profile without ``data_source`` used)."""
    from fer import data
    from fer.data import sources

    try:
        return str(sources.locate(download_ok=False))  # never download just to name the source
    except data.DataError:
        return "unknown"


def data_fingerprint(train_xy: tuple, val_xy: tuple) -> str:
    """sha256 of the training and validation arrays: the same data wherever its file lives."""
    h = hashlib.sha256()
    for arr in (*train_xy, *val_xy):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def finished_run(run_dir: Path, cfg: TrainConfig, fingerprint: str) -> dict[str, Any] | None:
    """The card of a finished run in ``run_dir`` trained exactly like ``cfg`` on the same data
    (with ``model`` loaded into it), or None. Data is compared by content (``fingerprint``), not
    by path; a card without a fingerprint is never reused."""
    card_file, model_file = run_dir / "card.json", run_dir / "model.keras"
    if not (card_file.exists() and model_file.exists()):
        return None
    try:
        card = json.loads(card_file.read_text())
    except (OSError, ValueError):
        return None
    same_config = with_defaults(card.get("config") or {}) == json.loads(json.dumps(asdict(cfg), default=list))
    same_data = card.get("data", {}).get("fingerprint") == fingerprint
    same_files = all((card.get(key) or {}).get("sha256") == digest for key, digest in input_files(cfg).items())
    if not (same_config and same_data and same_files):
        return None
    return {**card, "model": keras.saving.load_model(model_file), "run_dir": run_dir}


def ship(run_dir: str | os.PathLike, name: str | None = None, weights_dir: str | os.PathLike | None = None) -> Path:
    """Copy a run's ``model.keras`` into ``fer/weights/<name>.keras`` with its card + sha256."""
    from fer.inference.dtypes import float32_copy, retyped_copy

    run_dir = Path(run_dir)
    card = json.loads((run_dir / "card.json").read_text())
    name = name or card["name"]
    dest_dir = Path(weights_dir or WEIGHTS_DIR)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{name}.keras"
    # Loaded without compiling and saved again: the shipped file holds no optimizer state
    # (AdamW's two moments would triple its size) and is all inference needs. A run whose
    # weights were rounded to float16 values is stored as float16 (half the size, no loss);
    # fer.load_classifier turns it back into float32 layers.
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    model = retyped_copy(model, "float16") if card.get("weights_dtype") == "float16" else float32_copy(model)
    model.save(dest)
    card["shipped_precision"] = "float32"  # what it computes in once loaded
    card.pop("history", None)  # the run folder keeps the full curves; the card stays readable
    cards.write(dest, card)
    return dest
