"""BatchNormalization (inference mode) and InstanceNormalization: per-channel statistics on
axis 1."""

from __future__ import annotations

import torch.nn.functional as F

from .registry import register
from .tensors import Tensor


@register("BatchNormalization")
def batch_norm(x: list, a: dict) -> Tensor:
    if a.get("training_mode", 0):
        raise ValueError("BatchNormalization in training mode")
    data, scale, bias, mean, var = x[:5]
    return F.batch_norm(data, mean, var, scale, bias, False, 0.0, a.get("epsilon", 1e-5))


@register("InstanceNormalization")
def instance_norm(x: list, a: dict) -> Tensor:
    return F.instance_norm(x[0], weight=x[1], bias=x[2], eps=a.get("epsilon", 1e-5))
