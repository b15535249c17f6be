"""A model on a labelled set of your own: the engine of ``python -m fer evaluate``.

:func:`run` takes a :class:`fer.data.labelled.LabelledSet` through the model one image at a time
(``pipeline``: decode, detect every face, crop the largest FER2013-style as
:func:`fer.analyze` does; ``crops``: the image is the face) in threads, classifying the
crops in batches, and returns an :class:`Evaluation` with one row per image.
:func:`summarise` turns it into the numbers (detection rate, accuracy and macro-F1 with
bootstrap intervals from :mod:`fer.evaluation.metrics`, per-class precision/recall, the confusion
matrix, what was missed) and :func:`text` prints them; ``--report`` writes the HTML page with
:mod:`fer.reporting.evaluation_page`.

In ``pipeline`` mode a photo where no face is found counts as *missed*: it is listed, left
out of the accuracy over faces found, and counted wrong in the end-to-end accuracy.
"""

from __future__ import annotations

import heapq
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fer.config import CLASSES, IMAGE_SIZE, NUM_CLASSES, short_path
from fer.data.labelled import LabelledSet, mapping_lines

MODES = ("pipeline", "crops")
#: Images decoded, detected and cropped before one batched classifier call.
CHUNK = 256


@dataclass
class Evaluation:
    """What :func:`run` saw: one row per image, the most confident mistakes, the timing."""

    lset: LabelledSet
    mode: str
    table: Any  # pandas DataFrame, one row per image
    mistakes: list[tuple[float, int, np.ndarray]]  # (confidence, row of table, crop), most confident first
    seconds: float
    jobs: int
    model: str = ""
    tta: str | None = None
    crops: np.ndarray | None = field(default=None, repr=False)  # every scored crop (keep_crops=True)


def face_crop(image_gray: np.ndarray) -> np.ndarray:
    """An image that is a face already → the model's 48x48: the centre square, resized."""
    import cv2

    h, w = image_gray.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image_gray[top : top + side, left : left + side]
    if side == IMAGE_SIZE:
        return square
    return cv2.resize(square, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA if side > IMAGE_SIZE else cv2.INTER_LINEAR)


def _prepare(item, mode: str, detector: str) -> dict[str, Any]:
    """One image → its crop (or why there is none); runs in a worker thread."""
    import cv2

    from fer.inference.predict import face_crops

    try:
        image = item.image(gray=mode == "crops")
    except (OSError, ValueError, cv2.error) as err:  # cv2.error: e.g. more pixels than OpenCV decodes
        lines = str(err).strip().splitlines()
        return {"status": f"unreadable: {lines[-1] if lines else type(err).__name__}", "faces": 0}
    if mode == "crops":
        return {"status": "ok", "faces": 1, "box": [0, 0, image.shape[1], image.shape[0]], "crop": face_crop(image)}
    found, crops = face_crops(image, detector)
    if not found:
        return {"status": "no face", "faces": 0}
    return {"status": "ok", "faces": len(found), "box": [int(v) for v in found[0].box], "crop": crops[0]}


