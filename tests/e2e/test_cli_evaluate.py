"""``python -m fer evaluate``: a generated labelled set through the real command, its outputs,
and one-line errors (exit status 2, no traceback) for bad sources."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from fer import cli
from fer.config import PROJECT_DIR, SHARED_DIR


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory):
    """The astronaut (smiling) under two spellings of happy, a face-less photo, a contempt
    photo (left out), an unreadable file, a CSV row without a file."""
    root = tmp_path_factory.mktemp("set")
    astronaut = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    for rel, image in [("happiness/astronaut.png", astronaut), ("Happy/small.jpg", cv2.resize(astronaut, (300, 300))),
                       ("sadness/wall.png", np.full((240, 320, 3), 140, np.uint8)), ("contempt/a.png", astronaut)]:
        (root / rel).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(root / rel), image)
    (root / "sadness" / "broken.jpg").write_bytes(b"\xff\xd8\xffgarbage")
    return root


def test_prints_mapping_detection_accuracy_and_missed_list(photo_set, capsys):
    assert cli.main(["evaluate", str(photo_set)]) == 0
    out = capsys.readouterr().out
    for line in ("happiness → happy (1)", "Happy → happy (1)", "sadness → sad (2)", "contempt → left out (1",
                 "images: 4, 1 unreadable", "sadness/broken.jpg: not an image OpenCV can read",
                 "faces found in 2 of 3 photos (66.7%); missed 1", "missed: sadness/wall.png",
                 "accuracy 1.000 [1.000, 1.000] (95 % bootstrap interval) over 2 faces",
                 "end-to-end accuracy 0.667", "confusion (rows: true class)", "images/s"):
        assert line in out, line


def test_report_csv_and_json(photo_set, tmp_path, capsys):
    rep = tmp_path / "rep"
    argv = ["evaluate", str(photo_set), "--report", str(rep), "--csv", str(tmp_path / "p.csv"), "--json"]
    assert cli.main(argv) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["images"], s["faces_found"], s["missed_images"]) == (4, 2, ["sadness/wall.png"])
    assert s["mapping"]["contempt"] is None and s["left_out"] == {"contempt": 1}
    assert {p.name for p in rep.iterdir()} >= {"index.html", "confusion.png", "predictions.csv", "summary.json"}
    assert "sadness/wall.png" in (rep / "index.html").read_text()
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("image,given,label,status,faces,box,predicted")


def test_crops_mode_and_a_csv_source(photo_set, tmp_path, capsys):
    (tmp_path / "l.csv").write_text(f"path,label\n{photo_set}/happiness/astronaut.png,happy\nnot/there.png,sad\n")
    assert cli.main(["evaluate", str(tmp_path / "l.csv"), "--mode", "crops"]) == 0
    out = capsys.readouterr().out
    assert "skipped l.csv line 3: no such file not/there.png" in out
    assert "mode crops: each image is a face crop" in out and "over 1 faces" in out


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "{tmp}/nothing"], "no such file or folder"),
    (["evaluate", "{tmp}"], "no images found"),
    (["evaluate", "{set}", "--map", "1=smug"], "'smug' is not one of"),
    (["evaluate", "{set}", "--limit", "0"], "--limit must be at least 1"),
])
def test_bad_input_is_one_line_and_status_2(photo_set, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, set=photo_set) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_no_face_anywhere_exits_1_and_says_so(tmp_path, capsys):
    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "wall.png"), np.full((100, 100, 3), 70, np.uint8))
    assert cli.main(["evaluate", str(tmp_path)]) == 1
    assert "nothing was scored" in capsys.readouterr().out


def test_the_real_command_on_an_empty_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fer", "evaluate", str(tmp_path)], cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


@pytest.mark.skipif(not (SHARED_DIR / "data" / "fer2013_sample.csv").exists(), reason="needs ../shared")
def test_fer2013_csv_evaluates_its_public_test_as_crops(capsys):
    assert cli.main(["evaluate", str(SHARED_DIR / "data" / "fer2013_sample.csv"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["kind"], s["split"], s["mode"], s["images"], s["faces_found"]) == ("fer2013", "public_test", "crops", 210, 210)
    assert s["counts"] == dict.fromkeys(s["counts"], 30)
    assert 0.45 < s["accuracy"] < 0.95  # the shipped model is about 70 % on PublicTest; 210 faces vary


def test_robustness_of_the_scored_faces(photo_set, tmp_path, capsys):
    from fer.evaluation.robustness import PERTURBATIONS

    assert cli.main(["evaluate", str(photo_set), "--robustness", "--report", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "accuracy (%) under changes to the face crops; unchanged: 100.0 [100.0, 100.0] over 2 faces" in out
    lines = out[out.index("under changes"):].splitlines()[1:]
    assert [ln.split()[0] for ln in lines] == list(PERTURBATIONS)
    assert (tmp_path / "r" / "robustness.png").stat().st_size > 10_000
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert list(s["robustness"]["perturbations"]) == list(PERTURBATIONS) and s["robustness"]["images"] == 2
    assert "robustness.png" in (tmp_path / "r" / "index.html").read_text()
