"""Reshape, Flatten, Squeeze, Unsqueeze: follow the labels through the row-major reshape.

Lay the input's labels out over its shape, reshape, and find the one output axis along which
they vary (``reshape`` map; Flatten into a Gemm repeats each channel once per spatial position:
``repeat xN``). The dims before the channel axis must be preserved. A Reshape's constant shape
entry for that axis is set to the kept count; a computed shape must hold -1 there.

A Reshape that splits the channel axis C -> (rows, C / rows) on two consecutive axes has two
exact readings:

* **attention heads** (``rows`` heads of ``D = C / rows``): when the split tensor reaches a MatMul
  of two activations within a few ops (:func:`attends`: Q K^T, attention x V), each row is one
  head: its D labels are unified, the channel axis becomes the heads axis (labels: one per head),
  D stays. The shape's heads entry becomes the kept head count (or stays -1). Merging the heads
  back, (H, D) -> H * D, repeats each head's label D times (``repeat xD``).
* **channel shuffle** (anything else, constant shape only): the block must stay rectangular, so
  column j of every row is one channel (unified), and the shape's column entry becomes the kept
  count / rows.

Anything else freezes.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import ChannelSpace, EditContext, OpSpec, RuleGraph, freeze_inputs, replace_at
from .registry import register

Shape = tuple[int, ...]
ATTENTION_DEPTH = 24  # ops searched downstream of a split for the attention MatMul
CONTRACTIONS = ("MatMul", "Einsum")
LAYERS = ("MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum")


def attends(g: RuleGraph, tensor: str, depth: int = ATTENTION_DEPTH) -> bool:
    """True when ``tensor`` reaches a MatMul/Einsum of two activations (no constant operand)
    within ``depth`` ops downstream, before any layer with a weight: the signature of
    attention's per-head products (rotary embeddings and K/V head repeats may lie between)."""
    frontier, seen = [tensor], {tensor}
    for _ in range(depth):
        nxt = []
        for name in frontier:
            for node in g.consumers(name):
                if node.op_type in LAYERS:
                    if node.op_type in CONTRACTIONS and all(g.const(i) is None for i in node.input):
                        return True
                    continue
                nxt += [o for o in node.output if o and o not in seen]
                seen.update(node.output)
        frontier = nxt
    return False


def label_field(ch: ChannelSpace, in_shape: Shape | None, out_shape: Shape | None) -> np.ndarray | None:
    """The input's labels laid out over its shape, reshaped to ``out_shape`` (or None)."""
    if in_shape is None or out_shape is None:
        return None
    size = int(np.prod(in_shape))
    if size > (1 << 24) or size != int(np.prod(out_shape)):
        return None
    block = ch.block or (len(ch.labels),)
    view = [1] * len(in_shape)
    view[ch.axis:ch.axis + len(block)] = block
    return np.broadcast_to(ch.labels.reshape(view), in_shape).reshape(out_shape)


def follow_reshape(ch: ChannelSpace, in_shape: Shape | None, out_shape: Shape | None
                   ) -> tuple[int, np.ndarray] | None:
    """``(output axis, labels along it)`` when the labels vary along exactly that axis."""
    field = label_field(ch, in_shape, out_shape)
    if field is None:
        return None
    lead = int(np.prod(in_shape[:ch.axis]))
    for axis in range(len(out_shape)):
        if int(np.prod(out_shape[:axis])) != lead:
            continue
        moved = np.moveaxis(field, axis, 0).reshape(out_shape[axis], -1)
        if (moved == moved[:, :1]).all():
            labels = moved[:, 0]
            if out_shape[axis] >= len(ch.labels):
                return axis, labels
    return None


