"""FER2013 from every form people have it in, as uint8 arrays.

``load(source)`` reads the Kaggle image-folder layout (a folder or a ``.zip``) or the original
challenge CSV (``emotion,pixels,Usage``, also the ``icml_face_data.csv`` variant, plain or
``.gz``) and returns ``{split: (x, y)}`` with ``x`` uint8 ``(N, 48, 48)`` and ``y`` int64
indices into ``fer.CLASSES``. Results are cached in ``data/processed`` under a hash of the
source, so a second load is a single ``np.load``.

Why not ``keras.utils.image_dataset_from_directory``: it reads neither zips nor the CSV, cannot
split Kaggle's mixed ``test/`` folder into PublicTest/PrivateTest, and decodes through a
TensorFlow graph that is slower than ``cv2.imdecode`` for 35k tiny PNGs. The arrays this module
returns feed ``tf.data`` directly (see ``fer.train``).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import os
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from fer.config import CLASSES, CSV_CODE_TO_NAME, IMAGE_SIZE, PROCESSED_DIR, RAW_DIR

__all__ = [
    "DataError",
    "load",
    "locate",
    "download",
    "audit",
    "clean",
    "split_validation",
    "training_splits",
    "source_hash",
]

log = logging.getLogger(__name__)

#: Bump when the decoding changes, so every cache written by older code is ignored.
LOADER_VERSION = 2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Folder names (lowercased) accepted for each split.
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "test": "test",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "publictest": "public_test",
    "public_test": "public_test",
    "privatetest": "private_test",
    "private_test": "private_test",
}
#: Kaggle's ``test/`` folder mixes both test sets; the file name says which.
FILE_PREFIX_SPLIT = {"publictest": "public_test", "privatetest": "private_test"}
USAGE_SPLIT = {"training": "train", "publictest": "public_test", "privatetest": "private_test"}
KAGGLE_DATASET = "msambare/fer2013"

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


class DataError(ValueError):
    """The data source is missing, malformed or mislabelled; the message says where and why."""


# --------------------------------------------------------------------------- public entry points


def load(
    source: str | os.PathLike,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
) -> Splits:
    """Load FER2013 from a folder, a ``.zip`` of one, or a challenge CSV (``.csv``/``.csv.gz``).

    ``skip_bad=True`` drops unreadable images and malformed CSV rows with one counted warning
    instead of raising :class:`DataError` at the first one.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. Pass a FER2013 zip, folder or CSV.")
    kind = _kind(path)
    key = source_hash(path)
    cache_file = Path(cache_dir or PROCESSED_DIR) / f"fer2013-{key}.npz"
    if cache and cache_file.exists():
        try:
            return _read_cache(cache_file)
        except Exception as err:  # a truncated cache is rebuilt, never trusted
            log.warning("ignoring unreadable cache %s (%s)", cache_file, err)
    if kind == "csv":
        splits = _load_csv(path, skip_bad=skip_bad)
    else:
        splits = _load_images(_iter_folder(path) if kind == "folder" else _iter_zip(path), path, skip_bad)
    if cache:
        _write_cache(cache_file, splits)
    return splits


def source_hash(path: str | os.PathLike) -> str:
    """Content hash of a file (or of a folder's names, sizes and modification times).

    A folder is keyed by metadata rather than bytes, which would cost as much as decoding it;
    any added, removed, resized or touched file changes the key.
    """
    path = Path(path)
    h = hashlib.blake2b(digest_size=8)
    h.update(f"v{LOADER_VERSION}".encode())
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        with open(path, "rb") as fh:
            hashlib.file_digest(fh, lambda: h)  # reads the file into h, in chunks
    return h.hexdigest()


