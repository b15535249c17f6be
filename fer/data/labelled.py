"""Labelled face sets of your own: class folders, a ``path,label`` CSV, or FER2013 itself.

:func:`open_set` reads what ``python -m fer evaluate SOURCE`` is given and returns a
:class:`LabelledSet`: one :class:`Item` per image with its class as an index into
``fer.CLASSES``, the mapping from the set's own class names, the images left out (classes
this model does not have, such as CK+'s and AffectNet's *contempt*) and the entries skipped
(a CSV row without a label, a listed file that is missing). Images are read only when
:meth:`Item.image` is called, so a set of 100,000 photos opens in a second.

Class names are matched case-insensitively after dropping a numeric prefix (``1_happy``,
``03-Anger``) against :data:`SYNONYMS` (what CK+, JAFFE, RAF-DB, AffectNet, KDEF and ExpW
call the seven classes) and JAFFE's two-letter codes. Bare numbers mean different classes in
each public set, so they are mapped only through ``mapping=`` (e.g. the ``rafdb`` preset).

Layouts: a folder or ``.zip`` of class folders (``happy/*.jpg``, nested folders inside a
class are fine); a CSV whose rows are ``path,label`` (paths relative to the CSV; a header
naming ``path``/``file``/``image`` and ``label``/``class``/``emotion`` columns is optional);
and FER2013 in every form :func:`fer.data.load` reads (48x48 crops with split folders or the
challenge CSV), whose held-out split is evaluated.
"""

from __future__ import annotations

import csv
import os
import re
import threading
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer.config import CLASSES
from fer.data.fer2013 import SPLIT_FOLDERS, DataError
from fer.data.ferplus import votes as ferplus_votes

#: Image files a class folder may hold (what OpenCV decodes).
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm")

#: Other names public sets and people use for the seven classes (lower case).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "angry": ("angry", "anger", "angered", "mad", "furious", "rage"),
    "disgust": ("disgust", "disgusted", "disgusting", "disgustful"),
    "fear": ("fear", "fearful", "afraid", "scared", "fright", "frightened"),
    "happy": ("happy", "happiness", "happily", "joy", "joyful", "smile", "smiling"),
    "neutral": ("neutral", "neutrality", "neutralness", "calm"),
    "sad": ("sad", "sadness", "sorrow", "unhappy"),
    "surprise": ("surprise", "surprised", "surprising", "shock", "shocked", "astonished"),
}
#: JAFFE's expression codes (``KA.HA1.29.tiff``).
CODES = {"an": "angry", "di": "disgust", "fe": "fear", "ha": "happy", "ne": "neutral", "sa": "sad", "su": "surprise"}
#: Numbered class folders of public sets; ``None`` = a class this model does not have.
PRESETS: dict[str, dict[str, str | None]] = {
    "rafdb": {"1": "surprise", "2": "fear", "3": "disgust", "4": "happy", "5": "sad", "6": "angry", "7": "neutral"},
    "affectnet": {"0": "neutral", "1": "happy", "2": "sad", "3": "surprise", "4": "fear", "5": "disgust",
                  "6": "angry", "7": None},
    "fer2013": {"0": "angry", "1": "disgust", "2": "fear", "3": "happy", "4": "sad", "5": "surprise", "6": "neutral"},
}
_LOOKUP = {name: cls for cls, names in SYNONYMS.items() for name in names}
_PREFIX = re.compile(r"^\d+[\s._-]+(?=\D)")
PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "image", "img", "image_path", "subdirectory_filepath")
LABEL_COLUMNS = ("label", "class", "emotion", "expression", "category")


def normalise(name: str) -> str:
    """``"01_Happiness "`` → ``"happiness"``: the form class names are compared in."""
    return _PREFIX.sub("", str(name).strip().lower()).strip()


