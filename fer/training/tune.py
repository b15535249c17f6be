"""Hyperparameter search with keras-tuner over architecture, regularisation and augmentation.

``search(profile, splits)`` runs Hyperband (or a Bayesian/random search) on the profile's
``main`` block, saves the best hyperparameters as JSON and returns them with a trial table.
The final model is then retrained from those hyperparameters with the full schedule
(``fer.training.runs.run(profile, splits, hp=result.best_hp)``), not taken from a tuner checkpoint:
search trials are short, constant-learning-rate runs on a subsample.

The search directory is explicit. Each search lives in ``<directory>/<algorithm>-<key>``, where
``key`` hashes everything that decides its trials (training options, the ``tune`` block, the
data). Re-running with ``overwrite=False`` resumes the search with the same key (and says so;
a finished one costs nothing); changed settings or data start a new search beside the old ones,
which are kept, never silently reused or wiped. ``overwrite=True`` discards the same-key search.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import keras_tuner as kt
import numpy as np

from fer.config import RUNS_DIR, TrainConfig, config_from_profile
from fer.devices import set_precision
from fer.training import cluster
from fer.training.fit import compile_model
from fer.training.inputs import fit_inputs, resolve_pipeline

log = logging.getLogger(__name__)

ALGORITHMS = ("hyperband", "bayesian", "random")


@dataclass
class TuneResult:
    best_hp: dict[str, Any]  # fed to fer.training.runs.run(..., hp=best_hp)
    table: Any  # pandas DataFrame: one row per trial, best first
    directory: Path
    trials: int
    role: str | None = None  # None, or "chief" / "worker" of a distributed search (fer.training.cluster)
    ran: list[str] | None = None  # a worker's own finished trials


#: Architecture choices searched unless a profile's ``tune:`` block names its own (the smoke
#: profile searches tiny widths; every default combination stays under 5 M parameters).
CHOICES: dict[str, list] = {"width": [32, 48], "stem_width": [16, 32], "blocks": ["1111", "1221"]}


#: Every hyperparameter the search knows. A profile's ``tune.params`` may name a subset; the
#: rest keep the profile's values. Short trials rank learning rate and architecture usefully
#: but under-rate regularisation (dropout, weight decay, augmentation pay off only in long
#: runs), so the cpu profile searches ``lr``, ``stem_width`` and ``blocks`` only.
PARAMS = ("lr", "weight_decay", "dropout", "augment", "width", "stem_width", "blocks")


def space(hp, arch: str, choices: Mapping[str, list] | None = None, params: Sequence[str] | None = None,
          optimizer: str = "adamw") -> dict[str, Any]:
    """Declare the search space on ``hp`` and return the chosen values as TrainConfig overrides.

    ``params`` limits the search to those names (default: all of ``PARAMS``); ``optimizer``
    (the profile's) sets the learning-rate and weight-decay ranges.
    """
    choices = {**CHOICES, **dict(choices or {})}
    params = PARAMS if params is None else tuple(params)
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ValueError(f"tune.params: unknown hyperparameter(s) {unknown}; known: {list(PARAMS)}")
    values: dict[str, Any] = {}
    if "lr" in params:
        # SGD with momentum 0.9 steps about 1/(1 - 0.9) = 10 times its learning rate per unit of
        # gradient and does not normalise it as Adam does: its useful rates are ~30x AdamW's
        low, high = (1e-2, 2e-1) if optimizer == "sgd" else (5e-4, 5e-3)
        values["lr"] = hp.Float("lr", low, high, sampling="log")
    if "weight_decay" in params:
        # Keras applies weight decay decoupled and scaled by the learning rate (w -= lr * wd * w):
        # AdamW's learning rates (~1e-3) need 1e-3..1e-1 for any effect; SGD's (~1e-1) far less.
        # The usual coupled L2 of 5e-4 under momentum 0.9 shrinks weights about as fast as 5e-3 here.
        low, high = (1e-4, 1e-2) if optimizer == "sgd" else (1e-3, 1e-1)
        values["weight_decay"] = hp.Float("weight_decay", low, high, sampling="log")
    if "dropout" in params:
        values["dropout"] = round(hp.Float("dropout", 0.1, 0.5, step=0.1), 2)
    if "augment" in params:
        strength = hp.Choice("augment", [0.5, 1.0, 1.5])
        values.update(rotation=10.0 * strength, zoom=0.1 * strength, erasing=min(0.5, 0.25 * strength))
    if arch == "resnet":
        if "width" in params:
            base = hp.Choice("width", [int(w) for w in choices["width"]])
            values["widths"] = [base, 2 * base, 4 * base, 8 * base]
        if "stem_width" in params:
            values["stem_width"] = hp.Choice("stem_width", [int(w) for w in choices["stem_width"]])
        if "blocks" in params:
            values["blocks"] = [int(b) for b in hp.Choice("blocks", [str(b) for b in choices["blocks"]])]
    elif arch == "lite" and "width" in params:
        base = hp.Choice("width", [int(w) // 2 for w in choices["width"]])
        values["widths"] = [2 * base, 4 * base, 8 * base]
    if not values:
        raise ValueError(f"tune.params {list(params)} leaves nothing to search for {arch!r}")
    return values


def _split(values: Mapping[str, Any]) -> dict[str, Any]:
    """TrainConfig fields stay top level; everything else goes to the architecture's ``hp``."""
    out: dict[str, Any] = {"hp": {}}
    for k, v in values.items():
        (out if k in TrainConfig.__dataclass_fields__ else out["hp"])[k] = v
    return out


class FerHyperModel(kt.HyperModel):
    """keras-tuner HyperModel: ``build`` makes the model, ``fit`` builds the matching input
    pipeline (``tf.data`` under TensorFlow, :class:`fer.training.inputs.HostBatches` elsewhere, as
    training does: ``TrainConfig.pipeline``), so a search runs under JAX as under TensorFlow."""

    def __init__(self, base: TrainConfig, train: tuple, val: tuple, choices: Mapping[str, list] | None = None,
                 params: Sequence[str] | None = None):
        super().__init__(name="fer", tunable=True)
        self.base, self.train, self.val, self.choices, self.params = base, train, val, choices, params

    def config(self, hp) -> TrainConfig:
        chosen = _split(space(hp, self.base.arch, self.choices, self.params, self.base.optimizer))
        hp_arch = {**self.base.hp, **chosen.pop("hp")}
        return replace(self.base, hp=hp_arch, schedule="plateau", **chosen)

    def build(self, hp):
        from fer.training import networks

        cfg = self.config(hp)
        model = networks.build(cfg.arch, cfg.hp)
        compile_model(model, cfg, steps_per_epoch=math.ceil(len(self.train[0]) / cfg.batch_size))
        return model

    def fit(self, hp, model, *args, **kwargs):
        cfg = self.config(hp)
        crop = int(model.input_shape[1])
        kwargs.pop("validation_data", None)
        kwargs["shuffle"] = False  # the pipeline shuffles already
        train_ds, val_ds, extra = fit_inputs(self.train, self.val, cfg, crop, resolve_pipeline(cfg.pipeline))
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), *extra.pop("callbacks")]
        kwargs.update(extra)
        return model.fit(train_ds, validation_data=val_ds, **kwargs)


