"""FER+ votes: ten people's labels for each FER2013 image, read, found, joined to ``fer.data.load``'s arrays;
what they mean (the majority, training targets, the audit).

FER+ (Barsoum et al., ICMI 2016, github.com/microsoft/FERPlus) had every FER2013 image relabelled
by 10 annotators over ``neutral, happiness, surprise, sadness, anger, disgust, fear, contempt,
unknown, NF`` (not a face). Two files carry the votes:

- this project's per-file CSV (``ferplus_votes.csv``, in ``../shared/data``): one row per image
  of the Kaggle folder layout, keyed by its path (``train/angry/Training_1.png``); rows without a
  FER+ image (``ferplus_image`` empty) have no votes;
- Microsoft's ``fer2013new.csv``: ``Usage,Image name,<10 vote columns>``, row-aligned with the
  original challenge CSV; a row with an empty ``Image name`` is an image FER+ dropped.

:func:`votes` gives ``{split: (N, 10) int16}`` aligned with ``fer.data.load(source)`` (a row of
zeros: no votes for that image). The votes are found like FER2013 (:func:`locate`:
``$FER_VOTES``, then ``data/raw/``, then ``../shared/data``); their absence is never an error:
:func:`votes` returns None and prints why, once.

The rule on votes (docs/evaluation.md): an image's **majority** is a class with more than 5 of
the 10 votes that is one of ``fer.CLASSES`` (a contempt, unknown or not-a-face majority is no
label); a **strong** majority has at least 8. Training targets (:func:`targets`) are the votes
for the 7 classes, normalised: contempt, unknown and NF votes are dropped, and an image without
votes, or whose unknown or NF votes are a majority, is left out.
"""

from __future__ import annotations

import csv
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer.config import RAW_DIR, SHARED_DIR
from fer.data.fer2013 import USAGE_SPLIT, DataError, Names, file_names

#: The vote columns of both files, in FER+'s order.
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
ANNOTATORS = 10
ENV = "FER_VOTES"
#: File names :func:`locate` looks for, in this order.
FILE_NAMES = ("ferplus_votes.csv", "fer2013new.csv", "ferplus_votes.csv.gz", "fer2013new.csv.gz")
_SAID: set[str] = set()


@dataclass
class VoteFile:
    """A vote file as read: each image's 10 votes under its key (a lower-case path ``split/class/file``
    for the per-file CSV, ``row:<n>`` for ``fer2013new.csv``)."""

    path: Path
    kind: str  # "files" (the per-file CSV) or "rows" (fer2013new.csv)
    votes: dict[str, np.ndarray]
    usage: dict[str, str]  # rows: key → the split its Usage names (checked against the challenge CSV)
    rows: int  # data rows in the file
    dropped: int  # rows without votes (no FER+ image)
    short: int  # rows whose votes sum to fewer than 10 (an annotator's vote missing)


def path_key(name: str) -> str:
    """``fer2013/train/Angry/Training_1.png`` → ``train/angry/training_1.png``: the last three parts, lower case."""
    return "/".join([p for p in name.replace("\\", "/").split("/") if p][-3:]).lower()


def read(path: str | os.PathLike, skip_bad: bool = False) -> VoteFile:
    """Read either vote file (told apart by its header). A row whose votes are not 10 whole
    numbers >= 0 summing to 1-10 raises :class:`DataError` naming its line, or with ``skip_bad``
    is skipped with one counted warning. Rows summing to fewer than 10 are kept and counted
    (``short``): FER+ itself has such rows."""
    from fer.data.fer2013 import _open_text

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such vote file. Pass FER+'s fer2013new.csv or this project's ferplus_votes.csv.")
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        lower = [h.lower() for h in header]
        missing = [c for c in VOTE_COLUMNS if c.lower() not in lower]
        if "file" in lower and not missing:
            kind, key_col = "files", lower.index("file")
            image_col = lower.index("ferplus_image") if "ferplus_image" in lower else None
        elif "usage" in lower and "image name" in lower and not missing:
            kind, key_col, image_col = "rows", lower.index("usage"), lower.index("image name")
        else:
            raise DataError(f"{path}: header {header[:14]} is neither FER+'s fer2013new.csv (Usage,Image name,"
                            f"{','.join(VOTE_COLUMNS)}) nor a per-file vote CSV (file,...,{','.join(VOTE_COLUMNS)}).")
        cols = [lower.index(c.lower()) for c in VOTE_COLUMNS]
        out = VoteFile(path, kind, {}, {}, 0, 0, 0)
        bad: list[str] = []
        for line_no, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            _read_row(out, row, line_no, key_col, image_col, cols, bad, skip_bad)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} malformed vote row(s), e.g. {bad[:3]}", stacklevel=2)
    if not out.votes:
        raise DataError(f"{path}: no rows with votes.")
    return out


