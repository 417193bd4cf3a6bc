"""Gemm: Y = A B (+ C) with B constant, A [M, K], Y [M, N].

Index maps: A axis 1 (K) <-> B's K axis (axis 1 with ``transB``, else 0; consumer, role ``in``);
Y axis 1 is a new source <-> B's N axis and C's last axis when C is per-unit (``out``). ``transA``
or a computed B freezes.
"""

from __future__ import annotations

import onnx

from .base import RuleGraph, WeightLayout, attr, freeze_inputs
from .linear import LinearSpec
from .registry import register


@register
class Gemm(LinearSpec):
    op_types = ("Gemm",)
    trainable_inputs = (0,)  # A may be the constant operand

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        a, b = node.input[0], g.const(node.input[1])
        ch, y = g.ch(a), node.output[0]
        if b is None or attr(node, "transA", 0) or (ch is not None and ch.axis != 1):
            freeze_inputs(g, node, "Gemm with transA, computed B or a moved axis")
            return
        lay = self.layout(node, b.shape, 2)
        if ch is not None:
            g.param(node.input[1], lay.w_in, a, "in", node, scored=True)
        n = b.shape[lay.w_out]
        g.new_source(y, 1, n, node.name, node.op_type)
        g.param(node.input[1], lay.w_out, y, "out", node, scored=True)
        c = g.const(node.input[2]) if len(node.input) > 2 else None
        if c is not None and c.ndim >= 1 and c.shape[-1] == n and n > 1:
            g.param(node.input[2], c.ndim - 1, y, "channelwise", node)

    def layout(self, node: onnx.NodeProto, w_shape: tuple[int, ...], x_rank: int) -> WeightLayout:
        trans_b = bool(attr(node, "transB", 0))
        return WeightLayout(x_axis=1, y_axis=1, w_in=1 if trans_b else 0, w_out=0 if trans_b else 1)
