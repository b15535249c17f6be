"""What each notebook found, in a few sentences carrying the run's own numbers.

Every notebook closes with a "What we found" section whose last cell returns one of these
lists: a :class:`Findings` shows as a Markdown list in Jupyter and in the HTML reports, so the
closing numbers are always the ones just computed, never typed in by hand. Each function reads
the dict that notebook writes to ``reports/metrics/<profile>.json`` (its ``section``), so the
same sentences can be made from a saved metrics file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Findings(list):
    """A list of sentences that Jupyter (and nbconvert) shows as a Markdown bullet list."""

    def _repr_markdown_(self) -> str:
        return "\n".join(f"- {line}" for line in self)

    def __repr__(self) -> str:
        return "\n".join(f"- {line}" for line in self)


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %"


def _minutes(seconds: float | None) -> str:
    if not seconds:
        return ""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def explore(m: Mapping[str, Any]) -> Findings:
    """01: class balance, leakage into train, duplicates and conflicting labels."""
    out = Findings()
    classes = m.get("train_classes") or {}
    total = sum(classes.values())
    if total:
        common, rare = max(classes, key=classes.get), min(classes, key=classes.get)
        if classes[common] >= 1.5 * classes[rare]:
            out.append(f"{total:,} training images: *{common}* is {_pct(classes[common] / total)} of them, "
                       f"*{rare}* {_pct(classes[rare] / total)} ({classes[common] / max(classes[rare], 1):.0f}x fewer), "
                       "so accuracy alone would flatter a model that ignores the rare classes; macro-F1 is reported beside it.")
        else:
            out.append(f"{total:,} training images, the classes about equally common "
                       f"({_pct(classes[rare] / total)}-{_pct(classes[common] / total)} each).")
    images = m.get("images", {})
    for split, n in (m.get("leakage") or {}).items():
        if images.get(split):
            out.append(f"{n:,} of the {images[split]:,} {split} images ({_pct(n / images[split])}) also occur in train."
                       if n else f"No {split} image also occurs in train.")
    before, after = images.get("train"), m.get("train_after_clean")
    if after is not None and before:
        out.append(f"`fer.data.audit.clean` drops those copies and the constant images from train: {before:,} → {after:,} "
                   "training images; the evaluation splits stay as published." if after != before
                   else "`fer.data.audit.clean` had nothing to drop from train.")
    d, c = m.get("duplicates") or {}, m.get("conflicts") or {}
    if d.get("groups"):
        out.append(f"{d['groups']:,} groups of identical images cover {d['images']:,} images; "
                   f"{c.get('groups', 0):,} of them carry conflicting labels ({c.get('images', 0):,} images): label noise every model lives with.")
    elif d:
        out.append("No image occurs twice, so no label conflicts either.")
    return out


def train(m: Mapping[str, Any]) -> Findings:
    """02: the search's choice and each model's validation accuracy, size and training time."""
    out = Findings()
    if m.get("tuned_in_this_run") and m.get("best_hp"):
        hp = ", ".join(f"{k} {_short(v)}" for k, v in m["best_hp"].items())
        out.append(f"The search picked {hp}.")
    models = {n: v for n, v in (m.get("models") or {}).items() if v.get("val_accuracy") is not None}
    if not models:
        out.append("No model was trained or bundled in this run.")
        return out
    ranked = sorted(models, key=lambda n: -models[n]["val_accuracy"])
    for name in ranked:
        v = models[name]
        took = f", {v['epochs']} epochs in {_minutes(v.get('wall_s'))}" if v.get("epochs") and v.get("wall_s") else ""
        where = f" on {v['validation']}" if v.get("validation") else ""
        out.append(f"**{name}**: {_pct(v['val_accuracy'])} validation accuracy{where} with {v.get('params') or 0:,} parameters"
                   f"{took} ({v.get('source', 'trained in this run')}).")
    best = ranked[0]
    for other in ranked[1:]:
        gap = 100 * (models[best]["val_accuracy"] - models[other]["val_accuracy"])
        size = ""
        if models[best].get("params") and models[other].get("params"):
            size = f"; it has {models[best]['params'] / models[other]['params']:.2g}x {other}'s parameters"
        out.append(f"{best} leads {other} by {gap:.1f} points{size}.")
    return out


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value))
    return str(value)


def evaluate(m: Mapping[str, Any]) -> Findings:
    """03: the headline accuracy with its interval, unseen faces, TTA, calibration, classes, speed."""
    out = Findings()
    splits = m.get("splits") or {}
    split = m.get("headline_split") or next(iter(splits), None)
    card = m.get("model_card") or {}
    if split in splits:
        r = splits[split]
        lo, hi = r["accuracy_ci"]
        model = f" ({card['name']}, {card['params']:,} parameters)" if card.get("name") and card.get("params") else ""
        out.append(f"On {split} ({r['images']:,} images) the model{model} is right {_pct(r['accuracy'])} of the time "
                   f"(95 % CI {_pct(lo)}-{_pct(hi)}), macro-F1 {r['macro_f1']:.3f}.")
        unseen = m.get("unseen_public_test")
        if unseen and split == "public_test":
            gap = 100 * (r["accuracy"] - unseen["accuracy"])
            out.append(f"On the {unseen['images']:,} PublicTest faces that never occur in train: {_pct(unseen['accuracy'])}, "
                       f"{abs(gap):.1f} points {'below' if gap >= 0 else 'above'} the whole split.")
        tta = (m.get("tta") or {}).get(split) or {}
        if "none" in tta and len(tta) > 1:
            best = max(tta, key=lambda k: tta[k]["accuracy"])
            if best == "none":
                out.append("Test-time augmentation does not help here: one view is as good as two or ten.")
            else:
                gain = 100 * (tta[best]["accuracy"] - tta["none"]["accuracy"])
                out.append(f"Test-time augmentation: {best} ({tta[best]['views']} views) gains {gain:.1f} points "
                           f"for {tta[best]['views']}x the compute.")
        out.append(f"Calibration: expected calibration error {r['ece']:.3f}"
                   + (" (confidences are close to the hit rate)." if r["ece"] < 0.05 else "."))
        recall = (m.get("recall") or {}).get(split) or {}
        if recall:
            easy, hard = max(recall, key=recall.get), min(recall, key=recall.get)
            out.append(f"Easiest class *{easy}* (recall {recall[easy]:.2f}), hardest *{hard}* ({recall[hard]:.2f}).")
    rob = m.get("robustness")
    if rob and rob.get("worst"):
        hard = [f"{name} {w['label']} ({-100 * w['drop']:+.1f})" for name, w in list(rob["worst"].items())[:3]]
        mild = [name for name, w in rob["worst"].items() if w["drop"] < 0.05]
        out.append("Hardest changes to a face, at their strongest: " + ", ".join(hard) + " points"
                   + (f"; {' and '.join(mild)} cost under 5 points at any strength tried." if mild else "."))
    own = m.get("own_photos")
    if own:
        found = (f"faces found in {own['faces_found']} of {own['images']} photos; " if own.get("mode") == "pipeline" else "")
        if own.get("accuracy") is None:
            out.append(f"Your photos ({own['source']}): {found}nothing could be scored.")
        else:
            lo, hi = own["accuracy_ci"]
            out.append(f"Your photos ({own['source']}): {found}accuracy {_pct(own['accuracy'])} "
                       f"(95 % CI {_pct(lo)}-{_pct(hi)}) over {own['faces_found']:,} faces.")
    lat = m.get("latency")
    if lat:
        out.append(f"{lat['ms_per_image_batch1']:.1f} ms per face on its own, {lat['images_per_s_batched']:,.0f} faces/s "
                   f"batched" + (f" ({lat['device']})." if lat.get("device") else "."))
    return out


def webcam(photos: Mapping[str, list], replay=None) -> Findings:
    """04: the labels on the sample photos, and what the video replay measured.

    ``photos`` maps an image name to what ``fer.analyze`` returned for it; ``replay`` is a
    :class:`fer.apps.demo.Replay`.
    """
    out = Findings()
    if photos:
        labels = [f"{name}: " + (", ".join(f"{f['label']} ({f['probs'][f['label']]:.2f})" for f in faces) or "no face")
                  for name, faces in photos.items()]
        out.append("Sample photos: " + "; ".join(labels) + ".")
    if replay is not None and len(replay.table):
        table = replay.table
        found = float((table["faces"] > 0).mean())
        shares = table["label"].dropna().value_counts(normalize=True)
        top = ", ".join(f"{k} {_pct(v, 0)}" for k, v in shares.head(3).items()) or "none"
        out.append(f"The video, {len(table)} frames at {replay.fps:.1f} a second: a face in {_pct(found, 0)} of them; "
                   f"labels of the largest face: {top}.")
        if replay.kernel_ms:
            ms = sorted(replay.kernel_ms)[len(replay.kernel_ms) // 2]
            out.append(f"The kernel needs {ms:.0f} ms per frame (median) of the 100 ms the live view's 10 frames/s allow, "
                       f"so it could keep up with {1000 / ms:.0f} frames/s here.")
    return out
