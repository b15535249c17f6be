"""Model cards: the JSON beside every model file saying what it is, how and on what it was
trained, how it scored, and its sha256; read, written and checked. The README's results table
made from them is :mod:`fer.reporting.results`.

A shipped model ``fer/weights/main.keras`` has ``fer/weights/main.json``; an export keeps its
whole name (``main.tflite.json``); a training run folder holds ``card.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fer.config import WEIGHTS_DIR, short_path


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