def locate(env: str = "FER_DATA", raw_dir: str | os.PathLike = RAW_DIR, download_ok: bool = True) -> Path:
    """Find the dataset: ``$FER_DATA``, then ``data/raw/``, then a Kaggle download.

    Raises :class:`DataError` saying exactly how to provide the data when none is found.
    """
    value = os.environ.get(env)
    if value:
        path = Path(value).expanduser()
        if not path.exists():
            raise DataError(f"${env}={value} does not exist. Point it at a FER2013 zip, folder or CSV.")
        return path
    raw = Path(raw_dir)
    found = _find_in_raw(raw)
    if found is not None:
        return found
    if download_ok and _kaggle_credentials():
        return download(raw)
    raise DataError(
        "FER2013 not found. Provide it in one of these ways:\n"
        f"  1. export {env}=/path/to/fer2013.zip   (Kaggle folder layout zip/folder, or fer2013.csv)\n"
        f"  2. put fer2013.zip, fer2013.csv or the train/ and test/ folders in {raw}/\n"
        "  3. set Kaggle credentials (KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, or\n"
        "     ~/.kaggle/kaggle.json, or Colab Secrets) and run `make data` to download "
        f"{KAGGLE_DATASET}."
    )


def download(dest: str | os.PathLike = RAW_DIR) -> Path:
    """Download the Kaggle image-folder FER2013 with kagglehub into ``dest``; return its folder."""
    _colab_secrets_to_env()
    try:
        import kagglehub
    except ImportError as err:
        raise DataError("kagglehub is not installed: pip install kagglehub") from err
    try:
        cached = Path(kagglehub.dataset_download(KAGGLE_DATASET))  # shows its own progress bar
    except Exception as err:
        raise DataError(f"Kaggle download of {KAGGLE_DATASET} failed: {err}") from err
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "fer2013"
    if not target.exists():
        target.symlink_to(cached, target_is_directory=True)
    return target


# --------------------------------------------------------------------------- folder and zip layout


def _kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    raise DataError(f"{path}: not a folder, .zip, .csv or .csv.gz. Pass a FER2013 source.")


def _iter_folder(root: Path) -> Iterator[tuple[str, bytes | None]]:
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).as_posix()
        yield (rel + "/", None) if f.is_dir() else (rel, f)  # type: ignore[misc]


def _iter_zip(path: Path) -> Iterator[tuple[str, object]]:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise DataError(f"{path}: not a readable zip file ({err}).") from err
    with zf:
        for info in zf.infolist():
            yield (info.filename, None) if info.is_dir() else (info.filename, (zf, info))


def _read_bytes(handle: object) -> bytes:
    if isinstance(handle, Path):
        return handle.read_bytes()
    zf, info = handle  # type: ignore[misc]
    return zf.read(info)


def _classify_entry(name: str) -> tuple[str, str] | None:
    """``.../<split>/<class>/<file>`` → (split, class folder); None for files to ignore."""
    parts = [p for p in name.split("/") if p]
    if len(parts) < 3 or parts[0] == "__MACOSX" or parts[-1].startswith("."):
        return None
    split_dir, class_dir, fname = parts[-3], parts[-2], parts[-1]
    split = SPLIT_FOLDERS.get(split_dir.lower())
    if split is None:
        return None
    if split == "test":
        prefix = fname.split("_", 1)[0].lower()
        split = FILE_PREFIX_SPLIT.get(prefix, "test")
    return split, class_dir


def _decode(raw: bytes) -> np.ndarray | None:
    """Grayscale pixels of an encoded image, or None when it cannot be read (OpenCV raises,
    rather than returning None, for an empty buffer and some truncated files)."""
    import cv2

    try:
        return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE) if raw else None
    except cv2.error:
        return None


