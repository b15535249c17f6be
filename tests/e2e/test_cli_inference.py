"""``python -m fer predict`` and ``python -m fer annotate``: output, and one-line errors for
bad input (no traceback, exit status 2). Runs in-process through ``fer.cli.main``; one test
runs the real ``python -m fer`` to check the error path end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from fer import cli
from fer.config import CLASSES, PROJECT_DIR, SHARED_DIR
from fer.inference.overlay import ALPHA

MEDIA = SHARED_DIR / "media"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def photo(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    cv2.imwrite(str(path), astronaut)
    return path


def _clip(path, frames) -> str:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut):
    """12 frames of the astronaut's face drifting right by 4 px a frame."""
    base = cv2.resize(astronaut, (256, 256))
    frames = [np.roll(base, 4 * i, axis=1) for i in range(12)]
    return _clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames)


def test_predict_prints_a_table(photo, capsys):
    assert cli.main(["predict", str(photo)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["image", "face", "box"] and len(out) == 2
    row = out[1].split()
    assert str(photo).endswith(row[0]) and row[-8] == "happy"  # her smile (the path is cut to 30 characters)
    probs = [float(p) for p in row[-7:]]
    assert sum(probs) == pytest.approx(1, abs=0.01) and max(probs) == probs[CLASSES.index("happy")]


def test_predict_json_is_analyze_per_image(photo, capsys):
    assert cli.main(["predict", str(photo), str(photo), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in result] == [str(photo)] * 2
    (face,) = result[0]["faces"]
    assert set(face) == {"box", "label", "probs"} and list(face["probs"]) == list(CLASSES)


@pytest.mark.shared
@pytest.mark.skipif(not (MEDIA / "happy.jpg").exists(), reason="../shared/media not present")
def test_predict_on_the_sample_photos(capsys):
    photos = sorted(str(p) for p in MEDIA.glob("*.jpg"))
    assert cli.main(["predict", *photos, "--json"]) == 0
    result = {r["image"].rsplit("/", 1)[-1]: r["faces"] for r in json.loads(capsys.readouterr().out)}
    assert all(len(f) == 1 for f in result.values()), {k: len(v) for k, v in result.items()}
    assert result["happy.jpg"][0]["label"] == "happy" and result["surprise.jpg"][0]["label"] == "surprise"


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "missing.jpg", "no such file"),
    (lambda d: (d / "notes.jpg").write_text("hello") and d / "notes.jpg", "not an image"),
    (lambda d: d, "is a folder"),
])
def test_predict_bad_inputs_are_one_line_errors(tmp_path, capsys, make, message):
    assert cli.main(["predict", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_predict_with_no_face_says_so(tmp_path, capsys):
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 180, np.uint8))
    assert cli.main(["predict", str(blank)]) == 2
    err = capsys.readouterr().err
    assert "no face found in" in err


def test_annotate_writes_the_video_and_per_frame_csv(clip, tmp_path, capsys):
    out, table = tmp_path / "out.mp4", tmp_path / "faces.csv"
    assert cli.main(["annotate", clip, "-o", str(out), "--csv", str(table)]) == 0
    assert "12 frames, faces in 12" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    ok, frame = cap.read()
    assert ok and frame.shape == (256, 256, 3)
    rows = list(csv.DictReader(open(table)))
    assert len(rows) == 12 and {r["face"] for r in rows} == {"0"}
    assert [int(r["frame"]) for r in rows] == list(range(12))
    assert all(abs(sum(float(r[c]) for c in CLASSES) - 1) < 1e-3 for r in rows)
    xs = [int(r["x"]) for r in rows]
    assert xs[-1] - xs[0] == pytest.approx(44, abs=8)  # follows the drifting face


def test_no_smooth_writes_the_raw_per_frame_output(clip, tmp_path):
    """Frame 0 is the same either way; later frames differ only when smoothing is on."""
    probs = {}
    for flag in ([], ["--no-smooth"]):
        table = tmp_path / f"{bool(flag)}.csv"
        assert cli.main(["annotate", clip, "--csv", str(table), *flag]) == 0
        probs[bool(flag)] = np.array([[float(r[c]) for c in CLASSES] for r in csv.DictReader(open(table))])
    smooth, raw = probs[False], probs[True]
    np.testing.assert_allclose(smooth[0], raw[0], atol=1e-4)
    assert np.abs(smooth[1:] - raw[1:]).max() > 1e-3
    # the smoothed track is the exponential moving average of the raw frames
    ema = raw[0]
    for p in raw[1:]:
        ema = ALPHA * p + (1 - ALPHA) * ema
    np.testing.assert_allclose(smooth[-1], ema, atol=1e-3)


def test_annotate_errors(tmp_path, capsys, clip):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    blank = _clip(tmp_path / "blank.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 3)
    cases = [
        (["annotate", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4")], "no such file"),
        (["annotate", str(text), "-o", str(tmp_path / "o.mp4")], "not a video"),
        (["annotate", str(blank), "-o", str(tmp_path / "o.mp4")], "no face found in any of the 3 frames"),
        (["annotate", "9", "-o", str(tmp_path / "o.mp4")], "no camera at index 9"),
        (["annotate", clip], "nothing to produce"),
        (["annotate", clip, "-o", str(tmp_path / "out.txt")], "video suffix"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_empty_video_file_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert cli.main(["annotate", str(empty), "-o", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err
    assert ("not a video" in err or "no frames" in err) and "Traceback" not in err


def test_python_m_fer_reports_errors_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fer", "predict", str(tmp_path / "nope.jpg")],
                          capture_output=True, text=True, cwd=PROJECT_DIR, timeout=120)
    assert done.returncode == 2
    assert "error:" in done.stderr and "no such file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_bench_reports_every_measurement(capsys):
    assert cli.main(["bench", "--frames", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["frames"] == 3 and r["frame_size"] == "640x480"
    assert r["classifier"]["batch1_ms"]["p50"] > 0 and r["classifier"]["batch256_faces_per_s"] > 0
    assert r["detector_ms"]["p95"] >= r["detector_ms"]["p50"] > 0
    assert r["analyze_ms"]["frames_with_faces"] == 3
    assert "pypi_fer_ms" not in r  # only with --compare-fer (it needs the side venv)
