"""Runs: a profile's model block trained end to end into a run folder (``model.keras`` +
``card.json``), finished runs reused, runs averaged into an ensemble, and a run shipped into
``fer/weights`` with its card (``python -m fer train|ensemble ... --ship``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras

from fer.config import RUNS_DIR, WEIGHTS_DIR, TrainConfig, config_from_profile, short_path
from fer.data import audit, ferplus
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
    dropped first (``fer.data.audit.prepare``, the preparation that ensembles and the search
    share), so validation accuracy is measured on unseen faces.
    Model selection uses ``public_test`` (or ``val``, or a split of train), never a private
    test. Returns the model card (a dict) with ``model`` (the Keras model) and ``run_dir``
    (where it was written) added.

    ``plan`` (:func:`fer.training.parallel.plan`) trains data-parallel; ``global_batch`` replaces the
    block's batch size and scales its learning rate alike (:func:`fer.training.parallel.scaled`). In a
    run over several processes every process trains, process 0 alone evaluates and writes; the
    others return ``{"process": i, "run_dir": ...}`` once it has.
    """
    from fer.training import parallel

    plan = plan or parallel.Plan()
    cfg = config_from_profile(profile, block, hp)
    if global_batch or plan.distributed:
        cfg = parallel.scaled(cfg, plan, global_batch)
    run_dir = Path(run_dir) if run_dir else run_dir_for(profile, block)
    data = audit.prepare(splits, seed=cfg.seed)
    table = _vote_table(profile, splits, required=cfg.labels == "ferplus")
    val_votes = ferplus.votes_of(data.val[0], table) if table else None  # the card's agreement
    card = finished_run(run_dir, cfg, data.fingerprint) if reuse else None
    stored = card.get("weights_dtype", "float32") if card is not None else None
    if stored == ("float16" if float16_weights else "float32"):
        print(f"{block}: reusing the finished run in {run_dir} (same configuration and data); "
              "delete that folder to train again")
        return card
    if stored == "float32" and float16_weights:  # round the finished run; no need to train again
        if not plan.chief:  # process 0 rounds, evaluates and writes
            return _wait_for_process_0(plan, run_dir)
        model = card.pop("model")
        print(f"{block}: rounding the finished run in {run_dir} to float16 weights and evaluating it again")
    else:
        train, val = data.train, data.val
        if cfg.labels == "ferplus":  # the vote distributions, for learning and for choosing the best epoch
            train, val = _vote_targets(train, table), _vote_targets(val, table)
        model, history = fit(train, val, cfg, run_dir=run_dir, verbose=verbose,
                             fingerprint=data.fingerprint, plan=plan, label=run_dir.name)
        if not plan.chief:  # process 0 evaluates and writes; wait until it has
            return _wait_for_process_0(plan, run_dir)
        card = _new_card(model, block, cfg, history, _data_block(profile, data, history["train_images"]))
    saved = _save(run_dir, model, _evaluated(model, card, cfg, data.val, float16_weights, val_votes))
    parallel.barrier(plan, "fer-run-written")
    return saved


def _vote_table(profile: Mapping[str, Any], splits: dict, required: bool) -> dict:
    """FER+ votes by image (:func:`fer.data.ferplus.by_image`), or ``{}`` when there are none;
    ``required`` (``labels: ferplus``) makes their absence an error."""
    from fer.data import DataError

    votes = ferplus.votes(profile.get("data_source"))
    if votes is None and required:
        raise DataError("labels: ferplus trains on FER+ votes, and none were found for this data (the line above "
                        "says why): set $FER_VOTES to fer2013new.csv or ferplus_votes.csv")
    return ferplus.by_image(splits, votes) if votes is not None else {}


def _val_votes(profile: Mapping[str, Any], splits: dict, data: audit.Prepared):
    """The FER+ votes of the validation faces (for the card's agreement), or None without votes."""
    table = _vote_table(profile, splits, required=False)
    return ferplus.votes_of(data.val[0], table) if table else None


def _vote_targets(xy: tuple, table: dict) -> tuple:
    """``(faces, (N, 7) vote targets)`` of the faces in ``xy`` that have them (:func:`fer.data.ferplus.targets`)."""
    targets, keep = ferplus.targets(ferplus.votes_of(xy[0], table))
    return xy[0][keep], targets[keep]


def _wait_for_process_0(plan, run_dir: Path) -> dict[str, Any]:
    """On a process other than 0: wait until process 0 has written the run; say which this was."""
    from fer.training import parallel

    parallel.barrier(plan, "fer-run-written")
    return {"process": plan.process, "run_dir": run_dir}


