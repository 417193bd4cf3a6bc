"""Op kinds normalisation needs, by op type: constants, cheap pure ops it folds when their
inputs are constant, and quantized ops (which the tool refuses)."""

from __future__ import annotations

import onnx

from .base import domain_of

QUANTIZED = frozenset({
    "QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger",
    "DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear",
})
# Pure functions of their inputs, cheap to fold when every input is constant.
FOLDABLE = frozenset({
    "Identity", "Cast", "ConstantOfShape", "Reshape", "Transpose", "Unsqueeze", "Squeeze",
    "Concat", "Add", "Sub", "Mul", "Div", "Neg", "Sqrt", "Reciprocal", "Flatten", "Expand",
    "Gather", "Slice", "Range", "Where", "Equal", "Less", "Greater", "LessOrEqual",
    "GreaterOrEqual", "And", "Or", "Not", "Max", "Min", "Abs",
})


def _default_domain(node: onnx.NodeProto) -> bool:
    return domain_of(node.domain) == ""


def is_constant(node: onnx.NodeProto) -> bool:
    """A ``Constant`` node (its value is an attribute)."""
    return node.op_type == "Constant" and _default_domain(node)


def is_foldable(node: onnx.NodeProto) -> bool:
    """A pure op normalisation may evaluate once its inputs are all constant."""
    return node.op_type in FOLDABLE and _default_domain(node)


def quantized_ops(graph: onnx.GraphProto) -> list[str]:
    """The quantized op types ``graph`` uses, sorted."""
    return sorted({n.op_type for n in graph.node} & QUANTIZED)
