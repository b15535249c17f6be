"""fer.data on tiny generated FER2013 sources, in every form users have the data in.

One generated dataset is written as a Kaggle-layout folder (PNG and JPG, lowercase and
Capitalised class folders, a mixed ``test/`` with PublicTest_/PrivateTest_ names), as a zip of
that folder, and as the challenge CSV (original header and the ``icml_face_data.csv`` variant,
plain and gzipped). All must load to the same pixels and labels.
"""

from __future__ import annotations

import gzip
import json
import sys
import types
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer import data
from fer.config import CLASSES, CSV_CODE_TO_NAME
from fer.data import DataError, audit, fer2013, sources

# Per-class counts differ, so a label mix-up changes the counts and cannot pass unnoticed.
TRAIN_PER_CLASS = {c: 2 + i for i, c in enumerate(CLASSES)}
PUBLIC_PER_CLASS = {c: 1 + i % 2 for i, c in enumerate(CLASSES)}
PRIVATE_PER_CLASS = {c: 1 for c in CLASSES[:3]}
USAGE = {"train": "Training", "public_test": "PublicTest", "private_test": "PrivateTest"}


def _class_dir(cls: str) -> str:
    """Mix the two spellings found in the wild: ``angry`` and ``Disgust``."""
    return cls.capitalize() if CLASSES.index(cls) % 2 else cls


