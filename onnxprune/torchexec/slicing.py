"""Slice: bounds from the attributes (before opset 10) or the inputs (``axes``, ``steps``
optional); a step other than 1 gathers the picked positions."""

from __future__ import annotations

import torch

from .registry import register
from .tensors import Tensor, ints, opt


@register("Slice")
def slice_(x: list, a: dict) -> Tensor:
    data = x[0]
    if len(x) > 1:
        starts, ends = ints(x[1]), ints(x[2])
        axes, steps = ints(opt(x, 3)), ints(opt(x, 4))
    else:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= data.dim()
        picked = range(*slice(start, end, step).indices(data.shape[axis]))
        if step == 1:
            data = data.narrow(axis, picked.start, len(picked))
        else:
            data = data.index_select(axis, torch.tensor(list(picked), dtype=torch.long, device=data.device))
    return data