def parse_mapping(spec: str | Mapping[str, str | None] | None) -> dict[str, str | None]:
    """A preset name (``rafdb``, ``affectnet``, ``fer2013``), ``"1=surprise,7=neutral,8=-"``
    (``-`` leaves a class out) or a dict, as ``{normalised set name: class or None}``."""
    if not spec:
        return {}
    if isinstance(spec, str) and spec.lower() in PRESETS:
        return dict(PRESETS[spec.lower()])
    if isinstance(spec, str):
        pairs = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise DataError(f"class mapping {part!r}: write NAME=CLASS (e.g. 1=surprise), or one of the "
                                f"presets {sorted(PRESETS)}")
            pairs[key] = value
        spec = pairs
    out: dict[str, str | None] = {}
    for key, value in spec.items():
        value = None if value in (None, "", "-") else normalise(value)
        if value is not None and _LOOKUP.get(value, value) not in CLASSES:
            raise DataError(f"class mapping {key}={value}: {value!r} is not one of {list(CLASSES)} (or '-' to leave it out)")
        out[normalise(key)] = None if value is None else _LOOKUP.get(value, value)
    return out


def to_class(name: str, mapping: Mapping[str, str | None] | None = None) -> str | None:
    """The ``fer.CLASSES`` name a set's class name means, or None (left out)."""
    key = normalise(name)
    if mapping and key in mapping:
        return mapping[key]
    return _LOOKUP.get(key) or CODES.get(key)


_OPEN = threading.local()


def _zipfile(path: Path) -> zipfile.ZipFile:
    """The zip opened once per thread (reading its directory once, not once per member)."""
    cache = _OPEN.__dict__.setdefault("zips", {})
    if path not in cache:
        cache[path] = zipfile.ZipFile(path)
    return cache[path]


@dataclass
class Item:
    """One labelled image: where it is (a file, a zip member or pixels) and its class."""

    name: str  # as listed in reports: relative to the set
    label: int  # index into fer.CLASSES
    given: str  # the class as the set spells it
    path: Path | None = None
    member: tuple[Path, str] | None = None  # (zip file, member name)
    pixels: np.ndarray | None = field(default=None, repr=False)
    votes: np.ndarray | None = field(default=None, repr=False)  # FER2013: its FER+ votes (10,), when found

    def data(self) -> bytes:
        if self.member is not None:
            return _zipfile(self.member[0]).read(self.member[1])
        return self.path.read_bytes()

    def image(self, gray: bool = False) -> np.ndarray:
        """The image as BGR (or grayscale) uint8, EXIF orientation applied; ValueError if unreadable."""
        import cv2

        if self.pixels is not None:
            return self.pixels if gray or self.pixels.ndim == 3 else cv2.cvtColor(self.pixels, cv2.COLOR_GRAY2BGR)
        raw = self.data()
        try:
            image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        except cv2.error:
            image = None
        if image is None or image.size == 0:
            raise ValueError("not an image OpenCV can read" if raw else "empty file")
        return image


@dataclass
class LabelledSet:
    source: Path
    kind: str  # "folders", "zip", "csv" or "fer2013"
    items: list[Item]
    mapping: dict[str, str | None]  # the set's class names → fer.CLASSES name or None (left out)
    left_out: Counter = field(default_factory=Counter)  # set class → images not evaluated
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, why)
    split: str | None = None  # FER2013: the split evaluated
    crops: bool = False  # the images are face crops already (FER2013): crops mode by default

    def counts(self) -> dict[str, int]:
        """Images per fer class, in ``CLASSES`` order."""
        got = Counter(CLASSES[i.label] for i in self.items)
        return {c: got[c] for c in CLASSES}

    def sample(self, n: int | None, seed: int = 0) -> LabelledSet:
        """A random subset of ``n`` images (all of them when ``n`` is None or larger)."""
        if not n or n >= len(self.items):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self.items), n, replace=False))
        return LabelledSet(self.source, self.kind, [self.items[i] for i in idx], self.mapping, self.left_out,
                           self.skipped, self.split, self.crops)


# --------------------------------------------------------------------------- opening a source


