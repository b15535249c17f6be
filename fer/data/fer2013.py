"""Reading FER2013 from every form people have it in, as uint8 arrays (and generated data).

``load(source)`` reads the Kaggle image-folder layout (a folder or a ``.zip``) or the original
challenge CSV (``emotion,pixels,Usage``, also the ``icml_face_data.csv`` variant, plain or
``.gz``) and returns ``{split: (x, y)}`` with ``x`` uint8 ``(N, 48, 48)`` and ``y`` int64
indices into ``fer.CLASSES``. Results are cached in ``data/processed`` under a hash of the
source, so a second load is a single ``np.load``.

Why not ``keras.utils.image_dataset_from_directory``: it reads neither zips nor the CSV, cannot
split Kaggle's mixed ``test/`` folder into PublicTest/PrivateTest, and decodes through a
TensorFlow graph that is slower than ``cv2.imdecode`` for 35k tiny PNGs. The arrays this module
returns feed ``tf.data`` directly (``fer.training.inputs``). Finding the data (``$FER_DATA``,
``data/raw``, Kaggle) is :mod:`fer.data.sources`; auditing and cleaning the splits :mod:`fer.data.audit`.
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
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from fer.config import CLASSES, CSV_CODE_TO_NAME, IMAGE_SIZE, PROCESSED_DIR

__all__ = ["DataError", "file_names", "load", "source_hash", "synthetic"]

log = logging.getLogger(__name__)

#: Bump when the decoding or the cache's contents change, so every cache written by older code
#: is ignored (3: the cache also keeps each image's name, for joining FER+ votes).
LOADER_VERSION = 3
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

Splits = dict[str, tuple[np.ndarray, np.ndarray]]
#: Each image's identity, per split, in the arrays' order: its path in a zip or folder
#: (``train/angry/Training_1.png``), or ``row:<n>`` for the n-th data row (from 0) of a challenge CSV.
Names = dict[str, np.ndarray]


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
    return _load(source, cache, cache_dir, skip_bad)[0]


def file_names(
    source: str | os.PathLike,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
) -> Names:
    """Which image each row of :func:`load`'s arrays is (:data:`Names`), for joining per-image
    data such as FER+ votes (:mod:`fer.data.ferplus`); read from the same cache."""
    return _load(source, cache, cache_dir, skip_bad)[1]


def _load(source, cache: bool, cache_dir, skip_bad: bool) -> tuple[Splits, Names]:
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
        splits, names = _load_csv(path, skip_bad=skip_bad)
    else:
        splits, names = _load_images(_iter_folder(path) if kind == "folder" else _iter_zip(path), path, skip_bad)
    if cache:
        _write_cache(cache_file, splits, names)
    return splits, names


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


def _load_images(entries: Iterable[tuple[str, object]], source: Path, skip_bad: bool) -> tuple[Splits, Names]:
    import cv2

    pixels: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[int]] = {}
    names: dict[str, list[str]] = {}
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
        names.setdefault(split, []).append(name)
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
    splits, named = _finish(pixels, labels, names)
    for split, (_, y) in splits.items():
        missing = [c for i, c in enumerate(CLASSES) if not np.any(y == i)]
        if split == "train" and missing:
            raise DataError(
                f"{source}: split '{split}' has no images for class(es) {missing}. "
                "Is a class folder missing or misnamed?"
            )
    return splits, named


def _finish(pixels: dict[str, list[np.ndarray]], labels: dict[str, list[int]],
            names: dict[str, list[str]]) -> tuple[Splits, Names]:
    order = {s: i for i, s in enumerate(("train", "val", "public_test", "private_test", "test"))}
    out: Splits = {}
    named: Names = {}
    for split in sorted(pixels, key=lambda s: order.get(s, 99)):
        x = np.stack(pixels[split]).astype(np.uint8, copy=False)
        out[split] = (x, np.asarray(labels[split], dtype=np.int64))
        named[split] = np.asarray(names[split], dtype=str)
    return out, named


# --------------------------------------------------------------------------- challenge CSV

_NUMBERS = re.compile(r"^\s*\d+(\s+\d+)*\s*$")


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    return open(path, newline="", encoding="utf-8")


def _load_csv(path: Path, skip_bad: bool) -> tuple[Splits, Names]:
    pixels: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[int]] = {}
    names: dict[str, list[str]] = {}
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
        data_row = -1  # FER+'s fer2013new.csv is row-aligned with the data rows
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            data_row += 1
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
            names.setdefault(split, []).append(f"row:{data_row}")
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} malformed row(s), e.g. {bad[:3]}", stacklevel=3)
    if not pixels:
        raise DataError(f"{path}: no data rows.")
    return _finish(pixels, labels, names)


# --------------------------------------------------------------------------- cache


def _write_cache(cache_file: Path, splits: Splits, names: Names) -> None:
    arrays = {}
    for split, (x, y) in splits.items():
        arrays[f"x__{split}"], arrays[f"y__{split}"], arrays[f"n__{split}"] = x, y, names[split]
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)  # uncompressed: loading is a memcpy
        os.replace(tmp, cache_file)
    except OSError as err:
        log.warning("could not write cache %s (%s); loads will not be cached", cache_file, err)


def _read_cache(cache_file: Path) -> tuple[Splits, Names]:
    with np.load(cache_file) as z:
        splits = [k[3:] for k in z.files if k.startswith("x__")]
        return {s: (z[f"x__{s}"], z[f"y__{s}"]) for s in splits}, {s: z[f"n__{s}"] for s in splits}


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