def _load_images(entries: Iterable[tuple[str, object]], source: Path, skip_bad: bool) -> Splits:
    import cv2

    pixels: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[int]] = {}
    bad: list[str] = []
    unknown: set[str] = set()
    for name, handle in entries:
        if handle is None or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        where = _classify_entry(name)
        if where is None:
            continue
        split, class_dir = where
        cls = class_dir.lower()
        if cls not in CLASSES:
            unknown.add(name.rsplit("/", 1)[0] + "/")
            continue
        img = _decode(_read_bytes(handle))
        if img is None:
            if not skip_bad:
                raise DataError(
                    f"{source}: {name} is not a readable image. Delete or replace it, "
                    "or load with skip_bad=True to skip unreadable files."
                )
            bad.append(name)
            continue
        if img.shape != (IMAGE_SIZE, IMAGE_SIZE):
            img = cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
        pixels.setdefault(split, []).append(img)
        labels.setdefault(split, []).append(CLASSES.index(cls))
    if unknown:
        raise DataError(
            f"{source}: unknown class folder(s) {sorted(unknown)}; expected one of {list(CLASSES)} "
            "(any letter case)."
        )
    if not pixels:
        raise DataError(
            f"{source}: no images found in the FER2013 layout <split>/<class>/<image>, with split "
            "in train/test/val and class in " + ", ".join(CLASSES) + "."
        )
    if bad:
        warnings.warn(f"{source}: skipped {len(bad)} unreadable image(s), e.g. {bad[:3]}", stacklevel=3)
    splits = _finish(pixels, labels)
    for split, (_, y) in splits.items():
        missing = [c for i, c in enumerate(CLASSES) if not np.any(y == i)]
        if split == "train" and missing:
            raise DataError(
                f"{source}: split '{split}' has no images for class(es) {missing}. "
                "Is a class folder missing or misnamed?"
            )
    return splits


def _finish(pixels: dict[str, list[np.ndarray]], labels: dict[str, list[int]]) -> Splits:
    order = {s: i for i, s in enumerate(("train", "val", "public_test", "private_test", "test"))}
    out: Splits = {}
    for split in sorted(pixels, key=lambda s: order.get(s, 99)):
        x = np.stack(pixels[split]).astype(np.uint8, copy=False)
        out[split] = (x, np.asarray(labels[split], dtype=np.int64))
    return out


# --------------------------------------------------------------------------- challenge CSV

_NUMBERS = re.compile(r"^\s*\d+(\s+\d+)*\s*$")


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    return open(path, newline="", encoding="utf-8")


def _load_csv(path: Path, skip_bad: bool) -> Splits:
    pixels: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[int]] = {}
    bad: list[str] = []
    n_px = IMAGE_SIZE * IMAGE_SIZE
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file; expected a header 'emotion,pixels,Usage'.") from None
        if "emotion" not in header or "pixels" not in header:
            raise DataError(f"{path}: header {header} lacks 'emotion' and 'pixels' columns.")
        i_emo, i_px = header.index("emotion"), header.index("pixels")
        i_use = header.index("usage") if "usage" in header else None
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            problem = None
            try:
                code = int(row[i_emo])
                if not 0 <= code < len(CSV_CODE_TO_NAME):
                    problem = f"emotion code {row[i_emo]!r} is not 0-6"
                usage = row[i_use].strip().lower() if i_use is not None else "training"
                split = USAGE_SPLIT.get(usage)
                if split is None and problem is None:
                    problem = f"Usage {row[i_use]!r} is not Training/PublicTest/PrivateTest"
                text = row[i_px]
            except (IndexError, ValueError):
                problem = f"expected {len(header)} columns with an integer emotion, got {row[:2]}..."
            if problem is None and not _NUMBERS.match(text):
                problem = "pixels has a non-numeric value"  # checked first: numpy raises on it
            if problem is None:
                values = np.fromstring(text, dtype=np.int32, sep=" ")
                if values.size != n_px:
                    problem = f"pixels has {values.size} values, expected {n_px}"
                elif values.min() < 0 or values.max() > 255:
                    problem = "pixels has values outside 0-255"
            if problem is not None:
                if not skip_bad:
                    raise DataError(
                        f"{path}, line {line_no}: {problem}. Fix or remove the row, "
                        "or load with skip_bad=True to skip malformed rows."
                    )
                bad.append(f"line {line_no}: {problem}")
                continue
            pixels.setdefault(split, []).append(values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
            labels.setdefault(split, []).append(CLASSES.index(CSV_CODE_TO_NAME[code]))
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} malformed row(s), e.g. {bad[:3]}", stacklevel=3)
    if not pixels:
        raise DataError(f"{path}: no data rows.")
    return _finish(pixels, labels)