def _read_row(out: VoteFile, row: list[str], line_no: int, key_col: int, image_col: int | None, cols: list[int],
              bad: list[str], skip_bad: bool) -> None:
    """One data row into ``out`` (the ``out.rows``-th of the file)."""
    index = out.rows
    out.rows += 1
    problem, key = None, None
    try:
        if out.kind == "rows":
            key = f"row:{index}"
            usage = USAGE_SPLIT.get(row[key_col].strip().lower())
            if usage is None:
                problem = f"Usage {row[key_col]!r} is not Training/PublicTest/PrivateTest"
            out.usage[key] = usage or ""
        else:
            key = path_key(row[key_col])
        if image_col is not None and not row[image_col].strip():
            out.dropped += 1  # an image FER+ dropped (not a face, or no match): no votes
            return
        cells = [row[c].strip() for c in cols]
    except IndexError:
        problem, cells = f"expected at least {max(cols) + 1} columns, got {len(row)}", []
    if problem is None:
        if not all(c.isdigit() for c in cells):
            problem = f"votes {cells} are not whole numbers >= 0"
        elif not 0 < sum(map(int, cells)) <= ANNOTATORS:
            problem = f"votes {cells} sum to {sum(map(int, cells))}, not 1-{ANNOTATORS}"
    if problem is not None:
        if not skip_bad:
            raise DataError(f"{out.path}, line {line_no}: {problem}. Fix or remove the row, or read with skip_bad=True.")
        bad.append(f"line {line_no}: {problem}")
        return
    votes = np.array([int(c) for c in cells], dtype=np.int16)
    out.short += int(votes.sum() < ANNOTATORS)
    out.votes[key] = votes


def locate(env: str = ENV, raw_dir: str | os.PathLike = RAW_DIR,
           shared_dir: str | os.PathLike = SHARED_DIR / "data") -> tuple[Path | None, str]:
    """``(path, "")`` of the vote file: ``$FER_VOTES``, then ``data/raw/``, then ``../shared/data``;
    ``(None, why)`` when there is none."""
    value = os.environ.get(env)
    if value:
        path = Path(value).expanduser()
        return (path, "") if path.is_file() else (None, f"${env}={value} does not exist")
    for folder in (Path(raw_dir), Path(shared_dir)):
        for name in FILE_NAMES:
            if (folder / name).is_file():
                return folder / name, ""
    return None, (f"no FER+ vote file: set ${env}, or put fer2013new.csv (github.com/microsoft/FERPlus) "
                  f"or ferplus_votes.csv in {raw_dir}/")


def join(names: Names, vote_file: VoteFile) -> dict[str, np.ndarray]:
    """``{split: (N, 10) int16}`` in the order of ``names`` (:func:`fer.data.file_names`); zeros
    where an image has no votes. :class:`DataError` when the vote file does not describe this
    source (other keys, or rows whose Usage is not the split the challenge CSV gives them)."""
    out: dict[str, np.ndarray] = {}
    for split, split_names in names.items():
        keys = [str(n) if str(n).startswith("row:") else path_key(str(n)) for n in split_names]
        if vote_file.kind == "rows" and not all(k.startswith("row:") for k in keys):
            raise DataError(f"{vote_file.path} (fer2013new.csv) is row-aligned with the challenge CSV, but this "
                            "FER2013 is image files: use the per-file ferplus_votes.csv with it.")
        if vote_file.kind == "files" and any(k.startswith("row:") for k in keys):
            raise DataError(f"{vote_file.path} names image files, but this FER2013 is a challenge CSV: use "
                            "FER+'s fer2013new.csv with it.")
        if vote_file.kind == "rows":
            wrong = [k for k in keys if vote_file.usage.get(k, split) != split]
            if wrong:
                raise DataError(f"{vote_file.path}: {len(wrong)} {split} rows (e.g. {wrong[0]}) have another Usage "
                                "there: the challenge CSV is not the one fer2013new.csv was made from.")
        empty = np.zeros(len(VOTE_COLUMNS), np.int16)
        out[split] = np.stack([vote_file.votes.get(k, empty) for k in keys]) if keys else np.zeros((0, 10), np.int16)
    if not any(v.any() for v in out.values()):
        raise DataError(f"{vote_file.path}: no image of this FER2013 has votes there (another copy of the data?).")
    return out


def votes(source: str | os.PathLike | None = None, votes_path: str | os.PathLike | None = None,
          skip_bad: bool = False) -> dict[str, np.ndarray] | None:
    """The FER+ votes of ``source``'s images (default: the FER2013 ``fer.data.sources.locate``
    finds), ``{split: (N, 10) int16}`` aligned with ``fer.data.load(source)``, zeros where an
    image has none; from ``votes_path`` or the file :func:`locate` finds. None, with the reason
    printed once (on stderr), when there is no vote file or it does not describe ``source``."""
    from fer.data import sources

    if votes_path is None:
        votes_path, why = locate()
        if votes_path is None:
            _say(why)
            return None
    if str(source) in ("synthetic", "generated"):
        _say("generated faces have no FER+ votes")
        return None
    vote_file = read(votes_path, skip_bad=skip_bad)  # a malformed vote file is an error, not an absence
    try:
        source = source if source is not None else sources.locate(download_ok=False)
        return join(file_names(source, skip_bad=skip_bad), vote_file)
    except DataError as err:
        _say(str(err))
        return None


