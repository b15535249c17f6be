"""fer.apps.webcam's kernel side without a browser: the frame messages and their answers, the settings'
checks, the kernel camera's thread on a video file, the replay and the generated clip.

The model is a stub here (``analyze=``); the browser round trip is in tests/e2e/test_webcam_browser.py
and the real model on the replay in tests/apps/test_webcam_model.py.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
import traitlets

from fer.apps import demo, webcam
from fer.config import CLASSES


def _face(image, label="happy", p=0.8):
    h, w = image.shape[:2]
    probs = np.full(len(CLASSES), (1 - p) / (len(CLASSES) - 1), np.float32)
    probs[CLASSES.index(label)] = p
    return [{"box": np.array([w // 4, h // 4, w // 2, h // 2]), "label": label,
             "probs": dict(zip(CLASSES, probs, strict=True))}]


class Recorder:
    def __init__(self, label="happy"):
        self.shapes, self.label = [], label

    def __call__(self, image):
        self.shapes.append(image.shape)
        return _face(image, self.label)


@pytest.fixture
def jpeg():
    frame = next(demo.astronaut_frames(1, (320, 180)))
    return demo.encode_like_browser(frame)


def test_a_buffer_frame_is_answered_with_plain_json_faces(jpeg):
    stub = Recorder()
    seen = []
    cam = webcam.Webcam(analyze=stub, on_result=seen.append)
    reply = cam.answer({"type": "frame", "id": "v:1", "mode": "buffers"}, [memoryview(jpeg)])
    assert reply["type"] == "result" and reply["id"] == "v:1"
    assert stub.shapes == [(180, 320, 3)]  # decoded to BGR at the frame's own size
    face = reply["faces"][0]
    assert face["label"] == "happy" and list(face["probs"]) == list(CLASSES)
    assert all(type(v) is int for v in face["box"]) and type(face["probs"]["happy"]) is float
    assert (reply["received"], reply["answered"]) == (1, 1) and reply["kernel_ms"] >= 0
    assert cam.faces == reply["faces"] and seen == [reply["faces"]]
    import json

    json.dumps(reply)  # what goes over the wire


def test_base64_frames_give_the_same_answer(jpeg):
    cam = webcam.Webcam(analyze=Recorder(), smooth=False)
    a = cam.answer({"type": "frame", "id": "v:1", "mode": "buffers"}, [jpeg])
    b = cam.answer({"type": "frame", "id": "v:2", "mode": "base64", "data": base64.b64encode(jpeg).decode()}, [])
    assert a["faces"] == b["faces"] and cam.frames_answered == 2


def test_a_buffer_that_did_not_arrive_asks_for_base64(jpeg):
    stub = Recorder()
    cam = webcam.Webcam(analyze=stub)
    assert cam.answer({"type": "frame", "id": "v:3", "mode": "buffers"}, []) == {"type": "no-buffers", "id": "v:3"}
    assert stub.shapes == [] and cam.frames_received == 0


def test_a_broken_frame_or_model_is_an_error_reply_and_the_next_frame_works(jpeg):
    calls = []

    def flaky(image):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return _face(image)

    cam = webcam.Webcam(analyze=flaky)
    bad = cam.answer({"type": "frame", "id": "v:1", "mode": "base64", "data": base64.b64encode(b"not a jpeg").decode()}, [])
    assert bad["type"] == "error" and "not a JPEG" in bad["message"]
    boom = cam.answer({"type": "frame", "id": "v:2", "mode": "buffers"}, [jpeg])
    assert boom == {"type": "error", "id": "v:2", "message": "RuntimeError: model exploded"}
    ok = cam.answer({"type": "frame", "id": "v:3", "mode": "buffers"}, [jpeg])
    assert ok["type"] == "result" and (cam.frames_received, cam.frames_answered) == (3, 1)


def test_nan_probabilities_are_an_error_not_invalid_json(jpeg):
    cam = webcam.Webcam(analyze=lambda im: [{**_face(im)[0], "probs": dict.fromkeys(CLASSES, float("nan"))}])
    reply = cam.answer({"type": "frame", "id": "v:1", "mode": "buffers"}, [jpeg])
    assert reply["type"] == "error" and "non-finite" in reply["message"]


def test_a_failing_callback_does_not_stop_the_answers(jpeg):
    def broken(_faces):
        raise ValueError("user bug")

    cam = webcam.Webcam(analyze=Recorder(), on_result=broken)
    assert cam.answer({"type": "frame", "id": "v:1", "mode": "buffers"}, [jpeg])["type"] == "result"


def test_smoothing_keeps_a_label_through_a_one_frame_flicker(jpeg):
    labels = iter(["happy"] * 5 + ["sad"] + ["happy"] * 2)
    raw = webcam.Webcam(analyze=lambda im: _face(im, next(labels), 0.9), smooth=True)
    out = [raw.answer({"type": "frame", "id": f"v:{i}", "mode": "buffers"}, [jpeg])["faces"][0]["label"]
           for i in range(8)]
    assert out == ["happy"] * 8
    flicker = iter(["happy", "sad"])
    plain = webcam.Webcam(analyze=lambda im: _face(im, next(flicker), 0.9), smooth=False)
    assert [plain.answer({"type": "frame", "id": f"v:{i}", "mode": "buffers"}, [jpeg])["faces"][0]["label"]
            for i in range(2)] == ["happy", "sad"]


def test_other_messages_are_ignored(jpeg):
    cam = webcam.Webcam(analyze=Recorder())
    sent = []
    cam.send = sent.append
    cam._handle(cam, {"type": "hello"}, [])
    cam._handle(cam, "not a dict", [])
    cam._handle(cam, {"type": "frame", "id": "v:1", "mode": "buffers"}, [jpeg])
    assert [m["type"] for m in sent] == ["result"]


@pytest.mark.parametrize(("name", "value"), [("max_fps", 0), ("max_fps", 61), ("max_side", 32),
                                             ("jpeg_quality", 1.5), ("transport", "carrier-pigeon")])
def test_bad_settings_are_refused_with_the_range(name, value):
    with pytest.raises(traitlets.TraitError, match=name if name != "transport" else "transport"):
        webcam.Webcam(**{name: value})


def test_settings_and_state_are_synced_to_the_browser():
    cam = webcam.Webcam()
    synced = set(cam.keys)
    assert {"running", "mirror", "max_fps", "max_side", "jpeg_quality", "transport", "device_id", "stats", "error"} <= synced
    assert not {"faces", "frames_received", "frames_answered"} & synced  # kernel-side only
    assert cam.running is True
    cam.stop()
    assert cam.running is False
    cam.start()
    assert cam.running is True


def test_the_front_end_is_one_offline_module_with_a_default_export():
    esm = webcam.Webcam._esm if isinstance(webcam.Webcam._esm, str) else str(webcam.Webcam._esm)
    assert "export function mountLive" in esm and esm.count("export default") == 1
    import re

    assert not re.search(r"^\s*import\b", esm, re.M)  # self-contained: nothing loaded from anywhere
    # the one dynamic import: LiteRT.js, from a blob of the bytes the kernel sent (browser mode)
    assert [m.strip() for m in re.findall(r"\bimport\s*\(([^)]*\()", esm)] == ["/* webpackIgnore: true */ blobUrl("]
    assert "getUserMedia" in esm and "msg:custom" in esm


# --------------------------------------------------------------------------- kernel camera


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return demo.astronaut_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=1.0, fps=10)


def test_kernel_camera_plays_a_file_and_stops(clip):
    seen = []
    cam = webcam.KernelCamera(clip, analyze=Recorder(), on_result=seen.append, max_fps=60)
    deadline = time.monotonic() + 20
    while cam.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not cam.running and cam.status.value == "end of video"
    assert cam.frames_read >= 5 and cam.frames_answered == cam.frames_read == len(seen)
    shown = cv2.imdecode(np.frombuffer(cam.image.value, np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape == (360, 640, 3)
    assert cam.button.description == "Start"


def test_kernel_camera_loops_until_stopped(clip):
    cam = webcam.KernelCamera(clip, analyze=Recorder(), loop=True, max_fps=60)
    deadline = time.monotonic() + 20
    while cam.frames_read < 15 and time.monotonic() < deadline:  # the clip has 10 frames
        time.sleep(0.05)
    assert cam.running and cam.frames_read >= 15
    cam.stop()
    assert not cam.running and not cam._thread.is_alive()


def test_kernel_camera_refuses_a_missing_source_at_once(tmp_path):
    from fer.apps.video import SourceError

    with pytest.raises(SourceError, match="no such file"):
        webcam.KernelCamera(tmp_path / "missing.mp4")
    with pytest.raises(SourceError, match="no camera at index 7"):
        webcam.KernelCamera(7)


def test_kernel_camera_does_not_start_unless_asked(clip):
    cam = webcam.KernelCamera(clip, analyze=Recorder(), autostart=False)
    time.sleep(0.2)
    assert not cam.running and cam.frames_read == 0
    cam.button.click()
    deadline = time.monotonic() + 20
    while cam.frames_read == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    cam.stop()
    assert cam.frames_read > 0


# --------------------------------------------------------------------------- replay and clip


def test_replay_samples_the_video_at_the_widget_rate_and_keeps_annotated_frames(tmp_path):
    path = demo.astronaut_clip(tmp_path / "c.mp4", seconds=2.0, fps=20)
    stub = Recorder()
    run = demo.replay(path, rate=10, keep=3, analyze=stub)
    assert len(run.table) == 20 and run.fps == pytest.approx(10)  # every 2nd frame of 40
    assert run.table["frame"].tolist() == list(range(0, 40, 2))
    assert (run.table["label"] == "happy").all() and run.table["happy"].gt(0.5).all()
    assert len(run.frames) == 3 and run.frames[0][1].shape == (360, 640, 3) and len(run.kernel_ms) == 20
    assert {s for s in stub.shapes} == {(360, 640, 3)}  # through JPEG at the frame's size (under 640)


def test_replay_keeps_its_frames_within_max_frames(tmp_path):
    path = demo.astronaut_clip(tmp_path / "c.mp4", seconds=4.0, fps=10)
    run = demo.replay(path, rate=10, keep=3, max_frames=10, analyze=lambda im: [])
    assert len(run.table) == 10 and [round(t, 1) for t, _ in run.frames] == [0.0, 0.4, 0.9]


def test_replay_downscales_like_the_browser(tmp_path):
    big = tmp_path / "big.mp4"
    writer = cv2.VideoWriter(str(big), cv2.VideoWriter_fourcc(*"mp4v"), 10, (1280, 720))
    for frame in demo.astronaut_frames(3, (1280, 720)):
        writer.write(frame)
    writer.release()
    stub = Recorder()
    demo.replay(big, rate=10, analyze=stub)
    assert stub.shapes and set(stub.shapes) == {(360, 640, 3)}


def test_replay_of_no_face_leaves_blank_labels(tmp_path):
    path = demo.astronaut_clip(tmp_path / "c.mp4", seconds=1.0, fps=10)
    run = demo.replay(path, analyze=lambda im: [])
    assert run.table["faces"].eq(0).all() and run.table["label"].isna().all()


def test_astronaut_frames_move_and_hold_a_face():
    frames = list(demo.astronaut_frames(30, (640, 360)))
    assert all(f.shape == (360, 640, 3) and f.dtype == np.uint8 for f in frames)
    assert np.abs(frames[0].astype(int) - frames[20].astype(int)).mean() > 5  # it moves


def test_label_timeline_draws_a_strip_and_one_curve_per_class(tmp_path):
    from fer.reporting import plots

    run = demo.replay(demo.astronaut_clip(tmp_path / "c.mp4", seconds=1.0, fps=10), analyze=Recorder())
    fig = plots.label_timeline(run.table, title="t")
    strip, curves = fig.axes
    assert strip.get_title() == "t" and len(curves.get_lines()) == len(CLASSES)
    assert [t.get_text() for t in curves.get_legend().get_texts()] == list(CLASSES)


# --------------------------------------------------------------------------- photo upload


def test_uploaded_files_reads_ipywidgets_7_and_8_values():
    class Upload:
        def __init__(self, value):
            self.value = value

    v8 = ({"name": "a.jpg", "content": memoryview(b"abc")},)
    v7 = {"b.png": {"metadata": {"name": "b.png"}, "content": b"xyz"}}
    assert demo.uploaded_files(Upload(v8)) == [("a.jpg", b"abc")]
    assert demo.uploaded_files(Upload(v7)) == [("b.png", b"xyz")]


def test_photo_upload_shows_the_faces_or_says_what_is_wrong(jpeg):
    box = demo.photo_upload(analyze=Recorder("surprise"))
    upload, note = box.children[0].children
    shown = box.children[1]

    def upload_file(name, content):  # what the browser sets (ipywidgets 8's value)
        upload.value = ({"name": name, "type": "", "size": len(content), "content": memoryview(content),
                         "last_modified": datetime.now(UTC)},)

    upload_file("x.txt", b"hello")
    assert "not an image" in note.value and shown.layout.display == "none"
    upload_file("face.jpg", jpeg)
    assert "1 face(s): surprise" in note.value and shown.value[:2] == b"\xff\xd8" and shown.layout.display == ""