class _Reshape(OpSpec):
    shape_input = False  # input 1 is the target shape (Reshape)
    split_axis_ok = True

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        x, y = node.input[0], node.output[0]
        ch = g.ch(x)
        if ch is None:
            return
        in_shape, out_shape = g.shape(x), g.shape(y)
        found, heads = follow_reshape(ch, in_shape, out_shape), False
        if found is None and self.shape_input:
            found, heads = self.split_heads(g, node, ch, in_shape, out_shape), True
        if found is None:
            if not self.split_channels(g, node, ch, in_shape, out_shape):
                freeze_inputs(g, node, f"{node.op_type} splits or mixes the channel axis")
            return
        axis, labels = found
        if self.shape_input:
            shape_name = node.input[1]
            target = g.value(shape_name)
            is_const = g.const(shape_name) is not None
            if target is None or (not is_const and int(np.ravel(target)[axis]) != -1):
                freeze_inputs(g, node, "Reshape with a computed shape")
                return
            if is_const and int(np.ravel(target)[axis]) != -1:
                def set_shape(r: EditContext) -> None:
                    r.set_const(shape_name, replace_at(r.const(shape_name), axis, int(r.mask(y).sum())))
                g.edit(set_shape)
        repeat = len(labels) // max(len(ch.labels), 1)
        if heads:
            how = f"heads of {len(ch.labels) // len(labels)}"
        else:
            how = f"repeat x{repeat}" if repeat > 1 else "reshape"
        g.set_channels(y, axis, labels, x, how=how)

    @staticmethod
    def _split_block(ch: ChannelSpace, in_shape: Shape | None, out_shape: Shape | None):
        """``(axis, block)`` for every way the reshape splits the (unsplit) channel axis into
        consecutive output axes ``axis, axis + 1``; ``block`` [rows, cols] holds the labels."""
        field = label_field(ch, in_shape, out_shape)
        if field is None or ch.block:
            return
        lead = int(np.prod(in_shape[:ch.axis]))
        for axis in range(len(out_shape) - 1):
            if (int(np.prod(out_shape[:axis])) != lead
                    or out_shape[axis] * out_shape[axis + 1] != len(ch.labels)):
                continue
            moved = np.moveaxis(field, (axis, axis + 1), (0, 1)).reshape(
                out_shape[axis], out_shape[axis + 1], -1)
            if (moved == moved[:, :, :1]).all():
                yield axis, moved[:, :, 0]

    def split_heads(self, g: RuleGraph, node: onnx.NodeProto, ch: ChannelSpace,
                    in_shape: Shape | None, out_shape: Shape | None) -> tuple[int, np.ndarray] | None:
        """Attention's C -> (heads, D) split (see the module docstring): ``(heads axis, one
        label per head)`` after unifying each head's D labels, or None."""
        if not attends(g, node.output[0]):
            return None
        for axis, block in self._split_block(ch, in_shape, out_shape):
            for row in block:
                g.unify(np.full_like(row, row[0]), row)
            return axis, block[:, 0]
        return None

    def split_channels(self, g: RuleGraph, node: onnx.NodeProto, ch: ChannelSpace,
                       in_shape: Shape | None, out_shape: Shape | None) -> bool:
        """Channel shuffle's C -> (rows, C / rows) split (see the module docstring)."""
        if not self.shape_input or g.const(node.input[1]) is None:
            return False
        for axis, block in self._split_block(ch, in_shape, out_shape):
            for row in block[1:]:
                g.unify(block[0], row)
            rows, shape_name, y = out_shape[axis], node.input[1], node.output[0]

            def set_shape(r: EditContext, axis=axis, rows=rows, y=y, shape_name=shape_name) -> None:
                r.set_const(shape_name,
                            replace_at(r.const(shape_name), axis + 1, int(r.mask(y).sum()) // rows))
            g.edit(set_shape)
            g.set_channels(y, axis, block.reshape(-1), node.input[0],
                           how=f"split into {rows} rows", block=block.shape)
            return True
        return False


@register
class Reshape(_Reshape):
    op_types = ("Reshape",)
    shape_input = True


@register
class ShapeOnly(_Reshape):
    """Flatten, Squeeze, Unsqueeze: the output shape follows from attributes / axes alone."""

    op_types = ("Flatten", "Squeeze", "Unsqueeze")
