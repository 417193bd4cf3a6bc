"""Unary element-wise ops and pooling (the families of :mod:`onnxprune.ops.elementwise`).

Dropout and Identity pass input 0 through; MaxPool with an Indices output and AveragePool with
dilations, or with asymmetric pads and ``ceil_mode``, raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import onnx
import torch
import torch.nn.functional as F

from .registry import register
from .tensors import Rule, Tensor, opt, padded, window_pads

TORCH_TYPES = {
    onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16, onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT32: torch.int32, onnx.TensorProto.BOOL: torch.bool,
    onnx.TensorProto.UINT8: torch.uint8, onnx.TensorProto.INT8: torch.int8,
}
_MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVGPOOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _unary(fn: Callable[[Tensor], Tensor]) -> Rule:
    return lambda x, a: fn(x[0])


UNARY: dict[str, Rule] = {
    "Relu": _unary(torch.relu), "Sigmoid": _unary(torch.sigmoid), "Tanh": _unary(torch.tanh),
    "Erf": _unary(torch.erf), "Sqrt": _unary(torch.sqrt), "Exp": _unary(torch.exp),
    "Log": _unary(torch.log), "Neg": _unary(torch.neg), "Abs": _unary(torch.abs),
    "Reciprocal": _unary(torch.reciprocal), "Softplus": _unary(F.softplus),
    "HardSwish": _unary(F.hardswish), "Identity": _unary(lambda t: t),
    "Dropout": _unary(lambda t: t),
    "LeakyRelu": lambda x, a: F.leaky_relu(x[0], a.get("alpha", 0.01)),
    "Elu": lambda x, a: F.elu(x[0], a.get("alpha", 1.0)),
    "HardSigmoid": lambda x, a: torch.clamp(a.get("alpha", 0.2) * x[0] + a.get("beta", 0.5), 0.0, 1.0),
}
for _op, _rule in UNARY.items():
    register(_op)(_rule)


@register("Clip")
def clip(x: list, a: dict) -> Tensor:
    low = float(opt(x, 1)) if opt(x, 1) is not None else a.get("min")
    high = float(opt(x, 2)) if opt(x, 2) is not None else a.get("max")
    return x[0] if low is None and high is None else torch.clamp(x[0], low, high)


@register("Cast")
def cast(x: list, a: dict) -> Tensor:
    if a["to"] not in TORCH_TYPES:
        raise ValueError(f"Cast to ONNX type {a['to']}")
    return x[0].to(TORCH_TYPES[a["to"]])


@register("MaxPool")
def max_pool(x: list, a: dict) -> Tensor:
    if a["_outputs"] > 1:
        raise ValueError("MaxPool with an Indices output")
    data = x[0]
    kernel = a["kernel_shape"]
    nd = len(kernel)
    strides, dil = a.get("strides", [1] * nd), a.get("dilations", [1] * nd)
    pads = window_pads(a, data.shape[2:], kernel, strides, dil)
    data, pad = padded(data, pads, -math.inf, kernel)
    return _MAXPOOL[nd](data, kernel, strides, pad, dil, bool(a.get("ceil_mode", 0)))


@register("AveragePool")
def avg_pool(x: list, a: dict) -> Tensor:
    data = x[0]
    kernel = a["kernel_shape"]
    nd = len(kernel)
    strides = a.get("strides", [1] * nd)
    if any(d != 1 for d in a.get("dilations", [1] * nd)):
        raise ValueError("AveragePool with dilations")
    pads = window_pads(a, data.shape[2:], kernel, strides, [1] * nd)
    ceil, include = bool(a.get("ceil_mode", 0)), bool(a.get("count_include_pad", 0))
    data_padded, pad = padded(data, pads, 0.0, kernel)
    if data_padded is data:
        return _AVGPOOL[nd](data, kernel, strides, pad, ceil, include)
    if ceil:
        raise ValueError("AveragePool with asymmetric pads and ceil_mode")
    mean = _AVGPOOL[nd](data_padded, kernel, strides)
    if include:
        return mean
    ones = torch.ones((1, 1, *data.shape[2:]), dtype=data.dtype, device=data.device)
    return mean / _AVGPOOL[nd](padded(ones, pads, 0.0, kernel)[0], kernel, strides)


@register("GlobalAveragePool")
def global_avg_pool(x: list, a: dict) -> Tensor:
    return x[0].mean(tuple(range(2, x[0].dim())), keepdim=True)


@register("GlobalMaxPool")
def global_max_pool(x: list, a: dict) -> Tensor:
    return x[0].amax(tuple(range(2, x[0].dim())), keepdim=True)
