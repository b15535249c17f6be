"""fer.inference.faces: the detector finds real faces and nothing in blank images, on any image layout,
and the crops are FER2013-shaped. Runs on OpenCV 4.x and 5.x."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from fer.inference import faces


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)


# Eileen Collins' face in skimage's astronaut photo (512x512), measured by eye.
FACE_CENTRE = (225, 128)


def _centre(face: faces.Face) -> tuple[float, float]:
    x, y, w, h = face.box
    return x + w / 2, y + h / 2


def test_finds_the_one_face_in_the_astronaut_photo(astronaut):
    found = faces.detect(astronaut)
    assert len(found) == 1
    cx, cy = _centre(found[0])
    assert abs(cx - FACE_CENTRE[0]) < 25 and abs(cy - FACE_CENTRE[1]) < 25
    assert 60 < found[0].box[2] < 160
    assert found[0].keypoints.shape == (6, 2)


@pytest.mark.parametrize("model", ["blazeface-front", "blazeface-back", "blazeface-full"])
def test_every_blazeface_variant_finds_it(astronaut, model):
    assert len(faces.detect(astronaut, model)) == 1


@pytest.mark.parametrize("shape", [(480, 640, 3), (480, 640), (1, 1), (3, 900, 3), (2000, 30)])
def test_blank_images_of_any_shape_have_no_face(shape):
    assert faces.detect(np.zeros(shape, np.uint8)) == []
    assert faces.detect(np.full(shape, 200, np.uint8)) == []


def test_grayscale_bgra_float_and_resized_images_find_the_same_face(astronaut):
    reference = _centre(faces.detect(astronaut)[0])
    variants = {
        "gray": cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY),
        "gray (h, w, 1)": cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)[..., None],
        "bgra": cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA),
        "float 0-1": astronaut / 255.0,
    }
    for name, image in variants.items():
        found = faces.detect(image)
        assert len(found) == 1, name
        assert np.allclose(_centre(found[0]), reference, atol=8), name
    for scale in (0.4, 3.0):  # ~200 px and ~1500 px wide
        big = cv2.resize(astronaut, None, fx=scale, fy=scale)
        (found,) = faces.detect(big)
        assert np.allclose(np.array(_centre(found)) / scale, reference, atol=10), scale


def test_mirrored_image_gives_the_mirrored_box(astronaut):
    (a,) = faces.detect(astronaut)
    (b,) = faces.detect(astronaut[:, ::-1])
    assert abs((512 - b.box[0] - b.box[2]) - a.box[0]) <= 4 and abs(b.box[1] - a.box[1]) <= 4


def test_bad_arrays_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="shape"):
        faces.detect(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        faces.detect(np.zeros((0, 10, 3), np.uint8))


def test_crop_is_48x48_uint8_even_at_the_image_border(astronaut):
    gray = faces.to_gray(astronaut)
    (face,) = faces.detect(astronaut)
    assert faces.crop(gray, face).shape == (48, 48)
    edge = faces.Face((490, -10, 60, 60), 1.0)  # partly outside the image
    out = faces.crop(gray, edge)
    assert out.shape == (48, 48) and out.dtype == np.uint8


def test_crop_levels_the_eyes():
    """A face rotated by 20 degrees is rotated back: its crop matches the upright one."""
    image = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    gray = faces.to_gray(image)
    (upright,) = faces.detect(image)
    m = cv2.getRotationMatrix2D(_centre(upright), 20, 1.0)
    turned = cv2.warpAffine(image, m, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    (tilted,) = faces.detect(turned)
    a = faces.crop(gray, upright).astype(float)
    b = faces.crop(faces.to_gray(turned), tilted).astype(float)
    b_unlevelled = faces.crop(faces.to_gray(turned), tilted, rotate=False).astype(float)
    assert np.abs(a - b).mean() < np.abs(a - b_unlevelled).mean()


def test_anchor_counts_match_the_models():
    for model, (_, size, strides) in faces.BLAZEFACE.items():
        det = faces.BlazeFace(model)
        n = det.interpreter.get_output_details()[0]["shape"][1]
        assert len(faces.anchors(size, strides)) == n, model


def test_without_the_model_files_the_fallback_or_message_is_clear(monkeypatch, tmp_path):
    monkeypatch.setattr(faces, "BLAZEFACE_DIR", tmp_path)  # an incomplete install: no BlazeFace files
    monkeypatch.setattr(faces, "_CACHE", {})
    if hasattr(cv2, "CascadeClassifier"):  # OpenCV 4.x: Haar takes over
        assert faces.detector().name == "haar"
    else:  # OpenCV 5.x: nothing left, and the message says what to do
        with pytest.raises(faces.DetectorUnavailable, match="reinstall fer-study"):
            faces.detector()
    with pytest.raises(faces.DetectorUnavailable, match="face_detection_front.tflite is missing"):
        faces.detector("blazeface")


def test_the_shipped_blazeface_files_are_the_recorded_ones():
    import hashlib
    import json

    source = json.loads((faces.BLAZEFACE_DIR / "SOURCE.json").read_text())
    for name, digest in source["sha256"].items():
        assert hashlib.sha256((faces.BLAZEFACE_DIR / name).read_bytes()).hexdigest() == digest, name
    assert {spec[0] for spec in faces.BLAZEFACE.values()} == set(source["sha256"])


def test_unknown_detector_name_is_refused():
    with pytest.raises(ValueError, match="unknown detector"):
        faces.detector("yolo")


def test_a_small_face_in_a_large_frame_is_found_by_the_default_chain(astronaut):
    """Too small for ``front`` (face ~1/24 of the width); ``auto`` falls back to ``back``."""
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[300:684, 800:1184] = cv2.resize(astronaut, (384, 384))
    assert faces.detect(frame, "blazeface-front") == []
    (face,) = faces.detect(frame)
    cx, cy = _centre(face)
    assert abs(cx - (800 + FACE_CENTRE[0] * 0.75)) < 25 and abs(cy - (300 + FACE_CENTRE[1] * 0.75)) < 25


def test_threads_detect_in_parallel_on_their_own_interpreters_with_the_same_answers(astronaut):
    from concurrent.futures import ThreadPoolExecutor

    det = faces.BlazeFace("front")
    images = [astronaut, astronaut[:, ::-1].copy(), astronaut[64:, 32:].copy(), np.zeros((90, 120, 3), np.uint8)]
    alone = [[f.box for f in det.detect(im)] for im in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda im: [f.box for f in det.detect(im)], images * 8))
    assert together == alone * 8
    assert 1 <= det._pool._made <= det._pool.size  # one copy per concurrent caller, at most one per core
