"""Reductions: reducing spatial axes keeps the channels (squeeze-excite; the channel axis moves
left by the number of reduced axes before it when ``keepdims=0``; empty axes with
``noop_with_empty_axes`` reduce nothing); reducing the channel axis, or computed axes, freeze.
"""

from __future__ import annotations

import onnx

from .base import OpSpec, RuleGraph, attr, axes_input, freeze_inputs
from .registry import register


@register
class Reduce(OpSpec):
    op_types = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL1", "ReduceL2",
                "ReduceLogSumExp", "ReduceProd", "ReduceSumSquare")

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        ch = g.ch(node.input[0])
        if ch is None:
            return
        rank = len(g.shape(node.input[0]))
        axes = axes_input(g, node, 1)
        if axes is None:
            freeze_inputs(g, node, "Reduce over computed axes")
            return
        if not axes and attr(node, "noop_with_empty_axes", 0):
            g.set_channels(node.output[0], ch.axis, ch.labels, node.input[0])
            return
        axes = [a % rank for a in axes] or list(range(rank))
        if ch.axis in axes:
            freeze_inputs(g, node, f"{node.op_type} over the channel axis")
            return
        keep = attr(node, "keepdims", 1)
        axis = ch.axis if keep else ch.axis - sum(a < ch.axis for a in axes)
        g.set_channels(node.output[0], axis, ch.labels, node.input[0])
