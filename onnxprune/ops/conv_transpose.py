"""ConvTranspose: W [Cin, Cout/group, k...]; X and Y carry channels on axis 1.

Index maps: X axis 1 <-> W axis 0 (consumer, role ``in``); Y axis 1 is a new source <-> W axis 1
and B (``out``). Grouped transposed convs freeze. Recovery does not refit it: each output pixel
sums a stride-dependent subset of kernel taps (a col2im scatter), so neither the conv window
features nor the bias compensation's ``sum_k W`` are its linear map.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import RuleGraph, WeightLayout, attr, freeze_inputs
from .linear import LinearSpec
from .registry import register


@register
class ConvTranspose(LinearSpec):
    op_types = ("ConvTranspose",)

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        x, w = node.input[0], g.const(node.input[1])
        ch, y = g.ch(x), node.output[0]
        if w is None or attr(node, "group", 1) != 1 or (ch is not None and ch.axis != 1):
            freeze_inputs(g, node, "grouped or computed-weight ConvTranspose")
            if w is not None:
                g.freeze(g.new_source(y, 1, w.shape[1] * attr(node, "group", 1), node.name,
                                      node.op_type), "grouped ConvTranspose")
            return
        if ch is not None:
            g.param(node.input[1], 0, x, "in", node, scored=True)
        g.new_source(y, 1, w.shape[1], node.name, node.op_type)
        g.param(node.input[1], 1, y, "out", node, scored=True)
        g.param(node.input[2] if len(node.input) > 2 else "", 0, y, "channelwise", node)

    def layout(self, node: onnx.NodeProto, w_shape: tuple[int, ...], x_rank: int) -> WeightLayout:
        return WeightLayout(x_axis=1, y_axis=1, w_in=0, w_out=1, groups=attr(node, "group", 1))

    def macs(self, node: onnx.NodeProto, w_shape: tuple[int, ...],
             shapes: dict[str, tuple[int, ...]]) -> int:
        """Every input element meets every weight of its channel: |X| * |W| / Cin."""
        x = shapes.get(node.input[0])
        return 0 if x is None else int(np.prod(x)) * int(np.prod(w_shape[1:]))

    def refit_skip(self, node: onnx.NodeProto, w_shape: tuple[int, ...]) -> str:
        return "ConvTranspose: no refit (its output is a stride-dependent scatter of kernel taps)"
