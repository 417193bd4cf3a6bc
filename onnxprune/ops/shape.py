"""Ops that read or copy shapes.

Shape, Size: reading a shape does not depend on which channels exist (no coupling, untracked
output). Expand, Tile: broadcast copies that keep the channel axis width carry the channels
(identity map); repeating the channel axis freezes. Expand's constant shape entry for the channel
axis becomes 1 (broadcast keeps the kept width: grouped-query attention's K/V head repeat); a
computed entry must already be 1.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import EditContext, OpSpec, RuleGraph, freeze_inputs, replace_at
from .registry import register


@register
class ShapeOf(OpSpec):
    op_types = ("Shape", "Size")

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        """No channel map: the output is untracked."""


@register
class Expand(OpSpec):
    op_types = ("Expand", "Tile")

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        ch = g.ch(node.input[0])
        if ch is None:
            return
        in_shape, out_shape = g.shape(node.input[0]), g.shape(node.output[0])
        axis = ch.axis + len(out_shape) - len(in_shape)
        if out_shape[axis] != len(ch.labels):
            freeze_inputs(g, node, f"{node.op_type} repeats the channel axis")
            return
        if node.op_type == "Expand":
            shape_name = node.input[1]
            target = g.value(shape_name)
            if target is None or (g.const(shape_name) is None and int(np.ravel(target)[axis]) != 1):
                freeze_inputs(g, node, "Expand with a computed shape")
                return
            if int(np.ravel(target)[axis]) != 1:
                def set_shape(r: EditContext) -> None:
                    r.set_const(shape_name, replace_at(r.const(shape_name), axis, 1))
                g.edit(set_shape)
        g.set_channels(node.output[0], axis, ch.labels, node.input[0])
