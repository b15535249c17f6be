"""fer.apps.webcam with the bundled model: what the live widget and the notebook's replay answer on
real faces (the generated astronaut clip everywhere; the sample video when ../shared is present)."""

from __future__ import annotations

import pytest

from fer.apps import demo, webcam
from fer.config import CLASSES


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return demo.astronaut_clip(tmp_path_factory.mktemp("clip") / "astronaut.mp4", seconds=2.0, fps=10)


def test_the_widget_answers_a_smiling_frame_with_happy(clip):
    frame = next(demo.astronaut_frames(1))
    reply = webcam.Webcam().answer({"type": "frame", "id": "v:1", "mode": "buffers"},
                                   [demo.encode_like_browser(frame)])
    assert reply["type"] == "result" and len(reply["faces"]) == 1
    face = reply["faces"][0]
    assert face["label"] == "happy" and face["probs"]["happy"] > 0.5
    x, y, w, h = face["box"]
    assert 0 <= x < x + w <= 640 and 0 <= y < y + h <= 360


def test_replay_of_the_generated_clip_finds_the_face_in_every_frame(clip):
    run = demo.replay(clip, rate=10)
    assert len(run.table) == 20 and run.table["faces"].eq(1).all()
    assert (run.table["label"] == "happy").mean() >= 0.9
    assert run.table[list(CLASSES)].sum(axis=1).round(3).eq(1).all()


@pytest.mark.shared
@pytest.mark.skipif(not demo.SAMPLE_VIDEO.is_file(), reason="../shared/media/woman2.mp4 not present")
def test_replay_of_the_sample_video_follows_her_expressions():
    run = demo.replay(demo.SAMPLE_VIDEO, rate=10)
    assert len(run.table) >= 150 and run.table["faces"].gt(0).mean() >= 0.95
    shares = run.table["label"].value_counts(normalize=True)
    assert shares.get("happy", 0) >= 0.3  # she smiles through most of the clip
    assert shares.size >= 2  # and the label follows when she stops (the smoothing does not freeze it)
