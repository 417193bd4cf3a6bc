"""MatMul with a constant 2-D weight: Y[..., N] = A[..., K] B[K, N].

Index maps: A's last axis <-> B axis 0 (consumer, role ``in``); Y's last axis is a new source
<-> B axis 1 (``out``). Batched weights freeze.

MatMul of two activations (attention's Q K^T and scores x V): channels on a batch axis (the
heads axis) pass to the same output axis, numpy-broadcast from the right, and are unified with
the other operand's channels there (the heads of Q, K and V are one head; grouped-query
attention's repeated K/V heads couple the Q heads that share them); an untracked operand must
broadcast (size 1) on that axis. A's row axis and B's column axis carry to Y's. Channels on
the contracted axis freeze.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import RuleGraph, WeightLayout, freeze_inputs
from .linear import LinearSpec
from .registry import register


@register
class MatMul(LinearSpec):
    op_types = ("MatMul",)
    bias_input = None
    trainable_inputs = (0,)  # A may be the constant operand

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        a, b = node.input[0], g.const(node.input[1])
        ch, y = g.ch(a), node.output[0]
        rank = len(g.shape(a) or ())
        if b is None and g.const(a) is None:
            activations(g, node)
            return
        if b is None or b.ndim != 2 or rank < 2 or (ch is not None and ch.axis != rank - 1):
            freeze_inputs(g, node, "MatMul with a batched or computed weight")
            return
        if ch is not None:
            g.param(node.input[1], 0, a, "in", node, scored=True)
        g.new_source(y, rank - 1, b.shape[1], node.name, node.op_type)
        g.param(node.input[1], 1, y, "out", node, scored=True)

    def layout(self, node: onnx.NodeProto, w_shape: tuple[int, ...], x_rank: int) -> WeightLayout:
        return WeightLayout(x_axis=x_rank - 1, y_axis=x_rank - 1, w_in=0, w_out=1)


def activations(g: RuleGraph, node: onnx.NodeProto) -> None:
    """The channel map of a MatMul of two activations (see the module docstring)."""
    (a, b), y = node.input[:2], node.output[0]
    ranks = [len(g.shape(a) or ()), len(g.shape(b) or ())]
    out_rank = len(g.shape(y) or ())
    if min(ranks) < 2:
        freeze_inputs(g, node, "MatMul of a vector activation")
        return
    placed: dict[int, list[tuple[str, np.ndarray]]] = {}
    for k, (name, rank) in enumerate(zip((a, b), ranks)):
        ch = g.ch(name)
        if ch is None:
            continue
        if ch.axis == rank - 1 - k:  # A's last axis, B's second-to-last: contracted
            freeze_inputs(g, node, "MatMul contracts the channels of two activations")
            return
        placed.setdefault(ch.axis + out_rank - rank, []).append((name, ch.labels))
    if len(placed) != 1:
        if placed:
            freeze_inputs(g, node, "MatMul with channels on two output axes")
        return
    (axis, tracked), = placed.items()
    if axis < out_rank - 2 and len(tracked) == 1:
        other, rank = (b, ranks[1]) if tracked[0][0] == a else (a, ranks[0])
        local = axis - (out_rank - rank)
        if 0 <= local and (g.shape(other) or ())[local] != 1:
            freeze_inputs(g, node, "MatMul with an untracked full-width operand")
            return
    first = tracked[0][1]
    for _, labels in tracked[1:]:
        g.unify(first, labels)
    for name, _ in tracked:
        g.set_channels(y, axis, first, name, how="unify" if name != tracked[0][0] else "identity")
