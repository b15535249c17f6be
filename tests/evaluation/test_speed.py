"""fer.evaluation.speed and the load test need no data and no scikit-image: a core install has the
astronaut photo the package ships (fer.inference.faces.sample_photo)."""

import sys

import cv2
import numpy as np

from fer.apps import loadtest
from fer.evaluation import speed
from fer.inference import faces


def test_frames_and_the_load_tests_photo_come_without_shared_or_scikit_image(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "skimage", None)  # as on a core install
    monkeypatch.setattr(speed, "SHARED_DIR", tmp_path)  # no ../shared either
    frames = speed.frames_640x480(3)
    assert len(frames) == 3 and frames[0].shape == (480, 640, 3)
    jpeg = cv2.imdecode(np.frombuffer(loadtest.sample_jpeg(), np.uint8), cv2.IMREAD_COLOR)
    assert jpeg.shape == (480, 640, 3)
    assert len(faces.detector().detect(frames[0])) == 1 and len(faces.detector().detect(jpeg)) == 1
