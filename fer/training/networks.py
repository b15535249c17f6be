"""Model builders: functions of hyperparameters, so keras-tuner can drive them.

Every model takes ``(crop, crop, 1)`` grayscale faces with pixel values 0-255 and rescales
them itself, so the preprocessing travels inside the saved ``.keras`` file. The last layer
is a float32 softmax even under mixed precision.

- ``baseline``: the 2020 seed's CNN (4 conv blocks 64→128→512→512, Dense 256→512), kept as
  the yardstick the notebooks compare against.
- ``resnet``: the main model, a pre-activation-free ResNet with global average pooling.
- ``lite``: depthwise-separable residual net under 100k parameters (mini-Xception class).
- ``ensemble``: several trained models in one file, their probabilities averaged.

Dtype handling (float32 copies of mixed-precision nets) is :mod:`fer.inference.dtypes`; the
layer-by-layer table notebook 02 shows is :mod:`fer.reporting.architecture`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
from keras import layers

from fer.config import NUM_CLASSES
from fer.inference.dtypes import float32_copy

#: Defaults of each architecture; a tuner or a params profile overrides any of them.
DEFAULTS: dict[str, dict[str, Any]] = {
    "baseline": {"crop": 48, "dropout": 0.25, "dense_dropout": 0.5},
    "resnet": {
        "crop": 44,
        "stem_width": 32,
        "stem_stride": 1,
        "widths": (64, 128, 256, 512),
        "blocks": (1, 1, 1, 1),
        "dropout": 0.3,
    },
    "lite": {"crop": 44, "stem_width": 16, "widths": (32, 64, 128), "dropout": 0.2},
}


def build(arch: str, hp: Mapping[str, Any] | None = None) -> keras.Model:
    """Build ``arch`` with ``DEFAULTS[arch]`` updated by ``hp`` (unknown keys are ignored)."""
    if arch not in BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(BUILDERS)}")
    params = {**DEFAULTS[arch], **{k: v for k, v in dict(hp or {}).items() if k in DEFAULTS[arch]}}
    return BUILDERS[arch](**params)


def _inputs(crop: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input(shape=(crop, crop, 1), name="face")
    return inputs, layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)


def _head(x, dropout: float, name: str, inputs) -> keras.Model:
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(NUM_CLASSES, name="logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def _conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, act: bool = True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x) if act else x


def baseline(crop: int = 48, dropout: float = 0.25, dense_dropout: float = 0.5) -> keras.Model:
    """The seed repository's CNN (~4.5 M parameters, most of them in the flatten→dense layer)."""
    inputs, x = _inputs(crop)
    for filters, kernel in ((64, 3), (128, 5), (512, 3), (512, 3)):
        x = _conv_bn(x, filters, kernel)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    for units in (256, 512):
        x = layers.Dense(units, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Dropout(dropout)(x)
    return _head(x, dense_dropout, "baseline", inputs)


def _residual(x, filters: int, strides: int):
    shortcut = x
    y = _conv_bn(x, filters, 3, strides)
    y = _conv_bn(y, filters, 3, act=False)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = _conv_bn(shortcut, filters, 1, strides, act=False)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def resnet(
    crop: int = 44,
    stem_width: int = 32,
    stem_stride: int = 1,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    blocks: tuple[int, ...] = (1, 1, 1, 1),
    dropout: float = 0.3,
) -> keras.Model:
    """ResNet for 48×48 faces: a 3×3 stem, stages of basic blocks, global average pooling.

    The first stage already halves the resolution: a 64-wide block at full 44×44 costs more
    CPU time than the whole rest of the net and, measured here, bought no accuracy.
    """
    if len(widths) != len(blocks):
        raise ValueError(f"widths {widths} and blocks {blocks} must have the same length")
    inputs, x = _inputs(crop)
    x = _conv_bn(x, stem_width, 3, stem_stride)
    for width, n in zip(widths, blocks, strict=True):
        for i in range(n):
            x = _residual(x, int(width), 2 if i == 0 else 1)
    x = layers.GlobalAveragePooling2D()(x)
    return _head(x, dropout, "resnet", inputs)


def _separable_residual(x, filters: int):
    shortcut = _conv_bn(x, filters, 1, 2, act=False)
    y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    y = layers.MaxPooling2D(3, strides=2, padding="same")(y)
    return layers.Add()([y, shortcut])


def lite(
    crop: int = 44,
    stem_width: int = 16,
    widths: tuple[int, ...] = (32, 64, 128),
    dropout: float = 0.2,
) -> keras.Model:
    """mini-Xception-style net: two plain convs, then separable residual blocks, GAP."""
    inputs, x = _inputs(crop)
    x = _conv_bn(x, stem_width, 3)
    x = _conv_bn(x, stem_width, 3)
    for width in widths:
        x = _separable_residual(x, int(width))
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return _head(x, dropout, "lite", inputs)


def ensemble(members, name: str = "ensemble") -> keras.Model:
    """One Keras model that averages the softmax outputs of trained ``members``.

    The members run as float32 copies (see :func:`float32_copy`) renamed ``member_<i>``, so
    the result saves as one ``.keras`` file, converts to TFLite like a single net and goes
    through ``fer.load_classifier`` unchanged. All members must take the same crop.
    """
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
    crops = {tuple(m.input_shape[1:]) for m in members}
    if len(crops) != 1:
        raise ValueError(f"ensemble members take different inputs {sorted(crops)}; train them with one crop")
    inputs = keras.Input(shape=members[0].input_shape[1:], name="face")
    outputs = [float32_copy(m, name=f"member_{i}")(inputs) for i, m in enumerate(members)]
    return keras.Model(inputs, layers.Average(dtype="float32", name="probs")(outputs), name=name)


BUILDERS = {"baseline": baseline, "resnet": resnet, "lite": lite}
