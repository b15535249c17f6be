"""``fer.evaluation.evaluate``: a labelled set through detection, cropping and a classifier, and the numbers
and report made from it. A fake classifier makes the metrics exactly predictable; the real
detector and the bundled model run on ``skimage``'s astronaut photo."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from fer.config import CLASSES
from fer.data import labelled
from fer.evaluation import evaluate
from fer.reporting import evaluation_page


class ByBrightness:
    """Predicts the class whose index is the crop's mean brightness // 30 (a known rule)."""

    def predict_proba(self, faces, tta=None):
        k = np.clip(np.asarray(faces).reshape(len(faces), -1).mean(1) // 30, 0, 6).astype(int)
        p = np.full((len(faces), 7), 0.02, np.float32)
        p[np.arange(len(faces)), k] = 0.88
        return p


@pytest.fixture(scope="module")
def astronaut():
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def crop_set(tmp_path_factory):
    """Ten 64x80 'crops' in class folders; brightness 30*k+5 predicts class k, so 8 of 10 are right."""
    root = tmp_path_factory.mktemp("crops")
    plan = [("angry", 0), ("angry", 0), ("fear", 2), ("fear", 2), ("happy", 3), ("happy", 3), ("happy", 3),
            ("sadness", 5), ("sadness", 4), ("surprised", 2)]  # the last two are wrong: sad→neutral, surprise→fear
    for n, (folder, k) in enumerate(plan):
        (root / folder).mkdir(exist_ok=True)
        cv2.imwrite(str(root / folder / f"{n}.png"), np.full((80, 64), 30 * k + 5, np.uint8))
    return root


def test_crops_mode_scores_every_image_with_exact_metrics(crop_set):
    ev = evaluate.run(labelled.open_set(crop_set), ByBrightness(), mode="crops", jobs=2, progress=False)
    s = evaluate.summarise(ev, n_boot=200)
    assert (s["images"], s["faces_found"], s["missed"], s["unreadable"]) == (10, 10, 0, 0)
    assert s["accuracy"] == pytest.approx(0.8) and s["end_to_end_accuracy"] == pytest.approx(0.8)
    lo, hi = s["accuracy_ci"]
    assert lo < 0.8 < hi and hi - lo > 0.2  # ten images: a wide interval
    assert s["per_class"]["happy"] == {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 3}
    assert s["per_class"]["sad"]["recall"] == 0.5 and s["per_class"]["fear"]["precision"] == pytest.approx(2 / 3)
    cm = np.array(s["confusion"])
    assert cm.sum() == 10 and cm[CLASSES.index("surprise"), CLASSES.index("fear")] == 1
    assert [ev.table["image"][i] for _, i, _ in ev.mistakes] == ["sadness/8.png", "surprised/9.png"]
    assert ev.mistakes[0][2].shape == (48, 48)
    assert "sadness → sad (2)" in s["classes"]


def test_face_crop_takes_the_centre_square():
    image = np.zeros((80, 64), np.uint8)
    image[8:72] = 200  # the centre 64x64 square is bright, the top and bottom 8 rows dark
    out = evaluate.face_crop(image)
    assert out.shape == (48, 48) and out.min() == 200
    assert evaluate.face_crop(np.full((48, 48), 3, np.uint8)).max() == 3


def test_pipeline_finds_the_face_lists_the_missed_and_counts_the_unreadable(tmp_path, astronaut):
    for rel, image in [("Happiness/astronaut.png", astronaut), ("Happiness/small.jpg", cv2.resize(astronaut, (256, 256))),
                       ("sad/noise.png", np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)),
                       ("neutral/grey.png", np.full((120, 120, 3), 128, np.uint8)), ("contempt/astronaut.png", astronaut)]:
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), image)
    (tmp_path / "anger").mkdir()
    (tmp_path / "anger" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    ev = evaluate.run(labelled.open_set(tmp_path), ByBrightness(), progress=False, keep_crops=True)
    s = evaluate.summarise(ev, n_boot=100)
    assert (s["images"], s["unreadable"], s["faces_found"], s["missed"]) == (5, 1, 2, 2)
    assert s["detection_rate"] == pytest.approx(0.5)
    assert sorted(s["missed_images"]) == ["neutral/grey.png", "sad/noise.png"]
    assert s["unreadable_images"] == [["anger/broken.jpg", "unreadable: not an image OpenCV can read"]]
    assert s["left_out"] == {"contempt": 1}
    row = ev.table.set_index("image").loc["Happiness/astronaut.png"]
    x, y, w, h = map(int, row["box"].split())
    assert 150 < x + w / 2 < 260 and 50 < y + h / 2 < 160  # her face, upper middle of the 512x512 photo
    assert row["faces"] == 1 and row["status"] == "ok"
    assert ev.crops.shape == (2, 48, 48)
    # end to end: the misses count as wrong, over the 4 readable photos
    right = int(ev.table["correct"].eq(True).sum())
    assert s["end_to_end_accuracy"] == pytest.approx(right / 4)
    text = evaluate.text(s)
    assert "faces found in 2 of 4 photos (50.0%)" in text and "missed: " in text and "contempt → left out" in text


def test_nothing_scored_is_said_plainly(tmp_path):
    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "grey.png"), np.full((100, 100, 3), 90, np.uint8))
    s = evaluate.summarise(evaluate.run(labelled.open_set(tmp_path), ByBrightness(), progress=False))
    assert s["accuracy"] is None and s["faces_found"] == 0 and s["end_to_end_accuracy"] == 0.0
    assert "nothing was scored" in evaluate.text(s)


