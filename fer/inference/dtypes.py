"""Dtypes of saved models: float32 copies of nets trained under mixed precision, and float16
rounding of weights so a shipped file is half the size and computes exactly what was evaluated.

Inference needs these (a ``mixed_bfloat16`` net runs emulated, several times slower, on most
CPUs); training uses them when it saves and ships.
"""

from __future__ import annotations

from keras import layers


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
