"""One channel rule per op family, in a registry keyed by op type.

A rule reads its node's input channels (:class:`~onnxprune.graph.Channels`) and declares:

* the output channels -- fresh labels (a source), or the input labels carried along an index map;
* couplings (``g.unify``) and frozen channels (``g.freeze``);
* the initializer slices that follow a channel space (``g.param``: which axis of which
  initializer is indexed like which tensor's channel positions);
* edits of attributes or shape constants that depend on the kept widths (``g.edit``).

The index map of every rule is therefore explicit: position i of an initializer axis follows
position i of a tensor's channel axis, and a tensor's positions follow its labels. Ops without a
rule freeze every channel they touch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from .graph import ChannelGraph, Rewriter

Rule = Callable[[ChannelGraph, onnx.NodeProto], None]
RULES: dict[str, Rule] = {}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the rule for ``op_types``."""
    def register(fn: Rule) -> Rule:
        for op in op_types:
            RULES[op] = fn
        return fn
    return register


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def freeze_inputs(g: ChannelGraph, node: onnx.NodeProto, reason: str) -> None:
    """The fallback: every tracked input is frozen and the outputs are untracked."""
    for name in node.input:
        g.freeze_tensor(name, f"{reason} ({node.name or node.op_type})")


def passthrough(g: ChannelGraph, node: onnx.NodeProto, axes_ok: Callable[[int, int], bool] | None = None) -> None:
    """Output 0 carries input 0's channels unchanged (unary element-wise ops)."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    rank = len(g.shape(node.input[0]) or ())
    if axes_ok is not None and not axes_ok(ch.axis, rank):
        freeze_inputs(g, node, f"{node.op_type} mixes the channel axis")
        return
    g.set_channels(node.output[0], ch.axis, ch.labels, node.input[0])


def _nchw(axis: int, rank: int) -> bool:
    return axis == 1


def _axes_input(g: ChannelGraph, node: onnx.NodeProto, index: int, name: str = "axes"):
    """Axes given as attribute (old opsets) or as constant input ``index`` (new opsets)."""
    if len(node.input) > index and node.input[index]:
        value = g.value(node.input[index])
        return None if value is None else [int(v) for v in np.ravel(value)]
    value = attr(node, name)
    return [] if value is None else list(value)


# -- producers and consumers -----------------------------------------------------------------

@rule("Conv")
def conv(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """W [Cout, Cin/group, k...]. group=1: X axis 1 <-> W axis 1 (consumer), Y axis 1 is a new
    source <-> W axis 0 and B. Depthwise (group = Cin = Cout): Y carries X's labels, W axis 0 and
    B follow them and ``group`` becomes the kept width. Other groups: every group must keep the
    same count, so channel j of each input group is unified across groups (W axis 1 follows the
    first group's positions), and likewise output channel j of each group."""
    x, w = node.input[0], g.const(node.input[1])
    bias = node.input[2] if len(node.input) > 2 else ""
    ch, y = g.ch(x), node.output[0]
    if w is None:
        freeze_inputs(g, node, "Conv with computed weights")
        return
    if ch is not None and ch.axis != 1:
        freeze_inputs(g, node, "Conv input channels not on axis 1")
        ch = None
    groups = attr(node, "group", 1)
    cout, cin_g = w.shape[0], w.shape[1]
    if groups > 1 and cin_g == 1 and cout == groups:  # depthwise
        if ch is None:
            return
        g.set_channels(y, 1, ch.labels, x, how="depthwise")
        g.param(node.input[1], 0, y, "channelwise", node, scored=True)
        g.param(bias, 0, y, "channelwise", node)
        g.edit(lambda r: r.set_attr("group", int(r.mask(r.node.output[0]).sum())))
        return
    if groups > 1 and (cout % groups or (ch is not None and len(ch.labels) != cin_g * groups)):
        reason = f"grouped Conv (group={groups}) with a channel multiplier"
        freeze_inputs(g, node, reason)
        g.freeze(g.new_source(y, 1, cout, node.name, node.op_type), reason)
        return
    if ch is not None:
        blocks = ch.labels.reshape(groups, cin_g)
        for k in range(1, groups):
            g.unify(blocks[0], blocks[k])
        first = x if groups == 1 else f"{x}#{node.name or node.output[0]}:group0"
        if groups > 1:
            g.set_channels(first, 1, blocks[0], x, how=f"group block of {cin_g}")
        g.param(node.input[1], 1, first, "in", node, scored=True)
    labels = g.new_source(y, 1, cout, node.name, node.op_type).reshape(groups, cout // groups)
    for k in range(1, groups):
        g.unify(labels[0], labels[k])
    g.param(node.input[1], 0, y, "out", node, scored=True)
    g.param(bias, 0, y, "channelwise", node)


@rule("ConvTranspose")
def conv_transpose(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """W [Cin, Cout/group, k...]: X axis 1 <-> W axis 0 (consumer); Y axis 1 is a new source
    <-> W axis 1 and B. Grouped transposed convs are frozen."""
    x, w = node.input[0], g.const(node.input[1])
    ch, y = g.ch(x), node.output[0]
    if w is None or attr(node, "group", 1) != 1 or (ch is not None and ch.axis != 1):
        freeze_inputs(g, node, "grouped or computed-weight ConvTranspose")
        if w is not None:
            g.freeze(g.new_source(y, 1, w.shape[1] * attr(node, "group", 1), node.name, node.op_type),
                     "grouped ConvTranspose")
        return
    if ch is not None:
        g.param(node.input[1], 0, x, "in", node, scored=True)
    g.new_source(y, 1, w.shape[1], node.name, node.op_type)
    g.param(node.input[1], 1, y, "out", node, scored=True)
    g.param(node.input[2] if len(node.input) > 2 else "", 0, y, "channelwise", node)


@rule("Gemm")
def gemm(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Y = A B (+C), B constant. A's K axis (1) <-> B's K axis (consumer); Y axis 1 is a new
    source <-> B's N axis and C's last axis when C is per-unit."""
    a, b = node.input[0], g.const(node.input[1])
    ch, y = g.ch(a), node.output[0]
    trans_b = attr(node, "transB", 0)
    if b is None or attr(node, "transA", 0) or (ch is not None and ch.axis != 1):
        freeze_inputs(g, node, "Gemm with transA, computed B or a moved axis")
        return
    if ch is not None:
        g.param(node.input[1], 1 if trans_b else 0, a, "in", node, scored=True)
    n = b.shape[0] if trans_b else b.shape[1]
    g.new_source(y, 1, n, node.name, node.op_type)
    g.param(node.input[1], 0 if trans_b else 1, y, "out", node, scored=True)
    c = g.const(node.input[2]) if len(node.input) > 2 else None
    if c is not None and c.ndim >= 1 and c.shape[-1] == n and n > 1:
        g.param(node.input[2], c.ndim - 1, y, "channelwise", node)


@rule("MatMul")
def matmul(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Y[..., N] = A[..., K] B[K, N] with B constant: A's last axis <-> B axis 0 (consumer), Y's
    last axis is a new source <-> B axis 1. Activation x activation (attention) is frozen."""
    a, b = node.input[0], g.const(node.input[1])
    ch, y = g.ch(a), node.output[0]
    rank = len(g.shape(a) or ())
    if b is None or b.ndim != 2 or rank < 2 or (ch is not None and ch.axis != rank - 1):
        freeze_inputs(g, node, "MatMul of two activations or batched weights")
        return
    if ch is not None:
        g.param(node.input[1], 0, a, "in", node, scored=True)
    g.new_source(y, rank - 1, b.shape[1], node.name, node.op_type)
    g.param(node.input[1], 1, y, "out", node, scored=True)


# -- per-channel pass-through ----------------------------------------------------------------

@rule("BatchNormalization", "InstanceNormalization")
def normalization(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Per-channel statistics on axis 1: every parameter input's axis 0 follows X's channels."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    if ch.axis != 1:
        freeze_inputs(g, node, f"{node.op_type} channels not on axis 1")
        return
    g.set_channels(node.output[0], 1, ch.labels, node.input[0])
    for p in node.input[1:]:
        g.param(p, 0, node.output[0], "channelwise", node)


UNARY = (
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Erf", "Softplus", "Softsign", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign", "Sin", "Cos", "Gelu", "Mish", "ThresholdedRelu", "Identity", "Cast",
    "Clip", "Dropout", "Not", "IsNaN", "IsInf",
)


@rule(*UNARY)
def unary(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Element-wise: output 0 carries input 0's channels (Clip bounds and Dropout's ratio are
    scalars; Dropout's mask output is not tracked)."""
    passthrough(g, node)


@rule("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where",
      "Equal", "Less", "Greater", "And", "Or")
def broadcast(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Numpy-broadcasting ops. Tracked inputs must align their channel axis (counted from the
    right) and are unified position by position; a constant of full width on that axis is sliced
    with it (per-channel bias, scale, PRelu slope); a constant of width 1 broadcasts. Anything
    else (an untracked activation of full width, misaligned axes) freezes the channels."""
    out = node.output[0]
    out_rank = len(g.shape(out) or ())
    tracked = [(n, g.ch(n)) for n in node.input if g.ch(n) is not None]
    if not tracked:
        return
    axes = {ch.axis + out_rank - len(g.shape(n)) for n, ch in tracked}
    width = len(tracked[0][1].labels)
    widths = {len(ch.labels) for _, ch in tracked}
    if len(axes) != 1 or widths != {width} or (width == 1 and (g.shape(out) or (1,))[min(axes)] != 1):
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


# -- shape movers ----------------------------------------------------------------------------

@rule("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def pool(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Pooling works per channel on axis 1 (MaxPool's indices output is not tracked)."""
    passthrough(g, node, _nchw)


@rule("Resize", "Upsample")
def resize(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Per channel when the channel axis is not rescaled; constant ``sizes`` get the kept width."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    scales = g.value(node.input[2] if node.op_type == "Resize" else node.input[1]) \
        if len(node.input) > (2 if node.op_type == "Resize" else 1) else attr(node, "scales")
    sizes_name = node.input[3] if node.op_type == "Resize" and len(node.input) > 3 else ""
    if scales is not None and np.size(scales) and float(np.ravel(scales)[ch.axis]) != 1.0:
        freeze_inputs(g, node, "Resize scales the channel axis")
        return
    if sizes_name:
        if g.const(sizes_name) is None:
            freeze_inputs(g, node, "Resize with computed sizes")
            return
        axis = ch.axis

        def set_sizes(r: Rewriter) -> None:
            sizes = r.const(sizes_name).copy()
            sizes[axis] = int(r.mask(r.node.output[0]).sum())
            r.set_const(sizes_name, sizes)
        g.edit(set_sizes)
    g.set_channels(node.output[0], ch.axis, ch.labels, node.input[0])


@rule("Pad")
def pad(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Per channel when nothing is padded on the channel axis."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    rank = len(g.shape(node.input[0]))
    pads = g.value(node.input[1]) if len(node.input) > 1 and node.input[1] else attr(node, "pads")
    axes = _axes_input(g, node, 3) if len(node.input) > 3 else list(range(rank))
    if pads is None or axes is None:
        freeze_inputs(g, node, "Pad with computed pads")
        return
    pads = np.ravel(pads)
    for k, ax in enumerate(axes):
        if ax % rank == ch.axis and (pads[k] != 0 or pads[k + len(axes)] != 0):
            freeze_inputs(g, node, "Pad on the channel axis")
            return
    g.set_channels(node.output[0], ch.axis, ch.labels, node.input[0])


@rule("Transpose")
def transpose(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """The channel axis moves to ``perm.index(axis)`` (NHWC <-> NCHW)."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    rank = len(g.shape(node.input[0]))
    perm = list(attr(node, "perm", list(reversed(range(rank)))))
    if not ch.block:
        g.set_channels(node.output[0], perm.index(ch.axis), ch.labels, node.input[0], how="transpose")
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


@rule("Concat")
def concat(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Along the channel axis: the output's labels are the inputs' labels end to end (offset
    maps); untracked inputs become frozen sources. Along another axis: inputs are unified."""
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
    if len(ch_axes) == 1 and len(tracked) == len([n for n in node.input if n]):
        widths = {len(c.labels) for c in tracked}
        if len(widths) == 1:
            for c in tracked[1:]:
                g.unify(tracked[0].labels, c.labels)
            for name in node.input:
                g.set_channels(out, tracked[0].axis, tracked[0].labels, name, how="unify")
            return
    freeze_inputs(g, node, "Concat of misaligned channels")


def _split_sizes(g: ChannelGraph, node: onnx.NodeProto, total: int) -> list[int] | None:
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


@rule("Split")
def split(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Along the channel axis: output k carries the k-th slice of labels; the split sizes become
    the kept counts (written as an input, or as the ``split`` attribute before opset 13)."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    rank = len(g.shape(node.input[0]))
    axis = attr(node, "axis", 0) % rank
    if axis != ch.axis:
        for out in node.output:
            g.set_channels(out, ch.axis, ch.labels, node.input[0])
        return
    sizes = _split_sizes(g, node, len(ch.labels))
    if sizes is None or (len(node.input) > 1 and node.input[1] and g.const(node.input[1]) is None):
        freeze_inputs(g, node, "Split with computed sizes")
        return
    offset = 0
    for out, size in zip(node.output, sizes):
        g.set_channels(out, axis, ch.labels[offset:offset + size], node.input[0], how=f"slice@{offset}")
        offset += size
    new_style = any(imp.domain in ("", "ai.onnx") and imp.version >= 13 for imp in g.model.opset_import)

    def set_sizes(r: Rewriter) -> None:
        kept = np.array([int(r.mask(o).sum()) for o in r.node.output], dtype=np.int64)
        if not new_style:
            r.set_attr("split", [int(k) for k in kept])
            return
        for a in list(r.node.attribute):
            if a.name == "num_outputs":
                r.node.attribute.remove(a)
        if len(r.node.input) > 1 and r.node.input[1]:
            r.set_const(r.node.input[1], kept)
            return
        name = f"{r.node.output[0]}__split_sizes"
        r.inits[name] = onnx.numpy_helper.from_array(kept, name)
        r.graph.initializer.append(r.inits[name])
        del r.node.input[1:]
        r.node.input.append(name)
    g.edit(set_sizes)


@rule("Slice")
def slice_(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """A unit-step slice on the channel axis keeps labels[start:end]; start and end become the
    kept counts before and within the slice. Other axes pass the channels through."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    rank = len(g.shape(node.input[0]))
    old = len(node.input) == 1
    starts = attr(node, "starts") if old else g.const(node.input[1])
    ends = attr(node, "ends") if old else g.const(node.input[2])
    axes = (attr(node, "axes") if old else _axes_input(g, node, 3)) or list(range(len(starts)))
    steps = None if old or len(node.input) < 5 or not node.input[4] else g.const(node.input[4])
    computed = starts is None or ends is None
    if computed and not old:
        starts, ends = g.value(node.input[1]), g.value(node.input[2])
    if starts is None or ends is None or axes is None or (len(node.input) > 4 and node.input[4] and steps is None):
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
    g.set_channels(node.output[0], ch.axis, ch.labels[start:end], node.input[0], how=f"slice@{start}")
    if computed:
        _chunk(g, node, ch.labels, start, end)
        return
    source = node.input[0]

    def set_bounds(r: Rewriter) -> None:
        mask = r.mask(source)
        new_start = int(mask[:start].sum())
        new_end = new_start + int(mask[start:max(end, start)].sum())
        if old:
            r.set_attr("starts", _replace(attr(r.node, "starts"), k, new_start))
            r.set_attr("ends", _replace(attr(r.node, "ends"), k, new_end))
            return
        r.set_const(r.node.input[1], _replace(r.const(r.node.input[1]), k, new_start))
        r.set_const(r.node.input[2], _replace(r.const(r.node.input[2]), k, new_end))
    g.edit(set_bounds)


def _chunk(g: ChannelGraph, node: onnx.NodeProto, labels: np.ndarray, start: int, end: int) -> None:
    """Bounds computed from the tensor's shape (``torch.chunk``: Shape -> Gather -> Div -> Slice)
    are proportional to the width: with bounds on multiples of ``C / d``, the ``d`` chunks must
    keep equal counts, so position i of every chunk is unified (pruning removes it from all)."""
    size = len(labels)
    step = np.gcd.reduce([start, end, size])
    if step == 0 or size // step > 8:
        g.freeze(labels, f"Slice with computed, non-proportional bounds ({node.name})")
        return
    blocks = labels.reshape(size // step, step)
    for k in range(1, len(blocks)):
        g.unify(blocks[0], blocks[k])


def _replace(values, k: int, new: int):
    if isinstance(values, np.ndarray):
        out = values.copy()
        out.reshape(-1)[k] = new
        return out
    out = list(values)
    out[k] = new
    return out


@rule("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Follow the labels through the row-major reshape: lay the input's labels out over its
    shape, reshape, and find the one output axis along which they vary (flatten into a Gemm
    repeats each channel once per spatial position). The leading dims before the channel axis
    must be preserved. A Reshape's constant shape entry for that axis is set to the kept count;
    a computed shape must hold -1 there. Anything else freezes."""
    x, y = node.input[0], node.output[0]
    ch = g.ch(x)
    if ch is None:
        return
    in_shape, out_shape = g.shape(x), g.shape(y)
    found = _follow_reshape(ch, in_shape, out_shape)
    if found is None:
        if not _split_reshape(g, node, ch, in_shape, out_shape):
            freeze_inputs(g, node, f"{node.op_type} splits or mixes the channel axis")
        return
    axis, labels = found
    if node.op_type == "Reshape":
        shape_name = node.input[1]
        target = g.value(shape_name)
        is_const = g.const(shape_name) is not None
        if target is None or (not is_const and int(np.ravel(target)[axis]) != -1):
            freeze_inputs(g, node, "Reshape with a computed shape")
            return
        if is_const and int(np.ravel(target)[axis]) != -1:
            def set_shape(r: Rewriter) -> None:
                r.set_const(shape_name, _replace(r.const(shape_name), axis, int(r.mask(y).sum())))
            g.edit(set_shape)
    repeat = len(labels) // max(len(ch.labels), 1)
    g.set_channels(y, axis, labels, x, how=f"repeat x{repeat}" if repeat > 1 else "reshape")


def _split_reshape(g: ChannelGraph, node: onnx.NodeProto, ch, in_shape, out_shape) -> bool:
    """Channel shuffle's first Reshape, C -> (rows, C / rows) on two consecutive axes with a
    constant shape: the block must stay rectangular, so column j of every row is one channel
    (unified), and the shape's column entry becomes the kept count / rows."""
    field = _label_field(ch, in_shape, out_shape)
    if field is None or ch.block or node.op_type != "Reshape" or g.const(node.input[1]) is None:
        return False
    lead = int(np.prod(in_shape[:ch.axis]))
    for axis in range(len(out_shape) - 1):
        if int(np.prod(out_shape[:axis])) != lead or out_shape[axis] * out_shape[axis + 1] != len(ch.labels):
            continue
        moved = np.moveaxis(field, (axis, axis + 1), (0, 1)).reshape(out_shape[axis], out_shape[axis + 1], -1)
        if not (moved == moved[:, :, :1]).all():
            continue
        block = moved[:, :, 0]
        for row in block[1:]:
            g.unify(block[0], row)
        rows, shape_name, y = out_shape[axis], node.input[1], node.output[0]

        def set_shape(r: Rewriter, axis=axis, rows=rows, y=y, shape_name=shape_name) -> None:
            r.set_const(shape_name, _replace(r.const(shape_name), axis + 1, int(r.mask(y).sum()) // rows))
        g.edit(set_shape)
        g.set_channels(y, axis, block.reshape(-1), node.input[0], how=f"split into {rows} rows",
                       block=block.shape)
        return True
    return False


def _label_field(ch, in_shape, out_shape):
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


def _follow_reshape(ch, in_shape, out_shape):
    field = _label_field(ch, in_shape, out_shape)
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


@rule("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL1", "ReduceL2",
      "ReduceLogSumExp", "ReduceProd", "ReduceSumSquare")
def reduce(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Reducing spatial axes keeps the channels (squeeze-excite); reducing the channel axis
    freezes them."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    rank = len(g.shape(node.input[0]))
    axes = _axes_input(g, node, 1)
    if axes is None:
        freeze_inputs(g, node, "Reduce over computed axes")
        return
    axes = [a % rank for a in axes] or list(range(rank))
    if not axes and attr(node, "noop_with_empty_axes", 0):
        axes = []
    if ch.axis in axes:
        freeze_inputs(g, node, f"{node.op_type} over the channel axis")
        return
    keep = attr(node, "keepdims", 1)
    axis = ch.axis if keep else ch.axis - sum(a < ch.axis for a in axes)
    g.set_channels(node.output[0], axis, ch.labels, node.input[0])


@rule("Softmax", "LogSoftmax", "Hardmax", "LayerNormalization", "LpNormalization")
def along_axis(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Ops normalising along ``axis`` (to the end, for LayerNormalization and old Softmax): the
    channels pass through unless they are among the normalised axes."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    rank = len(g.shape(node.input[0]))
    axis = attr(node, "axis", -1) % rank
    to_end = node.op_type == "LayerNormalization" or (
        node.op_type in ("Softmax", "LogSoftmax", "Hardmax")
        and all(imp.version < 13 for imp in g.model.opset_import if imp.domain in ("", "ai.onnx"))
    )
    if ch.axis == axis or (to_end and ch.axis >= axis):
        freeze_inputs(g, node, f"{node.op_type} normalises over the channels")
        return
    g.set_channels(node.output[0], ch.axis, ch.labels, node.input[0])


@rule("Shape", "Size")
def shape_of(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Reading a shape does not depend on which channels exist: no coupling, untracked output."""


@rule("Expand", "Tile")
def expand(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Broadcast copies that keep the channel axis width carry the channels."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    in_shape, out_shape = g.shape(node.input[0]), g.shape(node.output[0])
    axis = ch.axis + len(out_shape) - len(in_shape)
    if out_shape[axis] != len(ch.labels):
        freeze_inputs(g, node, f"{node.op_type} repeats the channel axis")
        return
    g.set_channels(node.output[0], axis, ch.labels, node.input[0])