def _new_card(model, name: str, cfg: TrainConfig, history: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The card of a model ``fit`` just trained: recipe, time, precision, pipeline, hardware, data, curves."""
    return cards.new(
        model, name, cfg.arch, asdict(cfg),
        epochs_run=len(history.get("loss", [])),
        train_wall_s=round(history["wall_s"], 1),
        precision=history["policy"],
        pipeline=history["pipeline"],
        **({"online_teacher": history["online_teacher"]} if "online_teacher" in history else {}),
        hardware={**hardware(), **({"data_parallel": history["data_parallel"]} if "data_parallel" in history else {})},
        data=data,
        history={k: v for k, v in history.items() if isinstance(v, list)},
    )


def _evaluated(model, card: dict[str, Any], cfg: TrainConfig, val_xy: tuple, float16_weights: bool,
               val_votes=None) -> dict[str, Any]:
    """``card`` with the validation metrics, the weights' dtype and the teacher and starting model
    (rounding ``model``'s weights to float16 values first when asked)."""
    from fer.inference.dtypes import float32_copy, round_to_float16

    if float16_weights:
        round_to_float16(model)
    # measured on the float32 copy that ship() writes, so the card describes the shipped file
    card["metrics"] = {"validation": evaluate_model(float32_copy(model), *val_xy, votes=val_votes), "precision": "float32"}
    card["weights_dtype"] = "float16" if float16_weights else "float32"
    if cfg.teacher:
        card["teacher"] = cards.entry(cfg.teacher)
    if cfg.init:
        card["init"] = cards.entry(cfg.init)
    return card


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
    reuse: bool = True,
) -> dict[str, Any]:
    """Average the finished training runs ``members`` into one model and write its run folder.

    With ``reuse`` an ensemble already written in ``run_dir`` from exactly these members' files
    (by sha256), on the same data and in the same precision, is loaded instead of made again: its
    ``model.keras`` keeps its bytes, so a lite distilled from it stays valid.

    ``float16_weights`` rounds the weights to float16 values before evaluating, so that
    :func:`ship` stores a half-size file that computes exactly what the card reports.

    Each member is a folder written by :func:`run` (``model.keras`` + ``card.json``). A member
    whose card records a data fingerprint must have been trained on exactly the data that
    ``profile``/``splits`` give now; an older card without one must at least match in image
    counts (and says so: ``fingerprint_checked: false``). The ensemble is evaluated like a
    single run, and its card lists every member's recipe, time and validation metrics, so
    the shipped file still traces back to ``python -m fer train`` runs.
    """
    from fer.inference.dtypes import round_to_float16
    from fer.training.networks import ensemble

    data = audit.prepare(splits, seed=int(profile.get("seed") or 0))
    entries = [_member(folder, profile, data) for folder in map(Path, members)]
    run_dir = Path(run_dir) if run_dir else run_dir_for(profile, f"{name}-ensemble")
    if reuse and (card := _finished_ensemble(run_dir, entries, data.fingerprint, float16_weights)):
        print(f"{name}: reusing the ensemble in {short_path(run_dir)} (same members, data and precision)")
        return card
    models = [keras.saving.load_model(Path(folder) / "model.keras", compile=False) for folder in members]
    model = ensemble(models, name=name)
    if float16_weights:
        round_to_float16(model)
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
        data=_data_block(profile, data),
        metrics={"validation": evaluate_model(model, *data.val, votes=_val_votes(profile, splits, data)),
                 "precision": "float32"},
        weights_dtype="float16" if float16_weights else "float32",
    )
    return _save(run_dir, model, card)


def _finished_ensemble(run_dir: Path, entries: list[dict], fingerprint: str, float16_weights: bool) -> dict | None:
    """The card (with ``model`` and ``run_dir``) of an ensemble in ``run_dir`` made from the same member files."""
    card_file, model_file = run_dir / "card.json", run_dir / "model.keras"
    if not (card_file.exists() and model_file.exists()):
        return None
    card = json.loads(card_file.read_text())
    same = ([m.get("sha256") for m in card.get("members", [])] == [m["sha256"] for m in entries]
            and card.get("data", {}).get("fingerprint") == fingerprint
            and card.get("weights_dtype") == ("float16" if float16_weights else "float32"))
    return {**card, "model": keras.saving.load_model(model_file), "run_dir": run_dir} if same else None


