"""Unary element-wise ops and pooling: output 0 carries input 0's channels (identity map).

Clip's bounds and Dropout's ratio are scalars; Dropout's mask and MaxPool's indices outputs are
not tracked. Pooling mixes every axis but the channel axis, so its channels must be on axis 1.
"""

from __future__ import annotations

import onnx

from .base import OpSpec, RuleGraph, passthrough
from .registry import register

UNARY = (
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Erf", "Softplus", "Softsign", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign", "Sin", "Cos", "Gelu", "Mish", "ThresholdedRelu", "Identity", "Cast",
    "Clip", "Dropout", "Not", "IsNaN", "IsInf",
)
POOLS = ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")


@register
class Unary(OpSpec):
    op_types = UNARY

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        passthrough(g, node)


@register
class Pool(OpSpec):
    op_types = POOLS

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        passthrough(g, node, nchw=True)
