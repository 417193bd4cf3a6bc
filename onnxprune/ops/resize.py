"""Resize and Upsample: per channel when the channel axis is not rescaled (identity map).

Where the scales live depends on the op and opset: Upsample-7/8 ``scales`` attribute,
Upsample-9/10 and Resize-10 input 1, Resize-11+ input 2 (with constant ``sizes`` in input 3,
whose channel entry becomes the kept width). A scale other than 1 on the channel axis, or
computed sizes, freeze.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import EditContext, OpSpec, RuleGraph, attr, freeze_inputs
from .registry import register


class _Rescale(OpSpec):
    scales_input: int | None = None
    sizes_input: int | None = None

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        ch = g.ch(node.input[0])
        if ch is None:
            return
        k = self.scales_input
        if k is None:
            scales = attr(node, "scales")
        else:
            scales = g.value(node.input[k]) if len(node.input) > k and node.input[k] else None
        if scales is not None and np.size(scales) and float(np.ravel(scales)[ch.axis]) != 1.0:
            freeze_inputs(g, node, f"{node.op_type} scales the channel axis")
            return
        k = self.sizes_input
        sizes_name = node.input[k] if k is not None and len(node.input) > k else ""
        if sizes_name:
            if g.const(sizes_name) is None:
                freeze_inputs(g, node, f"{node.op_type} with computed sizes")
                return
            axis = ch.axis

            def set_sizes(r: EditContext) -> None:
                sizes = r.const(sizes_name).copy()
                sizes[axis] = int(r.mask(r.node.output[0]).sum())
                r.set_const(sizes_name, sizes)
            g.edit(set_sizes)
        g.set_channels(node.output[0], ch.axis, ch.labels, node.input[0])


@register
class UpsampleAttr(_Rescale):
    op_types = ("Upsample",)
    max_opset = 8


@register
class UpsampleInput(_Rescale):
    op_types = ("Upsample",)
    min_opset, max_opset = 9, 10
    scales_input = 1


@register
class Resize10(_Rescale):
    op_types = ("Resize",)
    min_opset, max_opset = 10, 10
    scales_input = 1


@register
class Resize(_Rescale):
    op_types = ("Resize",)
    min_opset = 11
    scales_input, sizes_input = 2, 3
