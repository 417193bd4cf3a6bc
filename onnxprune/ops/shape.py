"""Ops that read or copy shapes.

Shape, Size: reading a shape does not depend on which channels exist (no coupling, untracked
output). Expand, Tile: broadcast copies that keep the channel axis width carry the channels
(identity map); repeating the channel axis freezes.
"""

from __future__ import annotations

import onnx

from .base import OpSpec, RuleGraph, freeze_inputs
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
        g.set_channels(node.output[0], axis, ch.labels, node.input[0])
