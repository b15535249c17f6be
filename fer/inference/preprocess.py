"""Faces as a model sees them: uint8 ``(N, 48, 48)`` crops checked and coerced, the centre
crop to the model's input size, test-time-augmentation views, and crops brought to another
model's input size. Training, inference, export and distillation all crop through here, so
they see the same pixels.
"""

from __future__ import annotations

import numpy as np

from fer.config import IMAGE_SIZE

#: Test-time augmentation modes ``predict_proba(tta=...)`` takes.
TTA_MODES = (None, "none", "flip", "tencrop")


def as_faces(faces) -> np.ndarray:
    """Validate/coerce crops to uint8 ``(N, 48, 48)``; a single ``(48, 48)`` face becomes N=1."""
    arr = np.asarray(faces)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"faces must be (N, 48, 48) grayscale crops, got shape {arr.shape}")
    if arr.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        import cv2

        arr = np.stack([cv2.resize(f.astype(np.uint8), (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA) for f in arr]) if len(arr) else arr.reshape(0, IMAGE_SIZE, IMAGE_SIZE)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


def center_crop(x: np.ndarray, crop: int) -> np.ndarray:
    """Centre crop of ``(N, H, W[, C])`` to ``crop``×``crop`` (what inference without TTA sees)."""
    h, w = x.shape[1:3]
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[:, top : top + crop, left : left + crop]


def model_input(faces, crop: int) -> np.ndarray:
    """Faces → the centre-cropped float32 ``(N, crop, crop, 1)`` batch every runtime takes."""
    return center_crop(as_faces(faces), crop)[..., None].astype(np.float32)


def tta_views(faces: np.ndarray, crop: int, tta: str | None) -> np.ndarray:
    """Views of each face to average over: ``(V, N, crop, crop)``.

    ``None``/``"none"``: the centre crop (exactly what validation saw in training).
    ``"flip"``: centre crop and its mirror. ``"tencrop"``: the centre and the four corners,
    each with its mirror.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
    views = [center_crop(faces, crop)]
    if tta == "tencrop":
        m = faces.shape[1] - crop
        views += [faces[:, t : t + crop, s : s + crop] for t, s in ((0, 0), (0, m), (m, 0), (m, m))]
    if tta in ("flip", "tencrop"):
        views += [v[:, :, ::-1] for v in views]
    return np.stack(views)


def fit_crop(images: np.ndarray, crop: int) -> np.ndarray:
    """``(N, S, S)`` views brought to ``crop``×``crop`` for a model of another input size:
    centre-cropped when larger, padded by reflection when smaller."""
    size = images.shape[1]
    if size >= crop:
        return center_crop(images, crop)
    before = (crop - size) // 2
    return np.pad(images, ((0, 0), (before, crop - size - before), (before, crop - size - before)), mode="reflect")


def fit_crop_tensor(x, crop: int):
    """:func:`fit_crop` for a backend tensor of ``(N, S, S, 1)`` views, inside a compiled step."""
    from keras import ops

    size = int(x.shape[1])
    if size >= crop:
        return center_crop(x, crop)
    before = (crop - size) // 2
    pad = (before, crop - size - before)
    return ops.pad(x, ((0, 0), pad, pad, (0, 0)), mode="reflect")