def directory_for(profile: Mapping[str, Any]) -> Path:
    """Where a profile's searches go by default: ``runs/<profile>/tune``."""
    return RUNS_DIR / str(profile.get("profile", "custom")) / "tune"


def search(
    profile: Mapping[str, Any],
    splits: dict,
    directory: str | os.PathLike | None = None,
    overwrite: bool = False,
    verbose: int = 1,
) -> TuneResult:
    """Run the profile's search; write ``best_hp.json`` and ``trials.csv`` into ``directory``."""
    from fer.data import audit

    opts = dict(profile.get("tune") or {})
    algorithm = opts.get("algorithm", "hyperband")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"tune.algorithm must be one of {ALGORITHMS}, not {algorithm!r}")
    base = config_from_profile(profile, "main")
    set_precision(base.precision)
    directory = Path(directory) if directory else directory_for(profile)
    data = audit.prepare(splits, seed=base.seed, subsample=opts.get("max_train"))  # tune.max_train: stratified
    epochs = int(opts.get("epochs", 3))
    key = search_key(base, opts, data.fingerprint)
    project = f"{algorithm}-{key}"
    role = cluster.distributed_role()
    if role == "worker" and overwrite:  # it would delete the folder the chief and the others work in
        print("overwrite is the chief's to decide: this worker joins the search as it is")
        overwrite = False
    common = dict(
        objective=kt.Objective("val_accuracy", "max"),
        directory=str(directory),
        project_name=project,
        overwrite=overwrite,
        seed=base.seed + 1,  # keras-tuner takes seed 0 for "no seed" (`seed or random.randint(...)`)
    )
    choices = {k: opts[k] for k in CHOICES if k in opts}
    params = opts.get("params")
    space(kt.HyperParameters(), base.arch, choices, params, base.optimizer)  # a bad tune.params fails here
    hypermodel = FerHyperModel(base, data.train, data.val, choices, params)
    if algorithm == "hyperband":
        tuner = _tuner(kt.Hyperband, role)(hypermodel, max_epochs=max(2, epochs), factor=int(opts.get("factor", 3)),
                                          **common)
    elif algorithm == "bayesian":
        tuner = _tuner(kt.BayesianOptimization, role)(hypermodel, max_trials=int(profile.get("max_trials", 10)), **common)
    else:
        tuner = _tuner(kt.RandomSearch, role)(hypermodel, max_trials=int(profile.get("max_trials", 10)), **common)
    if role != "worker":  # a worker's oracle is the chief's, behind gRPC
        done = len(tuner.oracle.trials)
        others = sorted(p.parent.name for p in directory.glob("*/oracle.json") if p.parent.name != project)
        if done and not overwrite:
            print(f"resuming the search in {directory / project} ({done} trials already there, same settings and "
                  "data); pass overwrite=True (--overwrite) to start over")
        elif others:
            print(f"new search in {directory / project}: settings or data differ from the earlier search(es) "
                  f"{', '.join(others)} in {directory}, which stay as they are")
    if role == "chief":
        print(f"chief of the search in {directory / project}, listening on {os.environ['KERASTUNER_ORACLE_IP']}:"
              f"{os.environ['KERASTUNER_ORACLE_PORT']}; it ends when the search does", flush=True)
    tuner.search(epochs=epochs, verbose=verbose)
    if role == "worker":
        ran = sorted(t for t, who in cluster.who_ran(directory / project).items() if who == tuner.tuner_id)
        return TuneResult(best_hp={}, table=None, directory=directory, trials=len(ran), role=role, ran=ran)
    table = trials_table(tuner)
    ran_by = cluster.who_ran(directory / project)
    if ran_by:
        table["worker"] = [ran_by.get(str(t), "") for t in table["trial"]]
    if table.empty:
        raise RuntimeError(f"no trial of the search in {directory / project} finished; see the errors above")
    best = tuner.get_best_hyperparameters(1)[0]
    best_hp = _split(space(best, base.arch, choices, params, base.optimizer))
    best_hp = {**best_hp.pop("hp"), **best_hp}
    directory.mkdir(parents=True, exist_ok=True)
    for folder in (directory, directory / project):  # the latest search's result, and each search's own
        (folder / "best_hp.json").write_text(json.dumps(best_hp, indent=2))
        table.to_csv(folder / "trials.csv")
    return TuneResult(best_hp=best_hp, table=table, directory=directory, trials=len(table), role=role)


