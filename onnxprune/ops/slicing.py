"""Slice.

A unit-step slice on the channel axis keeps ``labels[start:end]`` (``slice@start`` map); start and
end become the kept counts before and within the slice (attributes before opset 10, constant
inputs 1 and 2 from opset 10). Other axes pass the channels through. Bounds computed from the
tensor's shape (``torch.chunk``: Shape -> Gather -> Div -> Slice) are proportional to the width:
the ``d`` chunks must keep equal counts, so position i of every chunk is unified. Strided slices
on the channel axis and other computed bounds freeze.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import EditContext, OpSpec, RuleGraph, attr, axes_input, freeze_inputs, replace_at
from .registry import register


def chunk(g: RuleGraph, node: onnx.NodeProto, labels: np.ndarray, start: int, end: int) -> None:
    """Unify position i of every chunk of width ``gcd(start, end, C)`` (at most 8 chunks)."""
    size = len(labels)
    step = np.gcd.reduce([start, end, size])
    if step == 0 or size // step > 8:
        g.freeze(labels, f"Slice with computed, non-proportional bounds ({node.name})")
        return
    blocks = labels.reshape(size // step, step)
    for k in range(1, len(blocks)):
        g.unify(blocks[0], blocks[k])


class _Slice(OpSpec):
    legacy = False  # bounds are attributes

    def bounds(self, g: RuleGraph, node: onnx.NodeProto):
        """``(starts, ends, axes, steps, computed)``; entries None when unknown."""
        if self.legacy:
            starts, ends = attr(node, "starts"), attr(node, "ends")
            return starts, ends, attr(node, "axes") or list(range(len(starts))), None, False
        starts, ends = g.const(node.input[1]), g.const(node.input[2])
        computed = starts is None or ends is None
        if computed:
            starts, ends = g.value(node.input[1]), g.value(node.input[2])
        axes = axes_input(g, node, 3)
        if axes == [] and starts is not None:
            axes = list(range(len(starts)))
        steps = g.const(node.input[4]) if len(node.input) > 4 and node.input[4] else None
        return starts, ends, axes, steps, computed

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        ch = g.ch(node.input[0])
        if ch is None:
            return
        rank = len(g.shape(node.input[0]))
        starts, ends, axes, steps, computed = self.bounds(g, node)
        step_missing = len(node.input) > 4 and node.input[4] and steps is None
        if starts is None or ends is None or axes is None or step_missing:
            freeze_inputs(g, node, "Slice with computed bounds")
            return
        axes = [int(a) % rank for a in axes]
        if ch.axis not in axes:
            g.set_channels(node.output[0], ch.axis, ch.labels, node.input[0])
            return
        k = axes.index(ch.axis)
        if steps is not None and int(np.ravel(steps)[k]) != 1:
            freeze_inputs(g, node, "strided Slice on the channel axis")
            return
        start, end, _ = slice(int(np.ravel(starts)[k]), int(np.ravel(ends)[k])).indices(len(ch.labels))
        g.set_channels(node.output[0], ch.axis, ch.labels[start:end], node.input[0],
                       how=f"slice@{start}")
        if computed:
            chunk(g, node, ch.labels, start, end)
            return
        source = node.input[0]

        def set_bounds(r: EditContext) -> None:
            mask = r.mask(source)
            new_start = int(mask[:start].sum())
            self.write_bounds(r, k, new_start, new_start + int(mask[start:max(end, start)].sum()))
        g.edit(set_bounds)

    def write_bounds(self, r: EditContext, k: int, start: int, end: int) -> None:
        if self.legacy:
            r.set_attr("starts", replace_at(attr(r.node, "starts"), k, start))
            r.set_attr("ends", replace_at(attr(r.node, "ends"), k, end))
            return
        r.set_const(r.node.input[1], replace_at(r.const(r.node.input[1]), k, start))
        r.set_const(r.node.input[2], replace_at(r.const(r.node.input[2]), k, end))


@register
class SliceAttr(_Slice):
    op_types = ("Slice",)
    max_opset = 9
    legacy = True


@register
class SliceInput(_Slice):
    op_types = ("Slice",)
    min_opset = 10
