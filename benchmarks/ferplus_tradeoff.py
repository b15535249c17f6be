"""What moved when main was fine-tuned on FER+ votes: the shipped main against a fine-tuned model on
PublicTest (single view): the share of each predicted class, agreement per majority class,
FER2013 accuracy per FER2013 class, and the two models' probabilities mixed in steps of 0.1 (a
cheap look at the trade-off between agreement with people and FER2013 accuracy; not a model).

Usage: python benchmarks/ferplus_tradeoff.py runs/ferplus/main/model.keras > tradeoff.json
(FER2013 and the votes from ../shared/data; docs/training.md quotes its output)
"""
from __future__ import annotations

import json
import sys

import numpy as np

from fer import data
from fer.config import CLASSES, SHARED_DIR
from fer.data import ferplus
from fer.evaluation import metrics
from fer.inference.predict import load_classifier

src = SHARED_DIR / "data" / "fer2013.zip"
x, y = data.load(src)["public_test"]
v = data.votes(src)["public_test"]
m = ferplus.majority(v)
p0 = load_classifier("fer/weights/main.keras", backend="keras").predict_proba(x)
p1 = load_classifier(sys.argv[1], backend="keras").predict_proba(x)
out = {"predicted_share": {}, "per_class": {}, "mix": []}
for name, p in (("shipped", p0), ("fine_tuned", p1)):
    pred = p.argmax(1)
    out["predicted_share"][name] = {c: round(float((pred == i).mean()), 4) for i, c in enumerate(CLASSES)}
    a = metrics.agreement(v, pred, y, n_boot=10)
    out["per_class"][name] = {c: round(r["agreement"], 4) for c, r in a["per_class"].items()}
    out["per_class"][name]["accuracy_by_fer2013_class"] = {c: round(float((pred[y == i] == i).mean()), 4)
                                                           for i, c in enumerate(CLASSES)}
out["fer2013_label_share"] = {c: round(float((y == i).mean()), 4) for i, c in enumerate(CLASSES)}
out["majority_share"] = {c: round(float((m[m >= 0] == i).mean()), 4) for i, c in enumerate(CLASSES)}
for w in np.linspace(0, 1, 11):
    pred = ((1 - w) * p0 + w * p1).argmax(1)
    out["mix"].append({"w": round(float(w), 1), "accuracy": round(metrics.accuracy(y, pred), 4),
                       "agreement": round(metrics.accuracy(m[m >= 0], pred[m >= 0]), 4)})
print(json.dumps(out, indent=1))
