"""MatMul with a constant 2-D weight: Y[..., N] = A[..., K] B[K, N].

Index maps: A's last axis <-> B axis 0 (consumer, role ``in``); Y's last axis is a new source
<-> B axis 1 (``out``). Activation x activation (attention) and batched weights freeze.
"""

from __future__ import annotations

import onnx

from .base import RuleGraph, WeightLayout, freeze_inputs
from .linear import LinearSpec
from .registry import register


@register
class MatMul(LinearSpec):
    op_types = ("MatMul",)
    bias_input = None

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        a, b = node.input[0], g.const(node.input[1])
        ch, y = g.ch(a), node.output[0]
        rank = len(g.shape(a) or ())
        if b is None or b.ndim != 2 or rank < 2 or (ch is not None and ch.axis != rank - 1):
            freeze_inputs(g, node, "MatMul of two activations or batched weights")
            return
        if ch is not None:
            g.param(node.input[1], 0, a, "in", node, scored=True)
        g.new_source(y, rank - 1, b.shape[1], node.name, node.op_type)
        g.param(node.input[1], 1, y, "out", node, scored=True)

    def layout(self, node: onnx.NodeProto, w_shape: tuple[int, ...], x_rank: int) -> WeightLayout:
        return WeightLayout(x_axis=x_rank - 1, y_axis=x_rank - 1, w_in=0, w_out=1)