# --------------------------------------------------------------------------- cache


def _write_cache(cache_file: Path, splits: Splits) -> None:
    arrays = {}
    for split, (x, y) in splits.items():
        arrays[f"x__{split}"], arrays[f"y__{split}"] = x, y
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)  # uncompressed: loading is a memcpy
        os.replace(tmp, cache_file)
    except OSError as err:
        log.warning("could not write cache %s (%s); loads will not be cached", cache_file, err)


def _read_cache(cache_file: Path) -> Splits:
    with np.load(cache_file) as z:
        names = [k[3:] for k in z.files if k.startswith("x__")]
        return {s: (z[f"x__{s}"], z[f"y__{s}"]) for s in names}


# --------------------------------------------------------------------------- finding the data


def _find_in_raw(raw: Path) -> Path | None:
    if not raw.is_dir():
        return None
    candidates = sorted(raw.iterdir())
    for pattern in ("*.zip", "*.csv", "*.csv.gz"):
        for c in candidates:
            if c.is_file() and c.match(pattern):
                return c
    if any(SPLIT_FOLDERS.get(c.name.lower()) for c in candidates if c.is_dir()):
        return raw
    for c in candidates:  # one level down: data/raw/fer2013/{train,test}
        if c.is_dir() and any(SPLIT_FOLDERS.get(d.name.lower()) for d in c.iterdir() if d.is_dir()):
            return c
    return None


def _kaggle_credentials() -> bool:
    _colab_secrets_to_env()
    env = os.environ
    return bool(
        env.get("KAGGLE_API_TOKEN")
        or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"))
        or (Path.home() / ".kaggle" / "kaggle.json").exists()
        or (Path.home() / ".kaggle" / "access_token").exists()
    )


def _colab_secrets_to_env() -> None:
    """On Colab, copy Kaggle secrets (if the user granted them) into the environment."""
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        if name not in os.environ:
            try:
                value = userdata.get(name)
            except Exception:  # secret absent or access not granted
                continue
            if value:
                os.environ[name] = value


# --------------------------------------------------------------------------- audit and cleaning


def _digests(x: np.ndarray) -> np.ndarray:
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
    digests = {s: _digests(x) for s, (x, _) in splits.items()}
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
    d = _digests(x)
    keep = np.ones(len(x), dtype=bool)
    if drop_constant:
        flat = x.reshape(len(x), -1)
        keep &= flat.min(axis=1) != flat.max(axis=1)
    others = {s: _digests(v[0]) for s, v in splits.items() if s != "train"}
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
    groups = np.unique(_digests(x), return_inverse=True)[1]
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


# --------------------------------------------------------------------------- generated data


def synthetic(n_train: int = 70, n_test: int = 14, seed: int = 0, test_split: str = "public_test") -> Splits:
    """Small generated FER-like data: each class a distinct, learnable pattern plus noise.

    For tests and the ``smoke`` profile (no real faces needed). ``n_train``/``n_test`` are
    images per class.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] / (IMAGE_SIZE - 1)
    # A face-free stand-in: one smooth pattern per class (gradients, stripes, blobs).
    patterns = [
        xx,
        yy,
        (xx + yy) / 2,
        0.5 + 0.5 * np.sin(6 * np.pi * xx),
        0.5 + 0.5 * np.sin(6 * np.pi * yy),
        np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 12),
        ((xx > 0.5) ^ (yy > 0.5)).astype(float),
    ]

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(len(CLASSES)), n)
        base = np.stack([patterns[c] for c in y])
        x = 255 * (0.7 * base + 0.3 * rng.random(base.shape))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    return {"train": make(n_train), test_split: make(n_test)}


def load_source(data_source: str | os.PathLike | None = None, seed: int = 0) -> Splits:
    """What notebooks and the CLI call: ``"synthetic"`` → :func:`synthetic`; a path → :func:`load`;
    ``None`` → :func:`locate` then :func:`load`."""
    if data_source in ("synthetic", "generated"):
        return synthetic(seed=seed)
    return load(data_source if data_source else locate())
