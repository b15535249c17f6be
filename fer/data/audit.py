"""What the splits hold and what training may use: :func:`audit` (black and constant images,
repeats, leakage between splits, conflicting labels), :func:`clean` (those removed from the
training split only), the validation split (:func:`training_splits`), and :func:`prepare`, the
one preparation (clean, split, fingerprint) that training, ensembles and the search share."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from fer.config import CLASSES
from fer.data.fer2013 import DataError, Splits


def image_digests(x: np.ndarray) -> np.ndarray:
    """One 64-bit fingerprint per image (blake2b of its bytes); equal images, equal digests."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(img.tobytes(), digest_size=8).digest(), "little") for img in x],
        dtype=np.uint64,
    )


def audit(splits: Splits) -> dict:
    """Facts a careful user should know before training on ``splits``.

    Per split: size, class counts, constant images (all pixels equal; all-black ones counted
    separately), exact repeats within the split. Across splits: images of each evaluation split
    that also occur in ``train`` (leakage), and groups of identical pixels that carry different
    labels anywhere.
    """
    digests = {s: image_digests(x) for s, (x, _) in splits.items()}
    report: dict = {"splits": {}, "leakage": {}, "conflicts": {}}
    for split, (x, y) in splits.items():
        flat = x.reshape(len(x), -1)
        constant = flat.min(axis=1) == flat.max(axis=1)
        black = flat.max(axis=1) == 0
        d = digests[split]
        counts = Counter(y.tolist())
        report["splits"][split] = {
            "images": int(len(x)),
            "classes": {c: int(counts.get(i, 0)) for i, c in enumerate(CLASSES)},
            "black": int(black.sum()),
            "constant": int(constant.sum()),
            "repeats": int(len(d) - len(np.unique(d))),
        }
    if "train" in splits:
        train = set(digests["train"].tolist())
        for split, d in digests.items():
            if split != "train":
                report["leakage"][split] = int(sum(v in train for v in d.tolist()))
    labels_of: dict[int, set[int]] = {}
    size_of: Counter = Counter()
    for split, (_, y) in splits.items():
        for v, lab in zip(digests[split].tolist(), y.tolist(), strict=True):
            labels_of.setdefault(v, set()).add(lab)
            size_of[v] += 1
    conflicting = [v for v, labs in labels_of.items() if len(labs) > 1]
    report["conflicts"] = {
        "groups": len(conflicting),
        "images": int(sum(size_of[v] for v in conflicting)),
    }
    dup_groups = [v for v, n in size_of.items() if n > 1]
    report["duplicates"] = {"groups": len(dup_groups), "images": int(sum(size_of[v] for v in dup_groups))}
    return report


def audit_table(report: dict):
    """The audit as a pandas DataFrame, one row per split (for notebooks and the CLI)."""
    import pandas as pd

    rows = []
    for split, s in report["splits"].items():
        row = {"split": split, "images": s["images"], **s["classes"]}
        row.update(black=s["black"], constant=s["constant"], repeats=s["repeats"])
        row["in_train"] = report["leakage"].get(split, "")
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")


def clean(
    splits: Splits,
    *,
    drop_constant: bool = True,
    drop_leaked: bool = True,
    drop_repeats: bool = False,
    drop_conflicting: bool = False,
) -> Splits:
    """Remove problem images from ``train`` only; evaluation splits are never changed.

    ``drop_leaked`` removes training images that also occur in an evaluation split, so that
    test accuracy is measured on faces the model never saw. ``drop_repeats`` keeps the first
    copy of images repeated within train; ``drop_conflicting`` removes every training copy of
    pixels that carry more than one label anywhere.
    """
    if "train" not in splits:
        return dict(splits)
    x, y = splits["train"]
    d = image_digests(x)
    keep = np.ones(len(x), dtype=bool)
    if drop_constant:
        flat = x.reshape(len(x), -1)
        keep &= flat.min(axis=1) != flat.max(axis=1)
    others = {s: image_digests(v[0]) for s, v in splits.items() if s != "train"}
    if drop_leaked and others:
        held = set(np.concatenate(list(others.values())).tolist())
        keep &= np.array([v not in held for v in d.tolist()], dtype=bool)
    if drop_repeats:
        _, first = np.unique(d, return_index=True)
        first_mask = np.zeros(len(x), dtype=bool)
        first_mask[first] = True
        keep &= first_mask
    if drop_conflicting:
        labels_of: dict[int, set[int]] = {}
        for split, (_, ys) in splits.items():
            ds = d if split == "train" else others[split]
            for v, lab in zip(ds.tolist(), ys.tolist(), strict=True):
                labels_of.setdefault(v, set()).add(lab)
        keep &= np.array([len(labels_of[v]) == 1 for v in d.tolist()], dtype=bool)
    out = dict(splits)
    out["train"] = (x[keep], y[keep])
    return out


# --------------------------------------------------------------------------- validation split


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float = 0.1, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Stratified, seeded train/validation split that keeps identical images on one side.

    Duplicates are grouped (``StratifiedGroupKFold``) so a repeated face cannot sit in both
    halves and inflate validation accuracy.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n_splits = max(2, round(1 / fraction))
    groups = np.unique(image_digests(x), return_inverse=True)[1]
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(folds.split(x, y, groups))
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


def training_splits(splits: Splits, *, val_fraction: float = 0.1, seed: int = 0) -> tuple[tuple, tuple]:
    """(train, validation) for model selection: ``public_test`` or ``val`` when present,
    otherwise a stratified split of ``train``. A ``test``/``private_test`` split is never used."""
    if "train" not in splits:
        raise DataError(f"no 'train' split in {sorted(splits)}; cannot train.")
    for name in ("val", "public_test"):
        if name in splits:
            return splits["train"], splits[name]
    return split_validation(*splits["train"], fraction=val_fraction, seed=seed)


# --------------------------------------------------------------------------- what training uses


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` gives training: the arrays, what cleaning dropped, where validation
    came from, and the fingerprint that names the data."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    dropped: int  # training images clean() removed (constant ones, copies of evaluation images)
    validation: str  # the validation split's name: "val", "public_test" or "split of train"
    fingerprint: str  # data_fingerprint(train, val)


def prepare(splits: Splits, *, seed: int = 0, subsample: int | None = None) -> Prepared:
    """The one data preparation of a training run, an ensemble and a search.

    :func:`clean` the training split (constant images and copies of evaluation images go), set
    validation aside (:func:`training_splits`, seeded), cut the training split to a stratified
    subsample of about ``subsample`` images when it holds more (a search's ``tune.max_train``; a
    run's own ``max_train`` is applied later, by ``fit``), and fingerprint what is left
    (:func:`data_fingerprint`).
    """
    cleaned = clean(splits)
    train, val = training_splits(cleaned, seed=seed)
    if subsample and len(train[0]) > subsample:  # stratified: the class balance stays
        train, _ = split_validation(*train, fraction=1 - subsample / len(train[0]), seed=seed)
    return Prepared(
        train=train,
        val=val,
        dropped=int(len(splits["train"][0]) - len(cleaned["train"][0])),
        validation=next((s for s in ("val", "public_test") if s in cleaned), "split of train"),
        fingerprint=data_fingerprint(train, val),
    )


def data_fingerprint(train_xy: tuple, val_xy: tuple) -> str:
    """sha256 of the training and validation arrays: the same data wherever its file lives."""
    h = hashlib.sha256()
    for arr in (*train_xy, *val_xy):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()
