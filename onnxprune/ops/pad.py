"""Pad: per channel (identity map) when nothing is padded on the channel axis.

Pads come from the ``pads`` attribute (opset < 11, legacy) or input 1, optionally restricted to
``axes`` (input 3, opset 18+).
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import OpSpec, RuleGraph, attr, axes_input, freeze_inputs
from .registry import register


@register
class Pad(OpSpec):
    op_types = ("Pad",)

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        ch = g.ch(node.input[0])
        if ch is None:
            return
        rank = len(g.shape(node.input[0]))
        pads = g.value(node.input[1]) if len(node.input) > 1 and node.input[1] else attr(node, "pads")
        axes = axes_input(g, node, 3) if len(node.input) > 3 else list(range(rank))
        if pads is None or axes is None:
            freeze_inputs(g, node, "Pad with computed pads")
            return
        pads = np.ravel(pads)
        for k, ax in enumerate(axes):
            if ax % rank == ch.axis and (pads[k] != 0 or pads[k + len(axes)] != 0):
                freeze_inputs(g, node, "Pad on the channel axis")
                return
        g.set_channels(node.output[0], ch.axis, ch.labels, node.input[0])
