"""Transpose: the channel axis moves to ``perm.index(axis)`` (NHWC <-> NCHW, ``transpose`` map).

A channel axis split into a block of axes (channel shuffle) may be permuted as long as the
block's axes stay adjacent: the labels are permuted with them (``shuffle`` map).
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import OpSpec, RuleGraph, attr, freeze_inputs
from .registry import register


@register
class Transpose(OpSpec):
    op_types = ("Transpose",)
    split_axis_ok = True

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        ch = g.ch(node.input[0])
        if ch is None:
            return
        rank = len(g.shape(node.input[0]))
        perm = list(attr(node, "perm", list(reversed(range(rank)))))
        if not ch.block:
            g.set_channels(node.output[0], perm.index(ch.axis), ch.labels, node.input[0],
                           how="transpose")
            return
        where = [perm.index(a) for a in range(ch.axis, ch.axis + len(ch.block))]
        start = min(where)
        if sorted(where) != list(range(start, start + len(where))):
            freeze_inputs(g, node, "Transpose separates a split channel axis")
            return
        order = np.argsort(where)  # block axes in their new order
        labels = ch.labels.reshape(ch.block).transpose(order)
        g.set_channels(node.output[0], start, labels.reshape(-1), node.input[0], how="shuffle",
                       block=tuple(labels.shape))
