"""Conv, and Conv followed by an inference-mode BatchNormalization as one op (the executor
fuses the pair, :func:`conv_bn`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import register
from .tensors import Tensor, opt, padded, window_pads

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def geometry(w: Tensor, a: dict) -> tuple[int, list[int], list[int]]:
    """(spatial rank, strides, dilations) of a convolution (or transposed one) with weight ``w``."""
    nd = w.dim() - 2
    return nd, a.get("strides", [1] * nd), a.get("dilations", [1] * nd)


@register("Conv")
def conv(x: list, a: dict) -> Tensor:
    data, w, b = x[0], x[1], opt(x, 2)
    nd, strides, dil = geometry(w, a)
    kernel = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], dil)]
    pads = window_pads(a, data.shape[2:], w.shape[2:], strides, dil)
    data, pad = padded(data, pads, 0.0, kernel)
    return _CONV[nd](data, w, b, strides, pad, dil, a.get("group", 1))


def conv_bn(x: list, a: dict) -> Tensor:
    """Conv followed by an inference-mode BatchNormalization (inputs: the Conv's three, then
    the BN's scale, bias, mean, variance; ``a``: the Conv's attributes and the BN's
    ``_epsilon``), the BN folded into the Conv's weight and bias at every call (gradients reach
    all four)."""
    data, w, b, scale, shift, mean, var = x
    s = scale / torch.sqrt(var + a["_epsilon"])
    bias = shift - mean * s if b is None or b.numel() == 0 else (b - mean) * s + shift
    return conv([data, w * s.reshape(-1, *[1] * (w.dim() - 1)), bias], a)
