"""Which class-imbalance handling helps macro-F1: the same short training with each
``class_weight`` mode (none, sqrt, balanced), side by side in one process.

FER2013 has 436 disgust faces against 7,215 happy ones. Class weights trade accuracy on the
big classes for recall on the small ones; this measures the trade on PublicTest with the main
model of a profile, shortened to ``--epochs`` (the cosine schedule is shortened with it, so each
run is a complete, if brief, training). Runs go to a temporary folder; nothing is shipped.

Usage: python benchmarks/class_weights.py [--profile cpu] [--epochs 10] [--modes none sqrt balanced]
(FER2013 is found like everywhere else: $FER_DATA, data/raw/, or Kaggle)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--modes", nargs="+", default=["none", "sqrt", "balanced"])
    p.add_argument("--data", help="FER2013 zip/folder/CSV (default: located automatically)")
    a = p.parse_args()

    from fer import config
    from fer.data import sources
    from fer.training import runs

    profile = config.load_profile(a.profile)
    profile["data_source"] = a.data or str(sources.locate())
    splits = sources.load_source(profile["data_source"])
    rows = []
    for mode in a.modes:
        with tempfile.TemporaryDirectory() as tmp:
            card = runs.run(profile, splits, hp={"class_weight": mode, "epochs": a.epochs}, run_dir=tmp, verbose=0)
        m = card["metrics"]["validation"]
        row = {"class_weight": mode, "epochs": a.epochs, "accuracy": round(m["accuracy_single"], 4),
               "macro_f1": round(m["macro_f1_single"], 4), "train_min": round(card["train_wall_s"] / 60, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"{'class_weight':>12} {'accuracy':>9} {'macro-F1':>9}")
    for r in rows:
        print(f"{r['class_weight']:>12} {r['accuracy']:>9.4f} {r['macro_f1']:>9.4f}")


if __name__ == "__main__":
    main()