def open_set(source: str | os.PathLike, mapping: str | Mapping[str, str | None] | None = None,
             split: str | None = None) -> LabelledSet:
    """Read ``source``'s layout and labels (not its images); :class:`DataError` says what is wrong."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. Pass a folder of class folders (happy/, sad/ ...), "
                        "a zip of one, a CSV of path,label, or FER2013.")
    names = parse_mapping(mapping)
    lower = path.name.lower()
    if path.is_dir():
        children = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
        if any(c.name.lower() in SPLIT_FOLDERS for c in children):
            return _fer2013(path, split)
        entries = [(p.relative_to(path).as_posix(), p) for p in sorted(path.rglob("*")) if p.is_file()]
        return _from_entries(path, "folders", entries, names)
    if lower.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as zf:
                members = [i.filename for i in zf.infolist() if not i.is_dir()]
        except zipfile.BadZipFile as err:
            raise DataError(f"{path}: not a readable zip file ({err}).") from err
        parts = [[p for p in m.split("/") if p] for m in members]
        if any(len(p) >= 3 and p[-3].lower() in SPLIT_FOLDERS for p in parts):
            return _fer2013(path, split)
        return _from_entries(path, "zip", [(m, (path, m)) for m in members], names)
    if lower.endswith((".csv", ".csv.gz")):
        if _is_challenge_csv(path):
            return _fer2013(path, split)
        return _from_csv(path, names)
    raise DataError(f"{path}: not a folder, .zip or .csv. Put the photos in class folders (happy/, sad/ ...) "
                    "or list them in a CSV of path,label.")


def _fer2013(path: Path, split: str | None) -> LabelledSet:
    from fer.data import fer2013 as data

    if not path.name.lower().endswith((".csv", ".csv.gz")):
        _require_fer_sized(path)

    try:
        splits = data.load(path)
    except DataError as err:
        raise DataError(f"{err} (A set of your own photos laid out as train/ and test/ folders: pass one of "
                        f"them, e.g. {path / 'test'}.)") from None
    held_out = [s for s in splits if s != "train"] or list(splits)
    if split is None:
        split = "public_test" if "public_test" in held_out else held_out[0]
    if split not in splits:
        raise DataError(f"{path} has no split {split!r}; it has {sorted(splits)}")
    x, y = splits[split]
    split_votes = (ferplus_votes(path) or {}).get(split)  # None: no vote file (the reason is printed once)
    items = [Item(f"{split}/{i:05d}", int(c), CLASSES[int(c)], pixels=x[i],
                  votes=None if split_votes is None else split_votes[i]) for i, c in enumerate(y)]
    return LabelledSet(path, "fer2013", items, {c: c for c in CLASSES}, split=split, crops=True)


def _require_fer_sized(path: Path) -> None:
    """Split folders of ordinary photos are a set of one's own, not FER2013: say which folder to pass."""
    import cv2

    if path.is_dir():
        first = next((f for f in sorted(path.rglob("*")) if f.is_file() and f.name.lower().endswith(PHOTO_SUFFIXES)), None)
        raw = first.read_bytes() if first else b""
    else:
        zf = _zipfile(path)
        first = next((n for n in zf.namelist() if n.lower().endswith(PHOTO_SUFFIXES) and "__MACOSX" not in n), None)
        raw = zf.read(first) if first else b""
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED) if raw else None
    if image is not None and image.shape[:2] != (48, 48):
        split = next(p for p in Path(str(first)).parts if p.lower() in SPLIT_FOLDERS)
        raise DataError(f"{path} has split folders ({split}/ ...) of {image.shape[1]}x{image.shape[0]} images, not "
                        f"FER2013's 48x48 faces: evaluate one split of your photos, e.g. {path / split}")