def _member(folder: Path, profile: Mapping[str, Any], data: audit.Prepared) -> dict[str, Any]:
    """An ensemble member's entry in its card, once its run is known finished on the same data."""
    from fer.data import DataError

    card_file, model_file = folder / "card.json", folder / "model.keras"
    if not (card_file.exists() and model_file.exists()):
        raise FileNotFoundError(f"{folder} is not a finished training run (no card.json and model.keras)")
    card = json.loads(card_file.read_text())
    d = card.get("data", {})
    if d.get("fingerprint") not in (None, data.fingerprint):
        raise DataError(f"{folder} was trained on other data than {profile.get('data_source')} gives now")
    counts = (d.get("train_images"), d.get("validation_images"))
    if d.get("fingerprint") is None and counts != (len(data.train[0]), len(data.val[0])):
        raise DataError(f"{folder} was trained on {counts[0]} / validated on {counts[1]} images, "
                        f"not {len(data.train[0])} / {len(data.val[0])}: other data")
    return {
        "run": short_path(folder), "sha256": cards.sha256(model_file), "fingerprint_checked": "fingerprint" in d,
        **{k: card.get(k) for k in ("arch", "params", "config", "epochs_run", "train_wall_s", "precision",
                                    "hardware", "date")},
        "validation": card.get("metrics", {}).get("validation"),
        "history": curves(card.get("history")),
    }


#: The per-epoch curves a shipped card keeps (the run folder's log.csv has every column).
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")


def curves(history: Mapping[str, Any] | None) -> dict[str, list[float]] | None:
    """A run's per-epoch loss and accuracy (training and validation), rounded for a card; None when
    the run recorded none (the shipped models of 2026-11: their logs were not kept)."""
    if not history:
        return None
    return {k: [round(float(v), 4) for v in history[k]] for k in CURVES if history.get(k)}


def _data_block(profile: Mapping[str, Any], data: audit.Prepared, train_images: int | None = None) -> dict[str, Any]:
    """The card's ``data`` entry: where the data came from, its fingerprint, what was used
    (``train_images``: what ``fit`` trained on, when its ``max_train`` kept fewer)."""
    source = profile.get("data_source") or _located_source()
    return {
        "profile": profile.get("profile"),
        "source": short_path(source) if Path(str(source)).exists() else str(source),
        "fingerprint": data.fingerprint,
        "train_images": int(len(data.train[0]) if train_images is None else train_images),
        "dropped_from_train": data.dropped,
        "validation": data.validation,
        "validation_images": int(len(data.val[0])),
    }


def _located_source() -> str:
    """Where ``fer.data.sources.locate`` finds FER2013 now (what a profile without ``data_source`` used)."""
    from fer import data
    from fer.data import sources

    try:
        return str(sources.locate(download_ok=False))  # never download just to name the source
    except data.DataError:
        return "unknown"


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


def add_agreement(model_path: str | os.PathLike, source: str | os.PathLike) -> dict[str, Any]:
    """Measure a shipped model's agreement with the FER+ majority on the validation split its card
    names (of the FER2013 in ``source``) and write it into its card; returns the card's
    validation metrics. The accuracy measured again must be the card's within 3 faces (another
    device or backend may flip a borderline face or two; other data moves it far more), or nothing
    is written; the card keeps the accuracy it had and adds the one measured beside the agreement
    (``agreement_pass_accuracy_single``)."""
    from fer.data import DataError, load
    from fer.inference.predict import load_classifier

    path, splits = Path(model_path), load(source)
    card = cards.read(path)
    split = (card.get("data") or {}).get("validation")
    if split not in splits:
        raise DataError(f"{path}: its card validates on {split!r}, which this data does not have ({sorted(splits)})")
    votes = ferplus.votes(source)
    if votes is None:
        raise DataError("no FER+ votes for this data (the line above says why): set $FER_VOTES")
    x, y = splits[split]
    measured = evaluate_model(load_classifier(path, backend="keras").model, x, y, votes=votes[split])
    recorded = card["metrics"]["validation"]
    if abs(measured["accuracy_single"] - recorded["accuracy_single"]) * len(y) > 3:
        raise DataError(f"{path}: accuracy {measured['accuracy_single']:.4f} on this {split}, its card says "
                        f"{recorded['accuracy_single']:.4f}: other data than the card's; nothing written")
    recorded |= {k: v for k, v in measured.items() if "agreement" in k}
    recorded["agreement_pass_accuracy_single"] = measured["accuracy_single"]
    cards.write(path, card)
    return recorded


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
    card["history"] = curves(card.get("history"))  # the learning curves, without the timing columns
    card["source_run"] = {"path": short_path(run_dir), "sha256": cards.sha256(run_dir / "model.keras")}
    card.pop("tflite", None)  # written next, for this file
    cards.write(dest, card)
    from fer.inference.export import ship_tflite

    ship_tflite(dest)  # what inference runs: the shipped models are never converted at run time
    return dest
