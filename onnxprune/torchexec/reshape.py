"""Reshape (``0`` copies the input's dimension unless ``allowzero``), and the ops that only
change the shape: Flatten, Squeeze, Unsqueeze (axes from the input or, before opset 13, the
attribute)."""

from __future__ import annotations

import numpy as np

from .registry import register
from .tensors import Tensor, axes, ints


@register("Reshape")
def reshape(x: list, a: dict) -> Tensor:
    data, shape = x[0], ints(x[1])
    keep_zero = a.get("allowzero", 0)
    return data.reshape([data.shape[i] if d == 0 and not keep_zero else d for i, d in enumerate(shape)])


@register("Flatten")
def flatten(x: list, a: dict) -> Tensor:
    data = x[0]
    axis = a.get("axis", 1) % (data.dim() + 1) if data.dim() else 0
    return data.reshape(int(np.prod(data.shape[:axis], dtype=np.int64)), -1)


@register("Squeeze")
def squeeze(x: list, a: dict) -> Tensor:
    dropped = axes(x, a)
    if dropped is None:
        return x[0].squeeze()
    return x[0].squeeze(tuple(ax % x[0].dim() for ax in dropped))


@register("Unsqueeze")
def unsqueeze(x: list, a: dict) -> Tensor:
    data, added = x[0], axes(x, a)
    rank = data.dim() + len(added)
    for axis in sorted(ax % rank for ax in added):
        data = data.unsqueeze(axis)
    return data
