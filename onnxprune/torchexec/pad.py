"""Pad: pads and value from the inputs (opset 11 on) or the attributes, optional ``axes``;
modes constant, reflect and edge."""

from __future__ import annotations

import torch.nn.functional as F

from .registry import register
from .tensors import Tensor, ints, opt


@register("Pad")
def pad(x: list, a: dict) -> Tensor:
    data = x[0]
    pads = ints(opt(x, 1)) if len(x) > 1 else a["pads"]
    value = float(x[2]) if opt(x, 2) is not None else a.get("value", 0.0)
    axes = ints(opt(x, 3)) or list(range(data.dim()))
    n = len(axes)
    per_axis = {ax % data.dim(): (pads[k], pads[n + k]) for k, ax in enumerate(axes)}
    last = min((ax for ax, p in per_axis.items() if any(p)), default=data.dim())
    flat = [p for ax in reversed(range(last, data.dim())) for p in per_axis.get(ax, (0, 0))]
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(a.get("mode", "constant"))
    if mode is None:
        raise ValueError(f"Pad mode {a.get('mode')}")
    return F.pad(data, flat, mode=mode, value=value) if mode == "constant" else F.pad(data, flat, mode=mode)
