"""``fer.data.ferplus``: both FER+ vote files read on small generated files (bad rows, votes that do
not sum to 10, a missing file), joined to the images ``fer.data.load`` returns, the majority rule
and the training targets; and, when ``../shared`` is present, the figures of the real votes."""

from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pytest

from fer import data
from fer.config import CLASSES, SHARED_DIR
from fer.data import DataError, ferplus

HEADER = "file,fer2013_label,ferplus_image,match_rms," + ",".join(ferplus.VOTE_COLUMNS)
NEW_HEADER = "Usage,Image name," + ",".join(ferplus.VOTE_COLUMNS)
SHARED_VOTES = SHARED_DIR / "data" / "ferplus_votes.csv"
SHARED_ZIP = SHARED_DIR / "data" / "fer2013.zip"


def votes_row(**named) -> list[int]:
    """10 votes in FER+'s column order from ``happiness=6, neutral=4``-style counts."""
    return [named.get(c, 0) for c in ferplus.VOTE_COLUMNS]


def write(path, header, rows):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


@pytest.fixture
def fer_zip(tmp_path):
    """Nine faces in the Kaggle layout: one train face per class (``Training_<class index>``), two PublicTest."""
    path = tmp_path / "fer.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate([*(f"train/{c}/Training_{i}.png" for i, c in enumerate(CLASSES)),
                                  "test/sad/PublicTest_8.png", "test/happy/PublicTest_9.png"]):
            zf.writestr(f"fer2013/{name}", cv2.imencode(".png", np.full((48, 48), 25 * i, np.uint8))[1].tobytes())
    return path


def test_the_per_file_csv_is_read_with_dropped_and_short_rows(tmp_path):
    path = write(tmp_path / "votes.csv", HEADER, [
        ["train/happy/Training_1.png", "happy", "fer1.png", 1.2, *votes_row(happiness=9, neutral=1)],
        ["train/angry/Training_2.png", "angry", "", 30.0, *[""] * 10],  # FER+ dropped it: no votes
        ["Test/Sad/PublicTest_3.png", "sad", "fer3.png", 1.0, *votes_row(sadness=5, neutral=4)],  # sums to 9
    ])
    read = ferplus.read(path)
    assert read.kind == "files" and (read.rows, read.dropped, read.short) == (3, 1, 1)
    assert sorted(read.votes) == ["test/sad/publictest_3.png", "train/happy/training_1.png"]
    assert read.votes["train/happy/training_1.png"].tolist() == votes_row(happiness=9, neutral=1)


@pytest.mark.parametrize("votes, problem", [
    (votes_row(happiness=11), "sum to 11, not 1-10"),
    (votes_row(), "sum to 0"),
    (["x", *votes_row()[1:]], "not whole numbers"),
    ([-1, *votes_row(happiness=9)[1:]], "not whole numbers"),
])
def test_a_bad_vote_row_names_its_line_or_is_skipped_when_asked(tmp_path, votes, problem):
    path = write(tmp_path / "votes.csv", HEADER, [
        ["train/happy/Training_1.png", "happy", "fer1.png", 1.2, *votes_row(happiness=10)],
        ["train/angry/Training_2.png", "angry", "fer2.png", 1.2, *votes],
    ])
    with pytest.raises(DataError, match=f"line 3: votes .*{problem}"):
        ferplus.read(path)
    with pytest.warns(UserWarning, match="skipped 1 malformed vote row"):
        read = ferplus.read(path, skip_bad=True)
    assert list(read.votes) == ["train/happy/training_1.png"]