def _write_image(path: Path, img: np.ndarray) -> np.ndarray:
    """Write ``img`` and return the pixels a decoder reads back (JPEG is lossy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def make_tree(root: Path, seed: int = 0, prefixes: bool = True) -> dict[str, list[tuple[np.ndarray, str]]]:
    """Write a Kaggle-layout folder under ``root``; return ``{split: [(pixels, class), ...]}``.

    Odd images are JPG, even ones PNG. With ``prefixes=False`` the ``test/`` files carry no
    PublicTest_/PrivateTest_ prefix (as in some re-uploads), so they form a single ``test`` split.
    """
    rng = np.random.default_rng(seed)
    truth: dict[str, list[tuple[np.ndarray, str]]] = {}
    k = 0
    for split, counts in (("train", TRAIN_PER_CLASS), ("public_test", PUBLIC_PER_CLASS),
                          ("private_test", PRIVATE_PER_CLASS)):
        for cls, n in counts.items():
            for _ in range(n):
                k += 1
                # smooth blobs + noise: realistic enough for JPEG, distinct per image
                img = cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (5, 5), 0)
                ext = ".jpg" if k % 2 else ".png"
                if split == "train":
                    rel = f"train/{_class_dir(cls)}/Training_{k}{ext}"
                else:
                    prefix = f"{USAGE[split]}_" if prefixes else "im"
                    rel = f"test/{_class_dir(cls)}/{prefix}{k}{ext}"
                pixels = _write_image(root / rel, img)
                name = split if (split == "train" or prefixes) else "test"
                truth.setdefault(name, []).append((pixels, cls))
    return truth


def zip_folder(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f.relative_to(folder).as_posix())  # directories too, like the Kaggle zip
    return dest


def write_csv(truth: dict, dest: Path, icml: bool = False) -> Path:
    """The challenge CSV of ``truth``: ``emotion,pixels,Usage`` or ``emotion, Usage, pixels``."""
    lines = ["emotion, Usage, pixels" if icml else "emotion,pixels,Usage"]
    for split, items in truth.items():
        for pixels, cls in items:
            code = CSV_CODE_TO_NAME.index(cls)
            px = " ".join(map(str, pixels.ravel().tolist()))
            lines.append(f"{code}, {USAGE[split]}, {px}" if icml else f"{code},{px},{USAGE[split]}")
    text = "\n".join(lines) + "\n"
    if dest.name.endswith(".gz"):
        with gzip.open(dest, "wt") as fh:
            fh.write(text)
    else:
        dest.write_text(text)
    return dest


def canonical(x: np.ndarray, y: np.ndarray) -> list[tuple[int, bytes]]:
    """Order-free view of a split: loaders may list files in different orders."""
    return sorted(zip(y.tolist(), (img.tobytes() for img in x), strict=True))


def expected(items: list[tuple[np.ndarray, str]]) -> list[tuple[int, bytes]]:
    return sorted((CLASSES.index(c), p.tobytes()) for p, c in items)


@pytest.fixture(scope="module")
def source_files(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("fer2013")
    truth = make_tree(base / "folder")
    return {
        "truth": truth,
        "folder": base / "folder",
        "zip": zip_folder(base / "folder", base / "fer2013.zip"),
        "csv": write_csv(truth, base / "fer2013.csv"),
        "csv.gz": write_csv(truth, base / "fer2013.csv.gz"),
        "icml": write_csv(truth, base / "icml_face_data.csv", icml=True),
        "icml.gz": write_csv(truth, base / "icml_face_data.csv.gz", icml=True),
    }


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("kind", ["folder", "zip", "csv", "csv.gz", "icml", "icml.gz"])
def test_every_source_form_loads_the_same_pixels_and_labels(source_files, kind, tmp_path):
    splits = data.load(source_files[kind], cache_dir=tmp_path)
    assert list(splits) == ["train", "public_test", "private_test"]
    for split, items in source_files["truth"].items():
        x, y = splits[split]
        assert x.dtype == np.uint8 and x.shape[1:] == (48, 48) and y.dtype == np.int64
        assert canonical(x, y) == expected(items), f"{kind}: split {split} differs"


def test_csv_codes_are_mapped_by_name_not_by_position(tmp_path):
    # CSV code 4 is Sad, 6 is Neutral; in fer.CLASSES (alphabetical) sad is 5, neutral 4.
    px = " ".join(["7"] * 48 * 48)
    path = tmp_path / "f.csv"
    path.write_text(f"emotion,pixels,Usage\n4,{px},Training\n6,{px},Training\n5,{px},Training\n")
    _, y = data.load(path, cache=False)["train"]
    assert [CLASSES[i] for i in y] == ["sad", "neutral", "surprise"]


def test_test_folder_without_prefixes_is_one_test_split(tmp_path):
    truth = make_tree(tmp_path / "src", prefixes=False)
    splits = data.load(tmp_path / "src", cache=False)
    assert list(splits) == ["train", "test"]
    assert canonical(*splits["test"]) == expected(truth["test"])


# --------------------------------------------------------------------------- cache


def _forbid_decoding(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("decoded again although the cache was valid")

    monkeypatch.setattr(fer2013, "_load_images", boom)
    monkeypatch.setattr(fer2013, "_load_csv", boom)


@pytest.mark.parametrize("kind", ["zip", "csv"])
def test_second_load_reads_the_cache_without_decoding(source_files, kind, tmp_path, monkeypatch):
    first = data.load(source_files[kind], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("fer2013-*.npz"))) == 1
    _forbid_decoding(monkeypatch)
    second = data.load(source_files[kind], cache_dir=tmp_path)
    assert list(second) == list(first)
    for split in first:
        np.testing.assert_array_equal(second[split][0], first[split][0])
        np.testing.assert_array_equal(second[split][1], first[split][1])


def test_cache_false_neither_reads_nor_writes(source_files, tmp_path):
    data.load(source_files["csv"], cache=False, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_changed_zip_is_decoded_again(source_files, tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    archive = zip_folder(src, tmp_path / "a.zip")
    cache = tmp_path / "cache"
    n_before = len(data.load(archive, cache_dir=cache)["train"][0])
    next(src.glob("train/angry/*")).unlink()
    zip_folder(src, archive)  # same name, new content
    assert len(data.load(archive, cache_dir=cache)["train"][0]) == n_before - 1


def test_changed_folder_is_decoded_again(tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    cache = tmp_path / "cache"
    n_before = len(data.load(src, cache_dir=cache)["train"][0])
    _write_image(src / "train" / "angry" / "extra.png", np.full((48, 48), 9, np.uint8))
    assert len(data.load(src, cache_dir=cache)["train"][0]) == n_before + 1


def test_truncated_cache_is_rebuilt(source_files, tmp_path):
    data.load(source_files["csv"], cache_dir=tmp_path)
    cache_file = next(tmp_path.glob("fer2013-*.npz"))
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    splits = data.load(source_files["csv"], cache_dir=tmp_path)
    assert canonical(*splits["train"]) == expected(source_files["truth"]["train"])


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def tree(tmp_path) -> Path:
    make_tree(tmp_path / "src")
    return tmp_path / "src"


def _load_error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        data.load(path, cache=False, **kwargs)
    return str(err.value)


def test_missing_class_folder_in_train_is_named(tree):
    for f in (tree / "train" / "Disgust").iterdir():
        f.unlink()
    (tree / "train" / "Disgust").rmdir()
    assert "disgust" in _load_error(tree)


def test_unknown_class_folder_is_named(tree):
    _write_image(tree / "train" / "contempt" / "x.png", np.zeros((48, 48), np.uint8))
    assert "train/contempt/" in _load_error(tree)


@pytest.mark.parametrize("as_zip", [False, True])
def test_unreadable_image_is_named_or_skipped_with_a_count(tree, tmp_path, as_zip):
    (tree / "train" / "Happy" / "broken.png").write_bytes(b"not a png")
    (tree / "train" / "Happy" / "broken2.jpg").write_bytes(b"")
    source = zip_folder(tree, tmp_path / "bad.zip") if as_zip else tree
    message = _load_error(source)
    assert "train/Happy/broken" in message and "skip_bad" in message
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        splits = data.load(source, cache=False, skip_bad=True)
    assert len(splits["train"][0]) == sum(TRAIN_PER_CLASS.values())


def _csv_with(tmp_path: Path, bad_row: str) -> Path:
    good = " ".join(["1"] * 48 * 48)
    path = tmp_path / "rows.csv"
    path.write_text(f"emotion,pixels,Usage\n0,{good},Training\n{bad_row}\n3,{good},PublicTest\n")
    return path


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("3," + " ".join(["1"] * 2000) + ",Training", "2000 values"),
        ("3," + " ".join(["1"] * 2303) + " x,Training", "non-numeric"),
        ("3," + " ".join(["1"] * 2303) + " 300,Training", "outside 0-255"),
        ("happy," + " ".join(["1"] * 2304) + ",Training", "integer emotion"),
        ("9," + " ".join(["1"] * 2304) + ",Training", "not 0-6"),
        ("3," + " ".join(["1"] * 2304) + ",Holdout", "Usage"),
    ],
)
def test_malformed_csv_row_names_its_line_or_is_skipped(tmp_path, row, problem):
    path = _csv_with(tmp_path, row)
    message = _load_error(path)
    assert "line 3" in message and problem in message
    with pytest.warns(UserWarning, match="skipped 1 malformed"):
        splits = data.load(path, cache=False, skip_bad=True)
    assert {s: len(x) for s, (x, _) in splits.items()} == {"train": 1, "public_test": 1}


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.csv", "", "empty file"),
        ("header.csv", "emotion,pixels,Usage\n", "no data rows"),
        ("cols.csv", "label,image\n1,2\n", "lacks 'emotion'"),
        ("empty.csv.gz", None, "empty file"),
        ("empty.zip", b"", "not a readable zip"),
        ("data.txt", "emotion,pixels\n", "not a folder, .zip, .csv"),
        ("fer2013.tar.gz", b"\x1f\x8b", "not a folder, .zip, .csv"),
    ],
)
def test_empty_or_wrong_kind_of_file_is_refused(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is None:
        with gzip.open(path, "wt"):
            pass
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    message = _load_error(path)
    assert problem in message and name in message


def test_empty_folder_and_empty_zip_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no images found" in _load_error(tmp_path / "empty")
    with zipfile.ZipFile(tmp_path / "nothing.zip", "w"):
        pass
    assert "no images found" in _load_error(tmp_path / "nothing.zip")


def test_missing_source_is_refused(tmp_path):
    assert "no such file" in _load_error(tmp_path / "absent.zip")


# --------------------------------------------------------------------------- audit and clean


def _img(value: int, seed: int | None = None) -> np.ndarray:
    if seed is None:
        return np.full((48, 48), value, np.uint8)
    return np.random.default_rng(seed).integers(1, 256, (48, 48), dtype=np.uint8)


@pytest.fixture
def messy() -> data.Splits:
    """Train: 2 black, 1 grey, face A three times (happy, happy, sad), B, C.
    Test: B again (leaked, same label), D twice, black once."""
    a, b, c, d = (_img(0, s) for s in range(4))
    train_x = [_img(0), _img(0), _img(128), a, a, a, b, c]
    train_y = [0, 1, 2, 3, 3, 5, 4, 6]
    test_x = [b, d, d, _img(0)]
    test_y = [4, 1, 1, 0]
    return {
        "train": (np.stack(train_x), np.array(train_y, np.int64)),
        "public_test": (np.stack(test_x), np.array(test_y, np.int64)),
    }


def test_audit_counts_black_constant_repeats_leakage_conflicts(messy):
    report = audit.audit(messy)
    assert json.loads(json.dumps(report)) == report  # the CLI prints it as JSON
    train, test = report["splits"]["train"], report["splits"]["public_test"]
    assert (train["images"], train["black"], train["constant"], train["repeats"]) == (8, 2, 3, 3)
    assert (test["images"], test["black"], test["constant"], test["repeats"]) == (4, 1, 1, 1)
    assert train["classes"] == {c: int(c in ("angry", "disgust", "fear", "neutral", "sad", "surprise")) + (c == "happy") * 2
                                for c in CLASSES}
    # leakage: b and the black image occur in train
    assert report["leakage"] == {"public_test": 2}
    # conflicts: black (angry, disgust, angry) and A (happy, happy, sad)
    assert report["conflicts"] == {"groups": 2, "images": 6}
    # duplicate groups: black x3, A x3, B x2, D x2
    assert report["duplicates"] == {"groups": 4, "images": 10}


def test_audit_table_has_a_row_per_split(messy):
    table = audit.audit_table(audit.audit(messy))
    assert list(table.index) == ["train", "public_test"]
    assert table.loc["public_test", "in_train"] == 2 and table.loc["train", "black"] == 2


def test_clean_defaults_drop_constant_and_leaked_train_images_only(messy):
    cleaned = audit.clean(messy)
    x, y = cleaned["train"]
    assert len(x) == 8 - 3 - 1  # three constant images and B
    assert not any((img == messy["train"][0][6]).all() for img in x)
    assert cleaned["public_test"] is messy["public_test"]
    assert len(messy["train"][0]) == 8  # the input is not modified


def test_clean_options(messy):
    keep_all = dict(drop_constant=False, drop_leaked=False)
    assert len(audit.clean(messy, **keep_all)["train"][0]) == 8
    assert len(audit.clean(messy, **keep_all, drop_repeats=True)["train"][0]) == 8 - 1 - 2
    # conflicting pixels: both black train images and all three copies of A go
    assert len(audit.clean(messy, **keep_all, drop_conflicting=True)["train"][0]) == 8 - 2 - 3
    assert audit.clean({"public_test": messy["public_test"]}) == {"public_test": messy["public_test"]}


# --------------------------------------------------------------------------- validation split


@pytest.fixture
def labelled() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(7), [40, 10, 40, 80, 50, 50, 40])
    x = rng.integers(0, 256, (len(y), 48, 48), dtype=np.uint8)
    x[1:30:3] = x[0]  # ten copies of one angry face
    return x, y


def _ids(part: np.ndarray) -> set[bytes]:
    return {img.tobytes() for img in part}


def test_split_validation_is_stratified_and_keeps_duplicates_on_one_side(labelled):
    x, y = labelled
    (xt, yt), (xv, yv) = audit.split_validation(x, y, fraction=0.2, seed=0)
    assert len(xt) + len(xv) == len(x)
    assert not _ids(xt) & _ids(xv)
    share = np.bincount(yv, minlength=7) / np.bincount(y, minlength=7)
    assert np.all(np.abs(share - 0.2) < 0.12), share
    assert 0.15 < len(xv) / len(x) < 0.25


def test_split_validation_is_seeded(labelled):
    a = audit.split_validation(*labelled, seed=3)[1][0]
    b = audit.split_validation(*labelled, seed=3)[1][0]
    c = audit.split_validation(*labelled, seed=4)[1][0]
    np.testing.assert_array_equal(a, b)
    assert _ids(a) != _ids(c)


def test_split_validation_rejects_a_bad_fraction(labelled):
    with pytest.raises(ValueError, match="fraction"):
        audit.split_validation(*labelled, fraction=1.5)


def test_training_splits_never_select_on_a_test_split(labelled, messy):
    x, y = labelled
    holdout = (x[:5], y[:5])
    for name in ("test", "private_test"):
        (xt, _), (xv, _) = audit.training_splits({"train": (x, y), name: holdout}, seed=0)
        assert len(xt) + len(xv) == len(x)  # validation comes out of train
    for name in ("public_test", "val"):
        train, val = audit.training_splits({"train": (x, y), name: holdout})
        assert val is holdout and train[0] is x
    train, val = audit.training_splits({"train": (x, y), "val": (x[:3], y[:3]), "public_test": holdout})
    assert len(val[0]) == 3  # an explicit val split wins over public_test
    with pytest.raises(DataError, match="no 'train' split"):
        audit.training_splits({"public_test": holdout})


# --------------------------------------------------------------------------- locate


@pytest.fixture
def no_kaggle(monkeypatch, tmp_path):
    """No Kaggle credentials anywhere (the developer's own ~/.kaggle included)."""
    for name in ("FER_DATA", "KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # importing it would fail loudly


def test_locate_prefers_fer_data(no_kaggle, monkeypatch, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "fer2013.zip").write_bytes(b"")
    target = tmp_path / "mine.csv"
    target.write_text("")
    monkeypatch.setenv("FER_DATA", str(target))
    assert sources.locate(raw_dir=raw) == target
    monkeypatch.setenv("FER_DATA", str(tmp_path / "typo.zip"))
    with pytest.raises(DataError, match="typo.zip does not exist"):
        sources.locate(raw_dir=raw)


def test_locate_finds_files_and_folders_in_raw(no_kaggle, tmp_path):
    raw = tmp_path / "raw"
    (raw / "fer2013" / "train").mkdir(parents=True)
    assert sources.locate(raw_dir=raw) == raw / "fer2013"
    (raw / "test").mkdir()
    assert sources.locate(raw_dir=raw) == raw
    (raw / "fer2013.csv").write_text("")
    assert sources.locate(raw_dir=raw) == raw / "fer2013.csv"
    (raw / "fer2013.zip").write_bytes(b"")
    assert sources.locate(raw_dir=raw) == raw / "fer2013.zip"


def test_locate_without_data_or_credentials_says_what_to_do(no_kaggle, tmp_path):
    with pytest.raises(DataError) as err:
        sources.locate(raw_dir=tmp_path / "raw")
    message = str(err.value)
    assert "FER_DATA" in message and str(tmp_path / "raw") in message and "KAGGLE" in message


def test_locate_downloads_from_kaggle_only_with_credentials(no_kaggle, monkeypatch, tmp_path):
    downloaded = tmp_path / "kaggle-cache" / "msambare" / "fer2013"
    (downloaded / "train").mkdir(parents=True)
    calls = []
    fake = types.SimpleNamespace(dataset_download=lambda handle: calls.append(handle) or str(downloaded))
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    raw = tmp_path / "raw"
    with pytest.raises(DataError):
        sources.locate(raw_dir=raw)
    assert calls == []  # no credentials: no network
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    with pytest.raises(DataError):
        sources.locate(raw_dir=raw, download_ok=False)
    found = sources.locate(raw_dir=raw)
    assert calls == ["msambare/fer2013"]
    assert found.resolve() == downloaded.resolve() and found.parent == raw
    assert sources.locate(raw_dir=raw) == found  # second time: found in raw, no download
    assert calls == ["msambare/fer2013"]


def test_failed_kaggle_download_is_a_data_error(no_kaggle, monkeypatch, tmp_path):
    def fail(handle):
        raise RuntimeError("403 Forbidden")

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=fail))
    monkeypatch.setenv("KAGGLE_API_TOKEN", "x")
    with pytest.raises(DataError, match="403 Forbidden"):
        sources.locate(raw_dir=tmp_path / "raw")


# --------------------------------------------------------------------------- CLI


def test_cli_data_prints_the_audit_table(source_files, capsys):
    from fer import cli

    assert cli.main(["data", str(source_files["zip"]), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert f"source: {source_files['zip']}" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in (["train"], ["private_test"])}
    assert rows["train"][0] == str(sum(TRAIN_PER_CLASS.values()))
    assert "exact duplicates: 0 groups" in out and "conflicting labels: 0 groups" in out


def test_cli_data_json(source_files, capsys):
    from fer import cli

    assert cli.main(["data", str(source_files["icml.gz"]), "--json", "--no-cache"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == str(source_files["icml.gz"])
    assert report["splits"]["train"]["classes"] == TRAIN_PER_CLASS
    assert report["leakage"] == {"public_test": 0, "private_test": 0}


def test_cli_data_error_is_one_line_and_exit_2(tmp_path, capsys):
    from fer import cli

    bad = tmp_path / "bad.csv"
    bad.write_text("")
    assert cli.main(["data", str(bad), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "empty file" in err and "Traceback" not in err


def test_no_warnings_on_a_clean_load(source_files):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load(source_files["zip"], cache=False)
