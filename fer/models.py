"""Model builders: functions of hyperparameters, so keras-tuner can drive them.

Every model takes ``(crop, crop, 1)`` grayscale faces with pixel values 0-255 and rescales
them itself, so the preprocessing travels inside the saved ``.keras`` file. The last layer
is a float32 softmax even under mixed precision.

- ``baseline``: the 2020 seed's CNN (4 conv blocks 64→128→512→512, Dense 256→512), kept as
  the yardstick the notebooks compare against.
- ``resnet``: the main model, a pre-activation-free ResNet with global average pooling.
- ``lite``: depthwise-separable residual net under 100k parameters (mini-Xception class).
- ``ensemble``: several trained models in one file, their probabilities averaged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
from keras import layers

from fer.config import NUM_CLASSES

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


def policies(model) -> set[str]:
    """The dtype policy names of the layers that compute (nested models included; input layers
    and the models that nest others report float32 whatever they hold, so they are skipped)."""
    names = set()
    for layer in model.layers:
        if hasattr(layer, "layers"):
            names |= policies(layer)
        elif not isinstance(layer, layers.InputLayer):
            names.add(layer.dtype_policy.name)
    return names


def _set_dtypes(config, dtype: str) -> None:
    """Set every ``dtype`` entry of a (nested) model config to ``dtype``, in place."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "dtype" and (isinstance(value, str) or (isinstance(value, dict) and "Policy" in str(value.get("class_name")))):
                config[key] = dtype
            else:
                _set_dtypes(value, dtype)
    elif isinstance(config, list):
        for value in config:
            _set_dtypes(value, dtype)


def retyped_copy(model, dtype: str, name: str | None = None):
    """``model`` rebuilt with every layer (nested models too) in ``dtype`` and the same weights,
    cast to it. ``name`` renames the copy."""
    import numpy as np

    config = model.get_config()
    _set_dtypes(config, dtype)
    if name is not None:
        config["name"] = name
    clone = model.__class__.from_config(config)
    clone.set_weights([np.asarray(w, dtype=v.dtype) for w, v in zip(model.get_weights(), clone.weights, strict=True)])
    return clone


def float32_copy(model, name: str | None = None):
    """``model`` with a float32 compute dtype in every layer and the same weights.

    A model trained under ``mixed_bfloat16`` keeps that policy in its saved layers; shipped as
    is, it would run emulated bfloat16 (several times slower) on CPUs without native support
    and carry bf16 casts into TFLite/ONNX exports. Variables are float32 under mixed precision,
    so the weights carry over exactly; a file stored with float16 weights (see
    :func:`round_to_float16`) comes back as float32 exactly too. ``name`` renames the copy.
    """
    if name is None and policies(model) == {"float32"}:
        return model
    return retyped_copy(model, "float32", name)


def round_to_float16(model) -> None:
    """Round ``model``'s weights to float16 values (kept in float32 variables), in place.

    A model whose weights are float16 values can be stored as a float16 file at half the
    size and loaded back as float32 with exactly the same weights, so what was evaluated
    before saving is what the shipped file computes (the 4.8 M-parameter ensemble: 19.9 MB
    as float32, over the 16 MiB this project allows a shipped file).
    """
    import numpy as np

    weights = [np.asarray(w) for w in model.get_weights()]
    model.set_weights([w.astype(np.float16).astype(w.dtype) if w.dtype.kind == "f" else w for w in weights])


#: Layers shown folded into the row of the layer that feeds them (``conv 3×3, 64 + BN + ReLU``).
_FOLDED = (layers.BatchNormalization, layers.ReLU, layers.Activation, layers.Dropout)


def _describe(layer) -> str:
    def stride(s):
        s = s[0] if isinstance(s, (tuple, list)) else s
        return f", stride {s}" if s and s != 1 else ""

    if isinstance(layer, layers.InputLayer):
        return "input"
    if isinstance(layer, keras.Model):
        return f"model {layer.name}"
    if isinstance(layer, layers.Rescaling):
        inverse = 1 / layer.scale if layer.scale else 0
        return f"rescale 1/{inverse:.0f}" if inverse and abs(inverse - round(inverse)) < 1e-6 else f"rescale x{layer.scale:g}"
    if isinstance(layer, (layers.SeparableConv2D, layers.Conv2D)):
        k = "×".join(map(str, layer.kernel_size))
        kind = "separable conv" if isinstance(layer, layers.SeparableConv2D) else "conv"
        return f"{kind} {k}, {layer.filters}{stride(layer.strides)}"
    if isinstance(layer, layers.Dense):
        return f"dense {layer.units}"
    if isinstance(layer, layers.MaxPooling2D):
        return f"max pool {'×'.join(map(str, layer.pool_size))}{stride(layer.strides)}"
    if isinstance(layer, layers.GlobalAveragePooling2D):
        return "global average pool"
    if isinstance(layer, layers.Add):
        return "add (residual)"
    return type(layer).__name__.lower()


def _suffix(layer) -> str:
    if isinstance(layer, layers.BatchNormalization):
        return " + BN"
    if isinstance(layer, layers.Dropout):
        return f" + dropout {layer.rate:g}"
    if isinstance(layer, layers.Activation):
        return f" + {getattr(layer.activation, '__name__', 'activation')}"
    return " + ReLU"


def _parents(layer) -> list:
    nodes = getattr(layer, "_inbound_nodes", None) or []
    return [n.operation for n in nodes[0].parent_nodes] if nodes else []


def layer_table(model):
    """The network one row per layer that computes something new (convolution, dense, pooling,
    residual add), with the batch normalisation, ReLU, dropout or softmax that follow it folded
    into its row; output shapes are per face. Its last row is the total parameter count."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    row_of: dict[int, int] = {}
    for layer in model.layers:
        parents = _parents(layer)
        if isinstance(layer, _FOLDED) and len(parents) == 1 and id(parents[0]) in row_of:
            i = row_of[id(parents[0])]
            rows[i]["layer"] += _suffix(layer)
        else:
            i = len(rows)
            rows.append({"layer": _describe(layer), "output": "", "parameters": 0})
        row_of[id(layer)] = i
        shape = [d for d in tuple(layer.output.shape)[1:]]
        rows[i]["output"] = "×".join(str(d) for d in shape)
        rows[i]["parameters"] += layer.count_params()
    rows.append({"layer": "total", "output": "", "parameters": model.count_params()})
    table = pd.DataFrame(rows)
    table.index = [*range(1, len(rows)), ""]
    return table


BUILDERS = {"baseline": baseline, "resnet": resnet, "lite": lite}
