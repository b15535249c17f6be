"""``fer.data.labelled``: reading labelled sets (class folders, zips, path,label CSVs, FER2013) and
mapping their class names onto ``fer.CLASSES``, with counted skips and clear errors."""

from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pytest

from fer.config import CLASSES
from fer.data import DataError, labelled


@pytest.fixture(autouse=True)
def _no_project_cache(tmp_path, monkeypatch):
    """FER2013 sources are cached by fer.data.load: into the test's folder, not data/processed."""
    monkeypatch.setattr("fer.data.fer2013.PROCESSED_DIR", tmp_path / "cache")


def _png(path, value=100, size=(60, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), value, np.uint8))
    return path


@pytest.fixture
def folders(tmp_path):
    """Class folders spelt as public sets spell them, plus things that are not photos of a class."""
    root = tmp_path / "photos"
    for rel in ["Happiness/a.jpg", "Happiness/sub/b.png", "01_anger/c.png", "surprised/d.png",
                "contempt/e.png", "contempt/f.png", "SA/g.png"]:
        _png(root / rel)
    (root / "Happiness" / "notes.txt").write_text("not a photo")
    _png(root / ".hidden" / "x.png")
    _png(root / "loose.png")
    return root


@pytest.mark.parametrize("given, expected", [
    ("happiness", "happy"), ("Anger", "angry"), ("SADNESS", "sad"), ("surprised", "surprise"),
    ("neutrality", "neutral"), ("fearful", "fear"), ("disgusted", "disgust"), ("1_happy", "happy"),
    ("03-Fear", "fear"), ("HA", "happy"), ("su", "surprise"), ("contempt", None), ("7", None), ("", None)])
def test_class_names_map_by_synonym_prefix_and_code(given, expected):
    assert labelled.to_class(given) == expected


def test_presets_and_explicit_mappings():
    raf = labelled.parse_mapping("rafdb")
    assert [raf[str(i)] for i in range(1, 8)] == ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
    assert labelled.parse_mapping("affectnet")["7"] is None  # contempt
    assert labelled.parse_mapping("1=Happiness, 2=-,x=sad") == {"1": "happy", "2": None, "x": "sad"}
    assert labelled.to_class("2", {"2": "fear"}) == "fear"
    for bad in ("1=smug", "nonsense", "=happy"):
        with pytest.raises(DataError, match="mapping"):
            labelled.parse_mapping(bad)


def test_class_folders_give_exact_counts_mapping_left_out_and_skips(folders):
    s = labelled.open_set(folders)
    assert s.kind == "folders" and not s.crops
    assert sorted(i.name for i in s.items) == ["01_anger/c.png", "Happiness/a.jpg", "Happiness/sub/b.png",
                                               "SA/g.png", "surprised/d.png"]
    assert s.counts() == {"angry": 1, "disgust": 0, "fear": 0, "happy": 2, "neutral": 0, "sad": 1, "surprise": 1}
    assert s.mapping == {"01_anger": "angry", "Happiness": "happy", "SA": "sad", "contempt": None, "surprised": "surprise"}
    assert s.left_out == {"contempt": 2}
    assert s.skipped == [("loose.png", "not in a class folder")]
    item = next(i for i in s.items if i.name == "Happiness/a.jpg")
    assert (item.label, item.given) == (CLASSES.index("happy"), "Happiness")
    assert item.image().shape == (40, 60, 3) and item.image(gray=True).shape == (40, 60)
    lines = labelled.mapping_lines(s)
    assert "Happiness → happy (2)" in lines and "contempt → left out (2; not a class of this model)" in lines


def test_a_zip_with_a_wrapper_folder_reads_like_the_folder(folders, tmp_path):
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folders.rglob("*")):
            if f.is_file() and f.name != "loose.png":
                zf.write(f, "myset/" + f.relative_to(folders).as_posix())
    s = labelled.open_set(archive)
    assert s.kind == "zip" and s.counts() == labelled.open_set(folders).counts()
    assert s.left_out == {"contempt": 2} and s.skipped == []
    item = next(i for i in s.items if i.name.endswith("a.jpg"))
    assert item.image().shape == (40, 60, 3)


def test_csv_with_header_relative_paths_and_bad_rows(tmp_path):
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png")
    (tmp_path / "labels.csv").write_text(
        "file,emotion\nimg/a.png,Happiness\nimg/b.png,anger\nimg/missing.png,sad\nimg/a.png\n,happy\n"
        f"{tmp_path / 'img' / 'b.png'},contempt\n\nimg/b.png,neutral\n")
    s = labelled.open_set(tmp_path / "labels.csv")
    assert s.kind == "csv"
    assert [(i.name, CLASSES[i.label]) for i in s.items] == [("img/a.png", "happy"), ("img/b.png", "angry"),
                                                             ("img/b.png", "neutral")]
    assert s.left_out == {"contempt": 1}
    assert s.skipped == [("labels.csv line 4", "no such file img/missing.png"),
                         ("labels.csv line 5", "expected a path and a label"),
                         ("labels.csv line 6", "expected a path and a label")]


