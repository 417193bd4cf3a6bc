"""Gather: an embedding lookup is a source; gathering along another axis keeps the channels.

* Embedding (data a constant table ``T [V, E]``, ``axis`` 0): ``Y = T[indices]`` [..., E]. Y's
  last axis is a new source of E labels <-> T axis 1 (``out``: removing embedding dimension e
  removes column e of the table).
* Activation data with channels on an axis other than ``axis`` (ViT's class-token select,
  picking tokens): Y carries the channels (identity map); the channel axis moves by the index
  rank minus one when it lies after ``axis``. Gathering along the channel axis freezes.
"""

from __future__ import annotations

import onnx

from .base import OpSpec, RuleGraph, attr, freeze_inputs
from .registry import register


@register
class Gather(OpSpec):
    op_types = ("Gather",)

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        data, indices, y = node.input[0], node.input[1], node.output[0]
        table = g.const(data)
        axis = attr(node, "axis", 0)
        out_rank = len(g.shape(y) or ())
        if table is not None and table.ndim == 2 and axis % 2 == 0 and out_rank >= 1:
            g.new_source(y, out_rank - 1, table.shape[1], node.name, node.op_type)
            g.param(data, 1, y, "out", node, scored=True)
            return
        ch = g.ch(data)
        if ch is None:
            return
        axis %= len(g.shape(data))
        if ch.axis == axis or g.ch(indices) is not None:
            freeze_inputs(g, node, "Gather along the channel axis")
            return
        shift = len(g.shape(indices) or ()) - 1 if ch.axis > axis else 0
        g.set_channels(y, ch.axis + shift, ch.labels, data)
