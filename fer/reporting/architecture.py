"""A network as a table a reader can follow: one row per layer that computes something new, with
the normalisation, activation and dropout after it folded in (notebook 02's architecture cell).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

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
