"""Ops normalising along ``axis`` (the families of :mod:`onnxprune.ops.softmax`): Softmax and
LogSoftmax, which before opset 13 coerce the input to 2-D at ``axis`` (default 1) and from
opset 13 normalise over ``axis`` alone (default -1); LayerNormalization without its Mean /
InvStdDev outputs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .registry import register
from .tensors import Tensor, opt


def _legacy(fn):
    def rule(x: list, a: dict) -> Tensor:
        data = x[0]
        axis = a.get("axis", 1) % data.dim()
        flat = data.reshape(int(np.prod(data.shape[:axis], dtype=np.int64)), -1)
        return fn(flat, 1).reshape(data.shape)
    return rule


for _op, _fn in {"Softmax": torch.softmax, "LogSoftmax": torch.log_softmax}.items():
    register(_op, max_opset=12)(_legacy(_fn))
    register(_op, min_opset=13)(lambda x, a, fn=_fn: fn(x[0], a.get("axis", -1)))


@register("LayerNormalization")
def layer_norm(x: list, a: dict) -> Tensor:
    if a["_outputs"] > 1:
        raise ValueError("LayerNormalization with Mean/InvStdDev outputs")
    data = x[0]
    axis = a.get("axis", -1) % data.dim()
    return F.layer_norm(data, data.shape[axis:], x[1], opt(x, 2), a.get("epsilon", 1e-5))
