"""The study's recipe, one shape in every profile: K members of the main network (seeds ``seed``
to ``seed + K - 1``) → their average, the ensemble (shipped as ``main``) → the lite network
distilled from that ensemble → the seed project's CNN as a baseline, where the profile trains it.
The keras-tuner search that may come first is :func:`fer.training.tune.search`.

Notebook 02 runs it (``train``); the explicit ship step is ``python -m fer ship`` or 02's ``ship``
parameter (``ship``). Every step is a run folder under ``runs/<profile>/`` that is reused when
finished and resumed when interrupted, so a stopped session (Colab) loses at most an epoch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fer.config import RUNS_DIR, short_path
from fer.devices import accelerators


def member_seeds(profile: Mapping[str, Any]) -> list[int]:
    """The seeds of the main network's members: ``seed``, ``seed + 1``, ... (``members`` of them)."""
    k = int(profile.get("members", 1))
    if k < 1:
        raise ValueError(f"members must be at least 1, not {k}")
    base = int(profile.get("seed") or 0)
    return [base + i for i in range(k)]


def run_dirs(profile: Mapping[str, Any]) -> dict[str, Any]:
    """Where each step of ``profile``'s recipe writes its run: ``runs/<profile>/...``."""
    root = RUNS_DIR / str(profile.get("profile", "custom"))
    return {"members": [root / f"member-s{s}" for s in member_seeds(profile)], "ensemble": root / "main-ensemble",
            "lite": root / "lite", "baseline": root / "baseline", "root": root}


def trains_baseline(profile: Mapping[str, Any]) -> bool:
    """Whether the profile trains the seed's CNN (``full``) or only shows its published figure."""
    return bool(profile.get("baseline")) and profile.get("train_baseline", True) is not False


def lite_seed(profile: Mapping[str, Any]) -> int:
    """The lite's seed: its block's own ``seed`` when it names one (the shipped lite is seed 1), else the profile's."""
    return int((profile.get("lite") or {}).get("seed", profile.get("seed") or 0))


def side_by_side(profile: Mapping[str, Any]) -> bool:
    """Train the members at the same time, one process each: on a GPU (the profile's ``side_by_side``,
    ``auto`` by default); on a CPU one after another, since each already uses every core."""
    choice = profile.get("side_by_side", "auto")
    return bool(accelerators()) and len(member_seeds(profile)) > 1 if choice == "auto" else bool(choice)


def describe(profile: Mapping[str, Any], tune: bool = True) -> str:
    """The recipe of ``profile`` in one paragraph, with its expected time (the profile's ``expected``)."""
    main = profile.get("main") or {}
    lite = profile.get("lite") or {}
    seeds = member_seeds(profile)
    steps = []
    if tune and profile.get("tune") and profile.get("tune_in_recipe", True) is not False:
        steps.append(f"keras-tuner search ({profile.get('max_trials', '?')} trials)")
    steps.append(f"{len(seeds)} members of the {main.get('arch', 'resnet')} network (seeds {', '.join(map(str, seeds))}; "
                 f"{profile.get('epochs', main.get('epochs'))} epochs each"
                 f"{'; side by side on a GPU, one after another on a CPU' if len(seeds) > 1 else ''})")
    steps.append("their average: the ensemble")
    kind = "online, on each augmented batch" if lite.get("distill_online") else "offline, once per face"
    steps.append(f"the lite network distilled from the ensemble ({lite.get('epochs', profile.get('epochs', '?'))} epochs, "
                 f"targets {1 - float(lite.get('distill', 0)):.1f} × label + {float(lite.get('distill', 0)):.1f} × "
                 f"the ensemble's probabilities, {kind})")
    base = profile.get("baseline") or {}
    steps.append(f"the seed's CNN as baseline ({base.get('epochs', '?')} epochs)" if trains_baseline(profile)
                 else "the seed's CNN: its published figure only (not trained in this profile)")
    return " → ".join(steps)


def expected_time(profile: Mapping[str, Any]) -> str:
    """What the profile's recipe is expected to take here, from its ``expected`` block (measured times)."""
    expected = profile.get("expected") or {}
    where = "gpu" if accelerators() else "cpu"
    return str(expected.get(where) or expected.get("any") or "not measured on this kind of machine")