def test_fer2013new_is_read_by_row_and_a_wrong_usage_or_header_is_refused(tmp_path):
    path = write(tmp_path / "fer2013new.csv", NEW_HEADER, [
        ["Training", "fer0000000.png", *votes_row(neutral=4, happiness=6)],
        ["Training", "", *votes_row(NF=10)],  # an image FER+ dropped
        ["PublicTest", "fer0000002.png", *votes_row(anger=8, disgust=2)],
    ])
    read = ferplus.read(path)
    assert read.kind == "rows" and sorted(read.votes) == ["row:0", "row:2"] and read.dropped == 1
    assert read.usage == {"row:0": "train", "row:1": "train", "row:2": "public_test"}
    write(path, NEW_HEADER, [["Validation", "fer0.png", *votes_row(neutral=10)]])
    with pytest.raises(DataError, match="line 2: Usage 'Validation'"):
        ferplus.read(path)
    write(path, "Usage,Image name,neutral,happiness", [["Training", "fer0.png", 5, 5]])
    with pytest.raises(DataError, match="neither FER\\+'s fer2013new.csv"):
        ferplus.read(path)


def test_a_missing_vote_file_is_an_error_when_named_and_an_absence_otherwise(tmp_path, monkeypatch, capsys, fer_zip):
    with pytest.raises(DataError, match="no such vote file"):
        ferplus.read(tmp_path / "nope.csv")
    monkeypatch.setenv("FER_VOTES", str(tmp_path / "nope.csv"))
    assert data.votes(fer_zip) is None and data.votes(fer_zip) is None
    assert capsys.readouterr().err.count("FER+ figures left out: $FER_VOTES=") == 1  # said once, on stderr
    monkeypatch.delenv("FER_VOTES")
    assert ferplus.locate(raw_dir=tmp_path, shared_dir=tmp_path / "none")[0] is None
    (tmp_path / "fer2013new.csv").write_text(NEW_HEADER + "\n")
    assert ferplus.locate(raw_dir=tmp_path, shared_dir=tmp_path / "none") == (tmp_path / "fer2013new.csv", "")


def test_votes_join_the_zip_images_in_load_order(tmp_path, fer_zip):
    path = write(tmp_path / "votes.csv", HEADER, [
        ["test/happy/PublicTest_9.png", "happy", "f9.png", 1, *votes_row(happiness=7, surprise=3)],
        ["train/happy/Training_3.png", "happy", "f3.png", 1, *votes_row(happiness=10)],
        ["test/sad/PublicTest_8.png", "sad", "f8.png", 1, *votes_row(sadness=2, neutral=8)],
    ])
    splits = data.load(fer_zip, cache_dir=tmp_path / "cache")
    joined = data.votes(fer_zip, path)
    names = data.file_names(fer_zip, cache_dir=tmp_path / "cache")  # from the cache written by load
    assert names["train"].tolist()[2:4] == ["fer2013/train/fear/Training_2.png", "fer2013/train/happy/Training_3.png"]
    assert {s: v.shape for s, v in joined.items()} == {s: (len(y), 10) for s, (_, y) in splits.items()}
    assert ferplus.majority(joined["train"]).tolist() == [-1, -1, -1, CLASSES.index("happy"), -1, -1, -1]  # others: no votes
    assert ferplus.majority(joined["public_test"]).tolist() == [CLASSES.index("neutral"), CLASSES.index("happy")]
    report = ferplus.audit(splits, joined)["public_test"]
    assert (report["with_votes"], report["majority_7"], report["strong"], report["label_agrees"]) == (2, 2, 1, 0.5)


def test_fer2013new_joins_a_challenge_csv_by_row_and_refuses_another_csv(tmp_path, capsys):
    pixels = " ".join(["7"] * 48 * 48)
    csv_path = tmp_path / "fer2013.csv"
    csv_path.write_text("emotion,pixels,Usage\n" + "\n".join(f"{e},{pixels},{u}" for e, u in
                        [(3, "Training"), (0, "Training"), (6, "PublicTest")]) + "\n")
    new = write(tmp_path / "fer2013new.csv", NEW_HEADER, [
        ["Training", "fer0.png", *votes_row(happiness=10)],
        ["Training", "fer1.png", *votes_row(anger=3, neutral=7)],
        ["PublicTest", "fer2.png", *votes_row(neutral=6, contempt=4)],
    ])
    joined = data.votes(csv_path, new)
    assert ferplus.majority(joined["train"]).tolist() == [CLASSES.index("happy"), CLASSES.index("neutral")]
    assert ferplus.majority(joined["public_test"]).tolist() == [CLASSES.index("neutral")]
    write(new, NEW_HEADER, [["Training", "f.png", *votes_row(happiness=10)]] * 2 + [["Training", "f.png", *votes_row(happiness=10)]])
    assert data.votes(csv_path, new) is None  # row 2 is PublicTest in the CSV, Training in the votes
    assert "have another Usage there" in capsys.readouterr().err
    per_file = write(tmp_path / "votes.csv", HEADER, [["train/happy/Training_1.png", "happy", "f.png", 1, *votes_row(happiness=10)]])
    with pytest.raises(DataError, match="this FER2013 is a challenge CSV"):
        ferplus.join(data.file_names(csv_path), ferplus.read(per_file))


