"""Model statistics: parameter count and multiply-accumulates (from each op's spec)."""

from __future__ import annotations

import numpy as np
import onnx

from . import ops

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
               onnx.TensorProto.BFLOAT16)


def param_count(model: onnx.ModelProto) -> int:
    """Number of elements in floating-point initializers."""
    return sum(int(np.prod(i.dims)) for i in model.graph.initializer if i.data_type in FLOAT_TYPES)


def macs(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of the ops with a constant weight (input 1) whose spec counts them
    (Conv, ConvTranspose, Gemm, MatMul); ``shapes`` are the traced tensor shapes."""
    return sum(node_macs(model, shapes))


def node_macs(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> list[int]:
    """:func:`macs` of each node of the graph, in node order (0 for the ops it does not count)."""
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    opsets = ops.opset_versions(model)
    out = []
    for node in model.graph.node:
        spec = (ops.spec_for(node, opsets) if len(node.input) >= 2 and node.input[1] in inits
                else None)
        out.append(spec.macs(node, inits[node.input[1]], shapes) if spec is not None else 0)
    return out