def train(profile: Mapping[str, Any], splits: dict, best_hp: Mapping[str, Any] | None = None,
          verbose: int | str = 0) -> dict[str, dict[str, Any]]:
    """Run the whole recipe of ``profile``; return the model cards by step: ``members`` (a list),
    ``main`` (the ensemble), ``lite`` and, where the profile trains it, ``baseline``.

    Each card has ``model`` (the Keras model) and ``run_dir``; ``wall_s`` says how long the step
    took in this call (a reused run: seconds)."""
    from fer.training import runs

    dirs = run_dirs(profile)
    cards: dict[str, Any] = {}
    start = time.time()
    cards["members"] = _members(profile, splits, best_hp, dirs["members"], verbose)
    step = time.time()
    print(f"ensemble: averaging {len(dirs['members'])} members", flush=True)
    cards["main"] = runs.ensemble_run(profile, splits, dirs["members"], run_dir=dirs["ensemble"], name="main",
                                      float16_weights=bool(profile.get("float16_weights")))
    cards["main"]["wall_s"] = time.time() - step
    teacher = dirs["ensemble"] / "model.keras"
    step = time.time()
    print(f"lite: distilled from {short_path(teacher)}", flush=True)
    cards["lite"] = runs.run(profile, splits, block="lite", hp={"teacher": str(teacher), "seed": lite_seed(profile)},
                             run_dir=dirs["lite"], verbose=verbose)
    cards["lite"]["wall_s"] = time.time() - step
    if trains_baseline(profile):
        step = time.time()
        cards["baseline"] = runs.run(profile, splits, block="baseline", run_dir=dirs["baseline"], verbose=verbose)
        cards["baseline"]["wall_s"] = time.time() - step
    print(f"recipe done in {(time.time() - start) / 60:.1f} min", flush=True)
    return cards


def _members(profile, splits, best_hp, folders: list[Path], verbose) -> list[dict[str, Any]]:
    """Train (or reuse) the members: in this process one after another, or side by side as children."""
    from fer.training import runs

    seeds = member_seeds(profile)
    if side_by_side(profile):
        _train_side_by_side(profile, best_hp, seeds, folders)
    out = []
    for seed, folder in zip(seeds, folders, strict=True):
        step = time.time()
        print(f"member {seed - seeds[0] + 1}/{len(seeds)} (seed {seed}): {short_path(folder)}", flush=True)
        card = runs.run(profile, splits, block="main", hp={**dict(best_hp or {}), "seed": seed},
                        run_dir=folder, verbose=verbose)
        card["wall_s"] = time.time() - step
        out.append(card)
    return out


def _train_side_by_side(profile, best_hp, seeds: list[int], folders: list[Path]) -> None:
    """One ``python -m fer train`` per member at the same time (on one GPU: each takes memory as it
    needs it), their output prefixed with the member's folder; raises if one fails."""
    import yaml

    from fer.training.cluster import Child

    root = folders[0].parent
    root.mkdir(parents=True, exist_ok=True)
    settings = root / "recipe-profile.yaml"  # this notebook's settings, for the children
    settings.write_text(yaml.safe_dump(json.loads(json.dumps(dict(profile), default=str)), sort_keys=False))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    children = []
    for seed, folder in zip(seeds, folders, strict=True):
        # the member's seed travels in its --hp file, not as --seed: the profile's own seed also
        # picks the data (a generated set, a validation split), which must be the same for all
        hp_file = root / f"recipe-hp-s{seed}.json"
        hp_file.write_text(json.dumps({**dict(best_hp or {}), "seed": seed}))
        children.append(Child(folder.name, [sys.executable, "-m", "fer", "train", "--profile", str(settings),
                                            "--hp", str(hp_file), "--run-dir", str(folder)], env))
    try:
        codes = [c.wait() for c in children]
    finally:
        for c in children:
            c.stop()
    failed = [c.name for c, code in zip(children, codes, strict=True) if code]
    if failed:
        raise RuntimeError(f"member run(s) {', '.join(failed)} failed; their output is above. Running this again "
                           "resumes them from their last finished epoch.")


def teacher_entry(card: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"path", "sha256"}`` of the model a distilled card learned from (None when it learned from none)."""
    teacher = card.get("teacher") or (card.get("config") or {}).get("teacher")
    if not teacher:
        return None
    if isinstance(teacher, str):
        from fer.inference import cards as fer_cards

        return {"path": short_path(teacher), "sha256": fer_cards.sha256(teacher) if Path(teacher).exists() else None}
    return {"path": teacher.get("path"), "sha256": teacher.get("sha256")}


def ship(cards: Mapping[str, Any], weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Ship this run's ensemble as ``main`` and its lite as ``lite`` (``fer/weights``), the explicit
    step after :func:`train`; returns the files written."""
    from fer.training import runs

    return [runs.ship(cards[name]["run_dir"], name=name, weights_dir=weights_dir) for name in ("main", "lite")]

