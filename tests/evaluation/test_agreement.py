"""Agreement with people: ``fer.evaluation.metrics.agreement`` on a fixed toy set (exact figures),
the card's agreement fields, and ``python -m fer evaluate``'s FER+ lines on a FER2013 zip with votes."""

from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pytest

from fer.config import CLASSES
from fer.data import ferplus, labelled
from fer.evaluation import evaluate, metrics

C = CLASSES.index


def votes_row(**named) -> list[int]:
    return [named.get(c, 0) for c in ferplus.VOTE_COLUMNS]


# six faces: four with a majority among the 7 classes (two of them >= 8 of 10), a tie, a contempt majority
VOTES = np.array([votes_row(happiness=8, neutral=2), votes_row(happiness=6, surprise=4), votes_row(neutral=7, sadness=3),
                  votes_row(sadness=9, anger=1), votes_row(fear=5, surprise=5), votes_row(contempt=7, neutral=3)])
PRED = np.array([C("happy"), C("neutral"), C("neutral"), C("sad"), C("fear"), C("neutral")])
LABELS = np.array([C("happy"), C("happy"), C("sad"), C("angry"), C("fear"), C("disgust")])


def test_agreement_on_a_fixed_toy_set():
    a = metrics.agreement(VOTES, PRED, LABELS, n_boot=200)
    assert (a["images"], a["strong_images"]) == (4, 2)
    assert a["agreement"] == 0.75 and a["agreement_strong"] == 1.0  # the tie and the contempt face do not count
    lo, hi = a["agreement_ci"]
    assert 0.0 <= lo <= 0.75 <= hi <= 1.0
    assert a["per_class"]["happy"] == {"images": 2, "agreement": 0.5} and a["per_class"]["sad"]["agreement"] == 1.0
    assert a["per_class"]["angry"]["images"] == 0
    assert (a["labels_agreement"], a["labels_agreement_strong"]) == (0.5, 0.5)  # FER2013's labels: faces 0 and 1


def test_agreement_refuses_mismatched_or_majority_free_input():
    with pytest.raises(ValueError, match="6 vote rows but 5 predictions"):
        metrics.agreement(VOTES, PRED[:5])
    with pytest.raises(ValueError, match="no face has a FER\\+ majority"):
        metrics.agreement(VOTES[4:], PRED[4:])


def test_card_fields_name_each_view_and_the_single_view_carries_the_context():
    single = metrics.agreement_fields(VOTES, PRED, LABELS, "single")
    assert single["agreement_single"] == 0.75 and single["agreement_strong_single"] == 1.0
    assert (single["agreement_images"], single["labels_agreement"]) == (4, 0.5)
    assert set(metrics.agreement_fields(VOTES, PRED, LABELS, "tencrop")) == {"agreement_tencrop", "agreement_strong_tencrop"}


class ByBrightness:
    """Predicts class ``mean brightness // 30`` (a known rule), as in test_evaluate."""

    def predict_proba(self, faces, tta=None):
        k = np.clip(np.asarray(faces).reshape(len(faces), -1).mean(1) // 30, 0, 6).astype(int)
        return np.eye(7, dtype=np.float32)[k]


def test_evaluate_on_fer2013_reports_agreement_beside_accuracy(tmp_path, monkeypatch):
    faces = [(f"train/{c}/Training_{i}.png", 30 * i + 5) for i, c in enumerate(CLASSES)]
    faces += [("test/happy/PublicTest_1.png", 30 * C("happy") + 5), ("test/sad/PublicTest_2.png", 30 * C("neutral") + 5),
              ("test/fear/PublicTest_3.png", 30 * C("fear") + 5)]
    path = tmp_path / "fer.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, grey in faces:
            zf.writestr(name, cv2.imencode(".png", np.full((48, 48), grey, np.uint8))[1].tobytes())
    votes = tmp_path / "votes.csv"
    votes.write_text("file,ferplus_image," + ",".join(ferplus.VOTE_COLUMNS) + "\n" + "\n".join(
        f"{name},f.png," + ",".join(map(str, v)) for name, v in [
            ("test/happy/PublicTest_1.png", votes_row(happiness=9, neutral=1)),
            ("test/sad/PublicTest_2.png", votes_row(neutral=6, sadness=4)),  # the label is wrong, the model right
            ("test/fear/PublicTest_3.png", votes_row(surprise=6, fear=4))]) + "\n")
    monkeypatch.setenv("FER_VOTES", str(votes))
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    lset = labelled.open_set(path)
    ev = evaluate.run(lset, ByBrightness(), mode="crops", jobs=1, progress=False)
    s = evaluate.summarise(ev, n_boot=50)
    assert s["accuracy"] == pytest.approx(2 / 3)  # FER2013's labels: PublicTest_2 counts wrong
    a = s["ferplus"]
    assert (a["images"], a["agreement"], a["labels_agreement"]) == (3, pytest.approx(2 / 3), pytest.approx(1 / 3))
    text = evaluate.text(s)
    assert "agreement with the FER+ majority 0.667" in text and "FER2013's own labels agree with the majority on 0.333" in text