def test_csv_without_header(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("a.png,surprised\n")
    s = labelled.open_set(tmp_path / "l.csv")
    assert [CLASSES[i.label] for i in s.items] == ["surprise"] and s.skipped == []


def test_numbered_folders_need_a_mapping(tmp_path):
    for k in (1, 4, 7):
        _png(tmp_path / "raf" / str(k) / "x.png")
    with pytest.raises(DataError, match="--map"):
        labelled.open_set(tmp_path / "raf")
    s = labelled.open_set(tmp_path / "raf", mapping="rafdb")
    assert s.counts()["surprise"] == s.counts()["happy"] == s.counts()["neutral"] == 1


def test_fer2013_challenge_csv_is_its_public_test(tmp_path):
    rows = ["emotion,pixels,Usage"]
    for i, usage in enumerate(["Training"] * 7 + ["PublicTest"] * 3):
        rows.append(f"{i % 7}," + " ".join(["7"] * 48 * 48) + f",{usage}")
    (tmp_path / "fer.csv").write_text("\n".join(rows) + "\n")
    s = labelled.open_set(tmp_path / "fer.csv")
    assert (s.kind, s.split, s.crops, len(s.items)) == ("fer2013", "public_test", True, 3)
    assert s.items[0].image(gray=True).shape == (48, 48)
    assert len(labelled.open_set(tmp_path / "fer.csv", split="train").items) == 7
    with pytest.raises(DataError, match="no split 'private_test'"):
        labelled.open_set(tmp_path / "fer.csv", split="private_test")


def test_sample_is_seeded_and_keeps_the_mapping(folders):
    s = labelled.open_set(folders)
    a, b = s.sample(3, seed=1), s.sample(3, seed=1)
    assert [i.name for i in a.items] == [i.name for i in b.items] and len(a.items) == 3
    assert a.mapping == s.mapping and s.sample(None) is s and s.sample(99) is s


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "absent", "no such file or folder"),
    (lambda p: p.mkdir() or p, "no images found"),
    (lambda p: (_png(p / "a.png"), _png(p / "b.png")) and p, "no class folders"),
    (lambda p: _png(p / "contempt" / "a.png").parent.parent, "none of its classes"),
    (lambda p: (p.mkdir(), (p / "x.txt").write_text("x")) and p / "x.txt", "not a folder, .zip or .csv"),
    (lambda p: (p.mkdir(), (p / "x.csv").write_text("")) and p / "x.csv", "is empty"),
    (lambda p: (p.mkdir(), (p / "x.csv").write_text("a.png,happy\n")) and p / "x.csv", "no usable images"),
    (lambda p: (p.mkdir(), (p / "x.zip").write_bytes(b"PK junk")) and p / "x.zip", "not a readable zip"),
])
def test_bad_sources_raise_one_clear_error(tmp_path, make, match):
    with pytest.raises(DataError, match=match):
        labelled.open_set(make(tmp_path / "src"))


def test_an_unreadable_image_raises_value_error_when_read(tmp_path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (tmp_path / "happy" / "empty.png").write_bytes(b"")
    s = labelled.open_set(tmp_path)
    errors = []
    for item in s.items:
        with pytest.raises(ValueError) as err:
            item.image()
        errors.append(str(err.value))
    assert sorted(errors) == ["empty file", "not an image OpenCV can read"]


def test_one_class_with_nested_folders_is_not_a_wrapper(tmp_path):
    _png(tmp_path / "happy" / "2024" / "a.png")
    _png(tmp_path / "happy" / "2025" / "b.png")
    s = labelled.open_set(tmp_path)
    assert s.counts()["happy"] == 2 and s.mapping == {"happy": "happy"}


def test_split_folders_of_ordinary_photos_point_to_one_split(tmp_path):
    _png(tmp_path / "mine" / "train" / "happy" / "a.png", size=(200, 150))
    _png(tmp_path / "mine" / "test" / "happy" / "b.png", size=(200, 150))
    with pytest.raises(DataError, match=r"of 200x150 images, not FER2013's 48x48 faces: evaluate one split"):
        labelled.open_set(tmp_path / "mine")
    assert labelled.open_set(tmp_path / "mine" / "test").counts()["happy"] == 1
    archive = tmp_path / "mine.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "mine" / "test" / "happy" / "b.png", "test/happy/b.png")
    with pytest.raises(DataError, match="not FER2013's 48x48 faces"):
        labelled.open_set(archive)


def test_fer2013_folders_are_its_held_out_split(tmp_path):
    for split, n in (("train", 7), ("test", 2)):
        for k in range(n):
            path = tmp_path / "fer" / split / CLASSES[k] / f"{'Training' if split == 'train' else 'PublicTest'}_{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.full((48, 48), 9 * k, np.uint8))
    s = labelled.open_set(tmp_path / "fer")
    assert (s.kind, s.split, len(s.items), s.crops) == ("fer2013", "public_test", 2, True)
