"""Numpy-broadcasting binary / variadic ops (Add, Mul, Where, ...).

Index map: tracked inputs must align their channel axis (counted from the right) and are
unified position by position (``unify``: residual Add, squeeze-excite Mul); a constant of full
width on that axis is sliced with them (``channelwise``: per-channel bias, scale, PRelu slope); a
constant of width 1 broadcasts. Anything else (an untracked activation of full width, misaligned
axes) freezes the channels.
"""

from __future__ import annotations

import onnx

from .base import OpSpec, RuleGraph, freeze_inputs
from .registry import register


@register
class Broadcast(OpSpec):
    op_types = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where",
                "Equal", "Less", "Greater", "And", "Or")

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        out = node.output[0]
        out_rank = len(g.shape(out) or ())
        tracked = [(n, g.ch(n)) for n in node.input if g.ch(n) is not None]
        if not tracked:
            return
        axes = {ch.axis + out_rank - len(g.shape(n)) for n, ch in tracked}
        width = len(tracked[0][1].labels)
        widths = {len(ch.labels) for _, ch in tracked}
        if len(axes) != 1 or widths != {width} or (
                width == 1 and (g.shape(out) or (1,))[min(axes)] != 1):
            freeze_inputs(g, node, f"{node.op_type} with misaligned channels")
            return
        axis = axes.pop()
        slices = []
        for name in node.input:
            if not name or g.ch(name) is not None:
                continue
            shape = g.shape(name) or ()
            local = axis - (out_rank - len(shape))
            size = shape[local] if 0 <= local < len(shape) else 1
            if size == 1:
                continue
            if g.const(name) is not None and size == width:
                slices.append((name, local))
                continue
            freeze_inputs(g, node, f"{node.op_type} with an untracked full-width operand")
            return
        first = tracked[0][1].labels
        for _, ch in tracked[1:]:
            g.unify(first, ch.labels)
        g.set_channels(out, axis, first, tracked[0][0])
        for n, _ in tracked[1:]:
            g.set_channels(out, axis, first, n, how="unify")
        for name, local in slices:
            g.param(name, local, out, "channelwise", node)