@pytest.mark.parametrize("named, majority, strong", [
    ({"happiness": 6, "neutral": 4}, "happy", False),
    ({"happiness": 8, "neutral": 2}, "happy", True),
    ({"happiness": 5, "neutral": 5}, None, False),  # a tie is no majority
    ({"surprise": 5, "fear": 4, "unknown": 1}, None, False),  # 5 of 10 is not more than half
    ({"contempt": 7, "neutral": 3}, None, False),  # not one of our classes
    ({"unknown": 6, "sadness": 4}, None, False),
    ({"NF": 10}, None, False),
    ({"anger": 6, "disgust": 3}, "angry", False),  # 9 votes cast: still more than 5
])
def test_the_majority_rule(named, majority, strong):
    v = np.array([votes_row(**named)])
    assert ferplus.majority(v).tolist() == [CLASSES.index(majority) if majority else -1]
    assert ferplus.strong(v).tolist() == [strong]


def test_targets_drop_contempt_unknown_and_not_face_votes_and_faces_without_votes():
    v = np.array([votes_row(happiness=6, neutral=2, contempt=2), votes_row(NF=6, happiness=4),
                  votes_row(), votes_row(unknown=5, sadness=5)])
    targets, keep = ferplus.targets(v)
    assert keep.tolist() == [True, False, False, True]
    assert targets[0, CLASSES.index("happy")] == pytest.approx(0.75) and targets[0].sum() == pytest.approx(1)
    assert targets[3, CLASSES.index("sad")] == 1.0 and not targets[1].any()
    with pytest.raises(ValueError, match=r"votes must be \(N, 10\)"):
        ferplus.targets(np.zeros((2, 7)))


@pytest.mark.skipif(not (SHARED_VOTES.exists() and SHARED_ZIP.exists()), reason="needs ../shared/data")
def test_the_shared_votes_give_the_published_figures():
    splits = data.load(SHARED_ZIP)
    report = ferplus.audit(splits, data.votes(SHARED_ZIP, SHARED_VOTES))
    assert (report["public_test"]["majority_7"], round(100 * report["public_test"]["label_agrees"], 1)) == (2854, 69.7)
    both = sum(r["majority_7"] for r in report.values())
    agree = sum(r["majority_7"] * r["label_agrees"] for r in report.values())
    assert (both, round(100 * agree / both, 1)) == (24583, 71.7)  # ../shared/data/README.md's figures


def test_the_data_command_prints_the_ferplus_audit(tmp_path, fer_zip, capsys, monkeypatch):
    from fer import cli

    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    votes = write(tmp_path / "votes.csv", HEADER, [
        ["test/happy/PublicTest_9.png", "happy", "f9.png", 1, *votes_row(happiness=7, surprise=3)],
        ["test/sad/PublicTest_8.png", "sad", "f8.png", 1, *votes_row(sadness=2, neutral=8)]])
    assert cli.main(["data", str(fer_zip), "--votes", str(votes)]) == 0
    out = capsys.readouterr().out
    assert "public_test: 2 of 2 images have votes; 2 have a majority (1 strong)" in out
    assert "FER2013's label is the majority on 50.0% of them" in out