def _tuner(cls, role: str | None):
    """``cls`` (a keras-tuner tuner class), or in a distributed search a subclass whose workers
    note each trial they begin and finish (:func:`fer.training.cluster.record`), so the chief's table
    says which worker ran which trial and the logs show a re-run trial."""
    if role is None:
        return cls

    class Recorded(cls):
        def on_trial_begin(self, trial):
            cluster.record(self.project_dir, self.tuner_id, trial.trial_id, "begin")
            print(f"{self.tuner_id}: trial {trial.trial_id} begins", flush=True)
            super().on_trial_begin(trial)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            cluster.record(self.project_dir, self.tuner_id, trial.trial_id, "end")
            print(f"{self.tuner_id}: trial {trial.trial_id} done", flush=True)

    Recorded.__name__ = Recorded.__qualname__ = cls.__name__
    return Recorded


#: Training options that do not change a search trial (trials run ``tune.epochs`` epochs on a
#: plateau schedule), so changing them does not start a new search.
_NOT_IN_TRIALS = ("epochs", "schedule", "early_stop", "tensorboard", "max_train")


def search_key(base: TrainConfig, opts: Mapping[str, Any], fingerprint: str) -> str:
    """Short hash of what decides a search's trials: the ``main`` block's training options, the
    ``tune`` block, the data."""
    options = {k: v for k, v in asdict(base).items() if k not in _NOT_IN_TRIALS}
    # "train" names the training options in the hashed text, not a profile block; renaming it would
    # change every search's key, and no search made so far would be resumed again
    blob = json.dumps({"train": options, "tune": dict(opts), "data": fingerprint}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def trials_table(tuner):
    """One row per finished trial: its hyperparameters, epochs and best validation accuracy."""
    import pandas as pd

    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.score is None:
            continue
        row = {"trial": trial.trial_id, "val_accuracy": float(trial.score)}
        row.update({k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")})
        row["epochs"] = trial.hyperparameters.values.get("tuner/epochs", np.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values("val_accuracy", ascending=False).reset_index(drop=True) if len(df) else df
