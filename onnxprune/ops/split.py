"""Split.

Along the channel axis: output k carries the k-th sub-range of the labels (``slice@offset``
maps); the split sizes become the kept counts -- written as the ``split`` attribute before
opset 13 and as input 1 from opset 13 (which also drops ``num_outputs``, opset 18). Along another
axis every output carries all the channels. Computed sizes freeze.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import EditContext, OpSpec, RuleGraph, attr, freeze_inputs
from .registry import register


def split_sizes(g: RuleGraph, node: onnx.NodeProto, total: int) -> list[int] | None:
    """The split sizes (input 1, the ``split`` attribute, or equal parts), None if computed."""
    if len(node.input) > 1 and node.input[1]:
        value = g.value(node.input[1])
        return None if value is None else [int(v) for v in np.ravel(value)]
    sizes = attr(node, "split")
    if sizes:
        return list(sizes)
    n = len(node.output)
    if total % n:
        return None
    return [total // n] * n


class _Split(OpSpec):
    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        ch = g.ch(node.input[0])
        if ch is None:
            return
        rank = len(g.shape(node.input[0]))
        axis = attr(node, "axis", 0) % rank
        if axis != ch.axis:
            for out in node.output:
                g.set_channels(out, ch.axis, ch.labels, node.input[0])
            return
        sizes = split_sizes(g, node, len(ch.labels))
        if sizes is None or (len(node.input) > 1 and node.input[1] and g.const(node.input[1]) is None):
            freeze_inputs(g, node, "Split with computed sizes")
            return
        offset = 0
        for out, size in zip(node.output, sizes):
            g.set_channels(out, axis, ch.labels[offset:offset + size], node.input[0],
                           how=f"slice@{offset}")
            offset += size

        def set_sizes(r: EditContext) -> None:
            self.write_sizes(r, [int(r.mask(o).sum()) for o in r.node.output])
        g.edit(set_sizes)

    def write_sizes(self, r: EditContext, kept: list[int]) -> None:
        raise NotImplementedError


@register
class SplitAttr(_Split):
    op_types = ("Split",)
    max_opset = 12

    def write_sizes(self, r: EditContext, kept: list[int]) -> None:
        r.set_attr("split", kept)


@register
class SplitInput(_Split):
    op_types = ("Split",)
    min_opset = 13

    def write_sizes(self, r: EditContext, kept: list[int]) -> None:
        sizes = np.array(kept, dtype=np.int64)
        for a in list(r.node.attribute):
            if a.name == "num_outputs":
                r.node.attribute.remove(a)
        if len(r.node.input) > 1 and r.node.input[1]:
            r.set_const(r.node.input[1], sizes)
            return
        name = f"{r.node.output[0]}__split_sizes"
        r.inits[name] = onnx.numpy_helper.from_array(sizes, name)
        r.graph.initializer.append(r.inits[name])
        del r.node.input[1:]
        r.node.input.append(name)