def run(lset: LabelledSet, classifier, mode: str = "pipeline", tta: str | None = None, detector: str = "auto",
        jobs: int | None = None, progress: bool = True, keep: int = 16, keep_crops: bool = False) -> Evaluation:
    """Every image of ``lset`` through ``classifier`` (anything with ``predict_proba``)."""
    import pandas as pd
    from tqdm.auto import tqdm

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    jobs = max(1, jobs or os.cpu_count() or 1)
    rows, mistakes, kept = [], [], []
    start = time.perf_counter()
    bar = tqdm(total=len(lset.items), unit="img", desc=f"evaluate ({mode})", disable=not progress)
    with ThreadPoolExecutor(jobs) as pool:
        for lo in range(0, len(lset.items), CHUNK):
            chunk = lset.items[lo : lo + CHUNK]
            prepared = list(pool.map(lambda item: _prepare(item, mode, detector), chunk))
            scored = [i for i, p in enumerate(prepared) if "crop" in p]
            crops = np.stack([prepared[i]["crop"] for i in scored]) if scored else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
            proba = classifier.predict_proba(crops, tta=tta) if scored else np.zeros((0, NUM_CLASSES), np.float32)
            if keep_crops:
                kept.append(crops)
            probs = dict(zip(scored, proba, strict=True))
            for i, (item, prep) in enumerate(zip(chunk, prepared, strict=True)):
                row = {"image": item.name, "given": item.given, "label": CLASSES[item.label], "status": prep["status"],
                       "faces": prep["faces"], "box": " ".join(map(str, prep.get("box", []))),
                       "predicted": None, "confidence": np.nan, "correct": None}
                if i in probs:
                    p = probs[i]
                    row.update(predicted=CLASSES[int(p.argmax())], confidence=float(p.max()),
                               correct=bool(p.argmax() == item.label))
                    row.update({f"p_{c}": float(v) for c, v in zip(CLASSES, p, strict=True)})
                    if not row["correct"]:
                        # the row number breaks ties, so two crops are never compared
                        heapq.heappush(mistakes, (row["confidence"], len(rows), prep["crop"]))
                        if len(mistakes) > keep:
                            heapq.heappop(mistakes)
                rows.append(row)
            bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - start
    table = pd.DataFrame(rows)
    for c in CLASSES:  # a set where nothing was scored still has every column
        if f"p_{c}" not in table:
            table[f"p_{c}"] = np.nan
    path = getattr(classifier, "path", None)
    mistakes = sorted(mistakes, key=lambda m: (-m[0], m[1]))
    return Evaluation(lset, mode, table, mistakes, seconds, jobs,
                      model=short_path(path) if path else type(classifier).__name__, tta=tta,
                      crops=np.concatenate(kept) if keep_crops and kept else None)


def scored(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, proba)`` of the images that were scored (a face found, the image readable)."""
    ok = ev.table["status"] == "ok"
    y = ev.table.loc[ok, "label"].map(CLASSES.index).to_numpy(dtype=np.int64)
    proba = ev.table.loc[ok, [f"p_{c}" for c in CLASSES]].to_numpy(dtype=np.float32)
    return y, proba


def summarise(ev: Evaluation, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The evaluation's numbers as plain JSON values."""
    from fer.evaluation import metrics

    t, lset = ev.table, ev.lset
    unreadable = t["status"].str.startswith("unreadable")
    missed = t["status"] == "no face"
    readable = int((~unreadable).sum())
    y, proba = scored(ev)
    counts = lset.counts()
    out: dict[str, Any] = {
        "source": str(lset.source), "kind": lset.kind, "split": lset.split, "mode": ev.mode, "model": ev.model,
        "tta": ev.tta, "images": int(len(t)), "unreadable": int(unreadable.sum()), "faces_found": int(len(y)),
        "missed": int(missed.sum()), "detection_rate": len(y) / readable if readable else None,
        "counts": counts, "mapping": dict(lset.mapping), "left_out": dict(lset.left_out),
        "classes": [f"{c} ({n})" for c, n in counts.items()] if lset.kind == "fer2013" else mapping_lines(lset),
        "skipped": [list(s) for s in lset.skipped],
        "missed_images": t.loc[missed, "image"].tolist(),
        "unreadable_images": t.loc[unreadable, ["image", "status"]].values.tolist(),
        "seconds": ev.seconds, "images_per_s": len(t) / ev.seconds if ev.seconds else None, "jobs": ev.jobs,
    }
    if len(y) == 0:
        return out | {"accuracy": None, "end_to_end_accuracy": 0.0 if readable else None}
    scores = metrics.summary(y, proba, n_boot=n_boot, seed=seed)
    out |= {k: v for k, v in scores.items() if k != "images"}  # "images" counts every image here
    out["end_to_end_accuracy"] = float((proba.argmax(1) == y).sum() / readable)
    report = metrics.per_class_table(y, proba.argmax(1))
    out["per_class"] = {c: {k: float(report.loc[c, k]) for k in ("precision", "recall", "f1-score")}
                        | {"support": int(report.loc[c, "support"])} for c in CLASSES}
    out["confusion"] = metrics.confusion(y, proba.argmax(1)).astype(int).tolist()
    votes = [item.votes for item in lset.items]
    if votes and all(v is not None for v in votes):  # FER2013 with its FER+ votes
        ok = (t["status"] == "ok").to_numpy()
        out["ferplus"] = metrics.agreement(np.stack(votes)[ok], proba.argmax(1), y, n_boot=n_boot, seed=seed)
    return out


