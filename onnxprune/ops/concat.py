"""Concat.

Along the channel axis: the output's labels are the inputs' labels end to end (``concat@offset``
maps, no coupling); untracked inputs become frozen sources. Along another axis: the inputs'
channels are unified position by position. Anything else freezes.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import OpSpec, RuleGraph, attr, freeze_inputs
from .registry import register


@register
class Concat(OpSpec):
    op_types = ("Concat",)

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        out = node.output[0]
        rank = len(g.shape(out))
        axis = attr(node, "axis") % rank
        tracked = [g.ch(n) for n in node.input if g.ch(n) is not None]
        if not tracked:
            return
        ch_axes = {c.axis for c in tracked}
        if ch_axes == {axis}:
            parts, offset = [], 0
            for name in node.input:
                ch = g.ch(name)
                if ch is None:
                    size = g.shape(name)[axis]
                    labels = g.new_source(name, axis, size, node.name, "Concat operand")
                    g.freeze(labels, "concatenated with an untracked tensor")
                    ch = g.ch(name)
                parts.append(ch.labels)
                g.set_channels(out, axis, np.concatenate(parts), name, how=f"concat@{offset}")
                offset += len(ch.labels)
            return
        aligned = len(ch_axes) == 1 and len(tracked) == len([n for n in node.input if n])
        if aligned and len({len(c.labels) for c in tracked}) == 1:
            for c in tracked[1:]:
                g.unify(tracked[0].labels, c.labels)
            for name in node.input:
                g.set_channels(out, tracked[0].axis, tracked[0].labels, name, how="unify")
            return
        freeze_inputs(g, node, "Concat of misaligned channels")