def _say(why: str) -> None:
    if why not in _SAID:
        _SAID.add(why)
        print(f"FER+ figures left out: {why}", file=sys.stderr)  # stderr: --json output stays JSON


# --------------------------------------------------------------------------- what the votes mean

#: Each ``fer.CLASSES`` entry's vote column (angry, disgust, fear, happy, neutral, sad, surprise).
CLASS_COLUMNS = tuple(VOTE_COLUMNS.index(c) for c in ("anger", "disgust", "fear", "happiness", "neutral", "sadness",
                                                        "surprise"))
MAJORITY = 5  # a majority has more than 5 of the 10 votes
STRONG = 8  # a strong majority has at least 8


def _check(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v)
    if v.ndim != 2 or v.shape[1] != len(VOTE_COLUMNS):
        raise ValueError(f"votes must be (N, {len(VOTE_COLUMNS)}) in the order {VOTE_COLUMNS}, not {v.shape}")
    return v


def majority(v: np.ndarray) -> np.ndarray:
    """Each image's majority as an index into ``fer.CLASSES``, or -1: no class has more than 5
    votes, or the one that has is contempt, unknown or NF."""
    ours = _check(v)[:, CLASS_COLUMNS]
    best = ours.argmax(axis=1)
    return np.where(ours.max(axis=1) > MAJORITY, best, -1).astype(np.int64)


def strong(v: np.ndarray) -> np.ndarray:
    """True where the majority (:func:`majority`) holds at least 8 of the 10 votes."""
    return (majority(v) >= 0) & (_check(v)[:, CLASS_COLUMNS].max(axis=1) >= STRONG)


def targets(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(targets (N, 7) float32, keep (N,) bool)``: the votes for ``fer.CLASSES`` divided by
    their sum; ``keep`` is False (targets zero) where an image has no such vote or its
    unknown or NF votes are a majority (FER+ leaves those out of training too)."""
    v = _check(v).astype(np.float32)
    ours = v[:, CLASS_COLUMNS]
    total = ours.sum(axis=1)
    unknown, not_face = VOTE_COLUMNS.index("unknown"), VOTE_COLUMNS.index("NF")
    keep = (total > 0) & (v[:, unknown] <= MAJORITY) & (v[:, not_face] <= MAJORITY)
    out = np.where(keep[:, None], ours / np.maximum(total, 1)[:, None], 0).astype(np.float32)
    return out, keep


def audit(splits: dict, split_votes: dict[str, np.ndarray]) -> dict:
    """Per split: images, images with votes, majority classes, and how often FER2013's own label
    is the majority (on images with a majority among the 7 classes, and on strong ones)."""
    from fer.config import CLASSES

    report = {}
    for split, (_, y) in splits.items():
        v = split_votes.get(split)
        if v is None:
            continue
        m, s = majority(v), strong(v)
        has = m >= 0
        report[split] = {
            "images": int(len(y)), "with_votes": int((v.sum(axis=1) > 0).sum()), "majority_7": int(has.sum()),
            "strong": int(s.sum()), "majority_classes": {c: int((m == i).sum()) for i, c in enumerate(CLASSES)},
            "label_agrees": float((y[has] == m[has]).mean()) if has.any() else float("nan"),
            "label_agrees_strong": float((y[s] == m[s]).mean()) if s.any() else float("nan"),
        }
    return report


def audit_lines(report: dict) -> list[str]:
    """The FER+ audit as ``python -m fer data`` prints it."""
    lines = ["FER+ votes (majority: > 5 of 10 votes on one of the 7 classes; strong: >= 8):"]
    for split, r in report.items():
        classes = ", ".join(f"{c} {n}" for c, n in r["majority_classes"].items())
        lines += [f"  {split}: {r['with_votes']} of {r['images']} images have votes; {r['majority_7']} have a majority "
                  f"({r['strong']} strong): {classes}",
                  f"    FER2013's label is the majority on {r['label_agrees']:.1%} of them "
                  f"({r['label_agrees_strong']:.1%} of the strong ones)"]
    return lines


def by_image(splits: dict, split_votes: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Votes keyed by each image's pixels (``fer.data.audit.image_digests``), so they follow the
    images through cleaning and splitting; of identical images, the first with votes gives them."""
    from fer.data.audit import image_digests

    table: dict[int, np.ndarray] = {}
    for split, (x, _) in splits.items():
        if split in split_votes:
            for d, v in zip(image_digests(x).tolist(), split_votes[split], strict=True):
                if v.any():
                    table.setdefault(d, v)
    return table


def votes_of(x: np.ndarray, table: dict[int, np.ndarray]) -> np.ndarray:
    """``(N, 10)`` votes of the faces ``x`` from :func:`by_image`'s table (zeros: none)."""
    from fer.data.audit import image_digests

    empty = np.zeros(len(VOTE_COLUMNS), np.int16)
    return np.stack([table.get(d, empty) for d in image_digests(x).tolist()]) if len(x) else np.zeros((0, 10), np.int16)
