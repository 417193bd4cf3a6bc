"""BatchNormalization, InstanceNormalization: per-channel statistics on axis 1.

Index map: identity on axis 1; every parameter input's axis 0 follows X's channels
(``channelwise``). Legacy attributes (``spatial``, ``consumed_inputs`` before opset 9) do not
change the map.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import OpSpec, RuleGraph, attr, freeze_inputs
from .registry import register


@register
class Normalization(OpSpec):
    op_types = ("BatchNormalization", "InstanceNormalization")
    trainable_inputs = (1, 2)  # scale, bias (not BatchNormalization's running statistics)

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        ch = g.ch(node.input[0])
        if ch is None:
            return
        if ch.axis != 1:
            freeze_inputs(g, node, f"{node.op_type} channels not on axis 1")
            return
        g.set_channels(node.output[0], 1, ch.labels, node.input[0])
        for p in node.input[1:]:
            g.param(p, 0, node.output[0], "channelwise", node)

    def running_stats(self, node: onnx.NodeProto) -> tuple[str, str] | None:
        """BatchNormalization's inputs 3 and 4 (InstanceNormalization keeps none)."""
        return (node.input[3], node.input[4]) if len(node.input) == 5 else None

    def channel_scale(self, node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> np.ndarray | None:
        """``|gamma| / sqrt(var + eps)`` of a BatchNormalization with constant parameters."""
        stats = self.running_stats(node)
        if stats is None:
            return None
        gamma, var = consts.get(node.input[1]), consts.get(stats[1])
        if gamma is None or var is None:
            return None
        eps = attr(node, "epsilon", 1e-5)
        return np.abs(gamma.astype(np.float64)) / np.sqrt(np.maximum(var.astype(np.float64) + eps, 1e-12))