def _from_entries(root: Path, kind: str, entries: list, names: dict) -> LabelledSet:
    """Class-folder layout: the first folder of each image's path is its class."""
    parts = [(rel, [p for p in rel.split("/") if p], where) for rel, where in entries]
    parts = [(rel, p, w) for rel, p, w in parts
             if not any(s.startswith(".") or s == "__MACOSX" for s in p) and rel.lower().endswith(PHOTO_SUFFIXES)]
    if not parts:
        raise DataError(f"{root}: no images found ({', '.join(PHOTO_SUFFIXES[:5])} ...). Put the photos in "
                        "class folders: happy/, sad/, ...")
    # a zip (or folder) holding one wrapper folder around the class folders: look inside it
    while (len(tops := {p[0] for _, p, _ in parts}) == 1 and all(len(p) > 2 for _, p, _ in parts)
           and to_class(next(iter(tops)), names) is None and next(iter(tops)) not in names):
        parts = [(rel, p[1:], w) for rel, p, w in parts]
    loose = [rel for rel, p, _ in parts if len(p) == 1]
    if len(loose) == len(parts):
        raise DataError(f"{root} holds {len(loose)} images but no class folders: put each photo in a folder "
                        "named after its class (happy/, sad/, ...), or list them in a CSV of path,label.")
    mapping, items, left_out = {}, [], Counter()
    skipped = [(rel, "not in a class folder") for rel in loose]
    for rel, p, where in parts:
        if len(p) == 1:
            continue
        given = p[0]
        cls = mapping.setdefault(given, to_class(given, names))
        if cls is None:
            left_out[given] += 1
            continue
        item = Item(rel, CLASSES.index(cls), given)
        if kind == "zip":
            item.member = where
        else:
            item.path = where
        items.append(item)
    _require_items(root, items, mapping)
    return LabelledSet(root, kind, items, mapping, left_out, skipped)


def _is_challenge_csv(path: Path) -> bool:
    from fer.data.fer2013 import _open_text

    with _open_text(path) as fh:
        header = fh.readline().lower()
    return "pixels" in header


def _from_csv(path: Path, names: dict) -> LabelledSet:
    from fer.data.fer2013 import _open_text

    root = path.parent
    with _open_text(path) as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DataError(f"{path} is empty; write one row per photo: path,label")
    first = [c.strip().lower() for c in rows[0]]
    pcol, lcol, start = 0, 1, 0
    if any(c in PATH_COLUMNS for c in first) and any(c in LABEL_COLUMNS for c in first):
        pcol = next(i for i, c in enumerate(first) if c in PATH_COLUMNS)
        lcol = next(i for i, c in enumerate(first) if c in LABEL_COLUMNS)
        start = 1
    mapping, items, left_out, skipped = {}, [], Counter(), []
    for line, row in enumerate(rows[start:], start=start + 1):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(pcol, lcol) or not row[pcol].strip() or not row[lcol].strip():
            skipped.append((f"{path.name} line {line}", "expected a path and a label"))
            continue
        rel, given = row[pcol].strip(), row[lcol].strip()
        cls = mapping.setdefault(given, to_class(given, names))
        if cls is None:
            left_out[given] += 1
            continue
        file = Path(rel).expanduser()
        file = file if file.is_absolute() else root / file
        if not file.is_file():
            skipped.append((f"{path.name} line {line}", f"no such file {rel}"))
            continue
        items.append(Item(rel, CLASSES.index(cls), given, path=file))
    _require_items(path, items, mapping)
    return LabelledSet(path, "csv", items, mapping, left_out, skipped)


def _require_items(source: Path, items: list, mapping: dict) -> None:
    if items:
        return
    if mapping and all(v is None for v in mapping.values()):
        raise DataError(f"{source}: none of its classes {sorted(mapping)} is one this model knows ({', '.join(CLASSES)}). "
                        "Rename the folders/labels, or map them, e.g. --map 1=surprise,2=fear or --map rafdb.")
    raise DataError(f"{source}: no usable images (every listed file is missing or no class was given).")


def mapping_lines(lset: LabelledSet) -> list[str]:
    """``"Happiness → happy (40)"`` for every class name of the set, then what was left out."""
    counts = Counter(i.given for i in lset.items)
    lines = [f"{given} → {cls} ({counts[given]})" for given, cls in lset.mapping.items() if cls is not None]
    lines += [f"{given} → left out ({n}; not a class of this model)" for given, n in lset.left_out.items()]
    return lines
