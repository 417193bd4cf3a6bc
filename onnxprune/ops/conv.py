"""Conv: W [Cout, Cin/group, k...]; X and Y carry channels on axis 1.

Index maps. group=1: X axis 1 <-> W axis 1 (consumer, role ``in``); Y axis 1 is a new source
<-> W axis 0 and B (``out``). Depthwise (group = Cin = Cout, W [C, 1, k...]): Y carries X's labels
(``depthwise`` map), W axis 0 and B follow them and ``group`` becomes the kept width. Other
groups: every group must keep the same count, so channel j of each input group is unified across
groups (W axis 1 follows the first group's positions), and likewise output channel j of each
group. A channel multiplier (Cout != Cin with groups) freezes.
"""

from __future__ import annotations

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view

from .base import EditContext, RuleGraph, WeightLayout, attr, freeze_inputs
from .linear import LinearSpec
from .registry import register

POSITIONS = 128  # output positions sampled per image when refitting a conv


def is_depthwise(node: onnx.NodeProto, w_shape: tuple[int, ...]) -> bool:
    """group = Cout and one input channel per group (W [C, 1, k...])."""
    groups = attr(node, "group", 1)
    return groups > 1 and w_shape[1] == 1 and w_shape[0] == groups


@register
class Conv(LinearSpec):
    op_types = ("Conv",)

    def make_explicit(self, node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> None:
        """``kernel_shape`` is optional in ONNX (inferred from W [Cout, Cin/group, k...]);
        the refit features read it from the node."""
        w = consts.get(node.input[1]) if len(node.input) > 1 else None
        if attr(node, "kernel_shape") is None and w is not None:
            node.attribute.append(onnx.helper.make_attribute("kernel_shape", [int(k) for k in w.shape[2:]]))

    def validate(self, node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> str:
        """The weight is [Cout, Cin/group, k...] (rank 3 or more), ``kernel_shape`` (when
        given) is its ``k...`` and ``group`` divides Cout."""
        w = consts.get(node.input[1]) if len(node.input) > 1 else None
        groups = attr(node, "group", 1)
        if not isinstance(groups, int) or groups < 1:
            return f"group must be a positive integer, got {groups!r}"
        if w is None:
            return ""
        if w.ndim < 3:
            return f"weight {node.input[1]!r} has shape {list(w.shape)}; Conv needs [Cout, Cin/group, k...]"
        kernel = attr(node, "kernel_shape")
        if kernel is not None and [int(k) for k in kernel] != list(w.shape[2:]):
            return f"kernel_shape {list(kernel)} does not match the weight's kernel {list(w.shape[2:])}"
        if w.shape[0] % groups:
            return f"group {groups} does not divide the {w.shape[0]} output channels"
        return ""

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
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
        if is_depthwise(node, w.shape):
            if ch is None:
                return
            g.set_channels(y, 1, ch.labels, x, how="depthwise")
            g.param(node.input[1], 0, y, "channelwise", node, scored=True)
            g.param(bias, 0, y, "channelwise", node)

            def set_group(r: EditContext) -> None:
                r.set_attr("group", int(r.mask(r.node.output[0]).sum()))
            g.edit(set_group)
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

    def layout(self, node: onnx.NodeProto, w_shape: tuple[int, ...], x_rank: int) -> WeightLayout:
        return WeightLayout(x_axis=1, y_axis=1, w_in=1, w_out=0, groups=attr(node, "group", 1))

    def sweep_mode(self, node: onnx.NodeProto, role: str) -> str | None:
        """A depthwise conv's weight follows its channels on both sides (``both``)."""
        return "both" if role == "channelwise" else super().sweep_mode(node, role)

    def isolated(self, node: onnx.NodeProto, w_shape: tuple[int, ...], mode: str, dim: int) -> None:
        """A depthwise conv swept on both sides has ``dim`` groups."""
        if mode == "both":
            for a in node.attribute:
                if a.name == "group":
                    a.i = dim

    def refit_skip(self, node: onnx.NodeProto, w_shape: tuple[int, ...]) -> str:
        if len(w_shape) != 4:
            return f"{len(w_shape) - 2}-D Conv: only 2-D convs are refitted"
        return super().refit_skip(node, w_shape)

    def features(self, node: onnx.NodeProto, x: np.ndarray, rng: np.random.Generator,
                 picks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Kernel windows ``[N * positions, C * kh * kw]`` at ``POSITIONS`` sampled output
        positions per image (``picks``, drawn once and reused for every batch)."""
        kh, kw = [int(k) for k in attr(node, "kernel_shape", [1, 1])]
        sh, sw = attr(node, "strides", [1, 1])
        dh, dw = attr(node, "dilations", [1, 1])
        pads = attr(node, "pads", [0, 0, 0, 0])
        xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
        win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # [N, C, Ho, Wo, kh, kw]
        n, c, ho, wo = win.shape[:4]
        if picks is None:
            picks = rng.choice(ho * wo, size=min(POSITIONS, ho * wo), replace=False)
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho * wo, c * kh * kw)[:, picks]
        return cols.reshape(-1, c * kh * kw), picks

    def targets(self, node: onnx.NodeProto, y: np.ndarray, picks: np.ndarray | None) -> np.ndarray:
        n, c = y.shape[:2]
        return y.reshape(n, c, -1)[:, :, picks].transpose(0, 2, 1).reshape(-1, c)
