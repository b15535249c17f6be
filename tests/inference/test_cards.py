"""Model cards: checksums, JSON, and what a card says of another model."""

import json
import re
from pathlib import Path

import numpy as np

from fer.inference import cards


def test_plain_turns_numpy_paths_and_tuples_into_json():
    value = {"a": np.float32(0.5), 1: (np.int64(2), np.array([1, 2])), "p": Path("x/y")}
    assert cards.plain(value) == {"a": 0.5, "1": [2, [1, 2]], "p": "x/y"}
    json.dumps(cards.plain(value))


def test_write_records_the_files_checksum_and_read_finds_it(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"weights")
    written = cards.write(model, {"name": "m", "params": np.int64(3)})
    assert written == tmp_path / "m.json"
    card = cards.read(model)
    assert card["sha256"] == cards.sha256(model) and card["size_bytes"] == 7 and card["params"] == 3
    assert re.fullmatch(r"[0-9a-f]{64}", card["sha256"])
    assert cards.card_path(tmp_path / "m.tflite") == tmp_path / "m.tflite.json"
    assert cards.read(tmp_path / "none.keras") == {}


def test_entry_names_the_file_it_checksummed(tmp_path):
    model = tmp_path / "t.keras"
    model.write_bytes(b"teacher")
    cards.write(model, {"arch": "lite", "params": 9, "metrics": {"validation": {"accuracy_single": 0.5}}})
    entry = cards.entry(model)
    assert entry["sha256"] == cards.sha256(model)
    assert (entry["arch"], entry["params"], entry["validation"]) == ("lite", 9, {"accuracy_single": 0.5})