# --------------------------------------------------------------------------- output


def agreement_lines(a: dict[str, Any] | None) -> list[str]:
    """The FER+ agreement (:func:`fer.evaluation.metrics.agreement`) as the terminal shows it."""
    if not a:
        return []
    lines = [f"agreement with the FER+ majority {_ci(a, 'agreement')} over the {a['images']} faces with one "
             "(> 5 of 10 votes on one of the 7 classes)"]
    if "agreement_strong" in a:
        lines.append(f"  on the {a['strong_images']} faces with >= 8 of 10 votes: {_ci(a, 'agreement_strong')}")
    if "labels_agreement" in a:
        lines.append(f"  context: FER2013's own labels agree with the majority on {a['labels_agreement']:.3f} "
                     f"({a['labels_agreement_strong']:.3f} on the >= 8 of 10 faces)")
    per_class = "; ".join(f"{c} {v['agreement']:.3f} ({v['images']})" for c, v in a["per_class"].items() if v["images"])
    return lines + [f"  per majority class: {per_class}"]


def _ci(s: dict, key: str) -> str:
    return f"{s[key]:.3f} [{s[key + '_ci'][0]:.3f}, {s[key + '_ci'][1]:.3f}]"


def text(s: dict[str, Any], listed: int = 20) -> str:
    """The summary as the terminal shows it."""
    import pandas as pd

    what = {"pipeline": "photos → face detection → crop → classifier", "crops": "each image is a face crop"}[s["mode"]]
    split = f", split {s['split']}" if s.get("split") else ""
    lines = [f"model {s['model']}" + (f" with {s['tta']} TTA" if s.get("tta") else ""),
             f"set {short_path(s['source'])} ({s['kind']}{split}); mode {s['mode']}: {what}", "classes: "]
    lines[-1] += "; ".join(s["classes"]) or "-"
    for entry, why in s["skipped"][:listed]:
        lines.append(f"skipped {entry}: {why}")
    if len(s["skipped"]) > listed:
        lines.append(f"... and {len(s['skipped']) - listed} more skipped")
    lines.append(f"images: {s['images']}" + (f", {s['unreadable']} unreadable" if s["unreadable"] else ""))
    for name, why in s["unreadable_images"][:listed]:
        lines.append(f"  {name}: {why.removeprefix('unreadable: ')}")
    if s["mode"] == "pipeline" and s["detection_rate"] is not None:
        lines.append(f"faces found in {s['faces_found']} of {s['images'] - s['unreadable']} photos "
                     f"({s['detection_rate']:.1%}); missed {s['missed']}")
        names = s["missed_images"]
        if names:
            more = f" ... and {len(names) - listed} more (all in predictions.csv)" if len(names) > listed else ""
            lines.append("  missed: " + ", ".join(names[:listed]) + more)
    if s.get("accuracy") is None:
        lines.append("accuracy: nothing was scored")
        return "\n".join(lines)
    lines.append(f"accuracy {_ci(s, 'accuracy')} (95 % bootstrap interval) over {s['faces_found']} faces")
    if s["mode"] == "pipeline":
        lines.append(f"end-to-end accuracy {s['end_to_end_accuracy']:.3f} (a photo without a face counts as wrong)")
    lines.append(f"macro-F1 {_ci(s, 'macro_f1')}; calibration error (ECE) {s['ece']:.3f}")
    lines += agreement_lines(s.get("ferplus"))
    per_class = pd.DataFrame(s["per_class"]).T
    per_class["support"] = per_class["support"].astype(int)
    lines += ["", per_class.to_string(float_format=lambda v: f"{v:.3f}"), "", "confusion (rows: true class)",
              pd.DataFrame(s["confusion"], index=list(CLASSES), columns=[c[:5] for c in CLASSES]).to_string()]
    lines.append(f"\n{s['images']} images in {s['seconds']:.1f} s: {s['images_per_s']:.1f} images/s ({s['jobs']} threads)")
    return "\n".join(lines)