def test_the_bundled_model_through_the_pipeline_matches_analyze(tmp_path, astronaut):
    import fer

    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "a.png"), astronaut)
    ev = evaluate.run(labelled.open_set(tmp_path), fer.inference.predict.default_classifier(), progress=False)
    row = ev.table.iloc[0]
    faces = fer.analyze(astronaut)
    assert row["predicted"] == faces[0]["label"] == "happy"
    assert [row[f"p_{c}"] for c in CLASSES] == pytest.approx([faces[0]["probs"][c] for c in CLASSES], abs=1e-5)


def test_report_writes_page_figures_csv_and_json(crop_set, tmp_path):
    ev = evaluate.run(labelled.open_set(crop_set), ByBrightness(), mode="crops", progress=False)
    s = evaluate.summarise(ev, n_boot=50)
    page = evaluation_page.write_report(ev, s, tmp_path / "rep")
    names = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert names == ["confusion.png", "index.html", "mistakes.png", "predictions.csv", "summary.json"]
    html = page.read_text()
    assert "80.0 %" in html and 'src="mistakes.png"' in html and 'src="confusion.png"' in html
    assert "<td>happy</td>" in html and "predictions.csv" in html
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["accuracy"] == pytest.approx(0.8)
    import pandas as pd

    table = pd.read_csv(tmp_path / "rep" / "predictions.csv")
    assert len(table) == 10 and set(table["status"]) == {"ok"} and table["correct"].sum() == 8


def test_a_file_listed_twice_with_equal_mistakes_keeps_both(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((48, 48), 95, np.uint8))  # predicted happy (95 // 30 = 3)
    (tmp_path / "l.csv").write_text("a.png,sad\na.png,angry\na.png,happy\n")
    ev = evaluate.run(labelled.open_set(tmp_path / "l.csv"), ByBrightness(), mode="crops", progress=False)
    assert [i for _, i, _ in ev.mistakes] == [0, 1]
    crops, titles = evaluation_page.mistake_gallery(ev)
    assert crops.shape == (2, 48, 48) and titles == ["a.png\ntrue sad\npred happy 88%", "a.png\ntrue angry\npred happy 88%"]
