"""Split: sizes from input 1 (opset 13 on) or the ``split`` attribute, else ``num_outputs``
(or the output count) near-equal parts; returns every output."""

from __future__ import annotations

import math

import torch

from .registry import register
from .tensors import Tensor, ints, opt


@register("Split", multi_output=True)
def split(x: list, a: dict) -> list[Tensor]:
    data = x[0]
    axis = a.get("axis", 0) % data.dim()
    sizes = ints(opt(x, 1)) or a.get("split")
    if not sizes:
        parts = a.get("num_outputs", a["_outputs"])
        each = math.ceil(data.shape[axis] / parts)
        sizes = [min(each, data.shape[axis] - k * each) for k in range(parts)]
    return list(torch.split(data, sizes, axis))
