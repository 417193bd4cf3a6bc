"""Ops normalising along ``axis``: the channels pass through (identity map) unless they are
among the normalised axes.

Softmax, LogSoftmax and Hardmax before opset 13 coerce the input to 2-D at ``axis`` and so
normalise over ``axis`` and every axis after it, like LayerNormalization; from opset 13 they
normalise over ``axis`` alone, like LpNormalization.
"""

from __future__ import annotations

import onnx

from .base import OpSpec, RuleGraph, attr, freeze_through
from .registry import register

SOFTMAXES = ("Softmax", "LogSoftmax", "Hardmax")


class _AlongAxis(OpSpec):
    to_end = False  # normalises from ``axis`` to the last axis
    default_axis = -1

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        ch = g.ch(node.input[0])
        if ch is None:
            return
        rank = len(g.shape(node.input[0]))
        axis = attr(node, "axis", self.default_axis) % rank
        if ch.axis == axis or (self.to_end and ch.axis >= axis):
            freeze_through(g, node, f"{node.op_type} normalises over the channels (its "
                                    "statistics change when channels go)")
            return
        g.set_channels(node.output[0], ch.axis, ch.labels, node.input[0])


@register
class SoftmaxLegacy(_AlongAxis):
    op_types = SOFTMAXES
    max_opset = 12
    to_end = True
    default_axis = 1


@register
class Softmax(_AlongAxis):
    op_types = SOFTMAXES
    min_opset = 13


@register
class LayerNormalization(_AlongAxis):
    """ONNX's from opset 17; onnxruntime also runs it at earlier opsets, and RMSNorm
    (``SimplifiedLayerNormalization``), as contrib ops of the default domain, same ``axis``."""

    op_types = ("LayerNormalization", "SimplifiedLayerNormalization")
    to_end = True
    trainable_inputs = (1, 2)  # scale, bias


@register
class LpNormalization(_AlongAxis):
    op_types = ("LpNormalization",)
