"""fer.inference.overlay's smoothing: one steady label per tracked face, following real changes."""

from __future__ import annotations

import numpy as np

from fer.config import CLASSES
from fer.inference import overlay


def _face(box, label, p=0.6):
    probs = {c: (p if c == label else (1 - p) / 6) for c in CLASSES}
    return {"box": list(box), "label": label, "probs": probs}


def test_a_one_frame_blip_does_not_change_the_label():
    s = overlay.Smoother()
    labels = [s.update([_face((100, 100, 80, 80), "happy")])[0]["label"] for _ in range(10)]
    blip = s.update([_face((102, 101, 80, 80), "sad")])[0]
    assert labels[-1] == "happy" and blip["label"] == "happy" and blip["id"] == 0


def test_a_lasting_change_is_followed_within_a_few_frames():
    s = overlay.Smoother()
    for _ in range(10):
        s.update([_face((100, 100, 80, 80), "happy")])
    labels = [s.update([_face((100, 100, 80, 80), "surprise")])[0]["label"] for _ in range(6)]
    assert labels[0] == "happy" and labels[-1] == "surprise"


def test_two_faces_keep_their_own_ids_and_labels_when_order_changes():
    s = overlay.Smoother()
    a, b = (10, 10, 50, 50), (300, 20, 60, 60)
    first = s.update([_face(a, "happy"), _face(b, "sad")])
    swapped = s.update([_face(b, "sad"), _face(a, "happy")])
    assert [f["id"] for f in first] == [0, 1] and [f["id"] for f in swapped] == [1, 0]
    assert [f["label"] for f in swapped] == ["sad", "happy"]


def test_raw_output_passes_through_with_probabilities_summing_to_one():
    s = overlay.Smoother()
    out = s.update([_face((0, 0, 20, 20), "fear")])[0]
    assert out["label"] == "fear" and abs(sum(out["probs"].values()) - 1) < 1e-6


def test_a_face_gone_for_long_starts_a_new_track():
    s = overlay.Smoother()
    s.update([_face((0, 0, 50, 50), "happy")])
    for _ in range(overlay.MAX_MISSED + 1):
        s.update([])
    assert s.update([_face((0, 0, 50, 50), "sad")])[0] == {**_face((0, 0, 50, 50), "sad"), "id": 1}


def test_draw_boxes_each_face_in_its_colour_and_leaves_the_rest_of_the_frame():
    frame = np.zeros((240, 320, 3), np.uint8)
    faces = [{**_face((20, 60, 80, 80), "happy"), "id": 0}, {**_face((200, 120, 60, 60), "sad"), "id": 1}]
    out = overlay.draw(frame, faces)
    assert out is frame and out.shape == (240, 320, 3)  # drawn in place
    for (x, y, w, h), label in ((f["box"], f["label"]) for f in faces):
        colour = overlay._COLOURS[label]
        assert (out[y + h // 2, x] == colour).all() and (out[y + h // 2, x + w] == colour).all()  # box sides
        assert (out[y + h, x + w // 2] == colour).all()  # its bottom edge
        assert not out[y + h // 4 : y + 3 * h // 4, x + 4 : x + w // 2].any()  # the face itself stays clear
    assert not out[200:, :150].any()  # far from both faces: untouched
    assert overlay._COLOURS["happy"] != overlay._COLOURS["sad"]


def test_draw_predictions_boxes_the_face_and_keeps_the_image():
    image = np.full((200, 300, 3), 255, np.uint8)
    faces = [{"box": [50, 60, 80, 80], "label": "happy", "probs": {c: 1 / 7 for c in CLASSES}}]
    out = overlay.draw_predictions(image, faces)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[60 + 40, 50] == [240, 200, 40]).all()  # left edge of the box: happy's colour, in RGB
    assert (out[60:140, 134:200] != 255).any(axis=2).sum() > 100  # the probability bars beside it
    assert (out[190, 290] == 255).all()  # far from the box: untouched
    assert (overlay.draw_predictions(image, []) == image).all()
    gray = overlay.draw_predictions(image[..., 0], faces)
    assert gray.shape == image.shape
