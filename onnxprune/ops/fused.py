"""onnxruntime's fused transformer ops (domain ``com.microsoft``), as its transformer optimizer
(``onnxruntime.transformers.optimizer``) writes them.

Attention heads are channel groups, as in the unfused graph (:mod:`.reshape`, :mod:`.matmul`):
a channel class is one head, and every position of a head (its D values in Q, K and V) carries
the head's label.

* ``Attention``: ``Y = attention(X W + b)``, X [B, S, hidden], W [hidden, Nq + Nk + Nv] with the
  column blocks Q | K | V (``qkv_hidden_sizes`` = (Nq, Nk, Nv), else three equal blocks); head h
  owns columns ``[h Dx, (h + 1) Dx)`` of block x, ``Dx = Nx / num_heads``. The op is a source of
  ``num_heads`` fresh labels (space ``Y#node:heads``). Y [B, S, Nv]: position p carries head
  ``p // Dv`` (``repeat xDv``). W axis 1 (``out``) and b axis 0 (``channelwise``) follow the
  virtual space ``Y#node:qkv``: position p of block x carries head ``(p - start_x) // Dx``. X's
  channels (hidden) are consumed: W axis 0 (``in``). A constant ``attention_bias`` [B|1, H, S, T]
  follows the heads on axis 1. The edit sets ``num_heads`` (and ``qkv_hidden_sizes``) to the
  kept heads.
* ``MultiHeadAttention``: Q [B, S, H Dq], K [B, L, H Dk], V [B, L, H Dv], already projected.
  Position p of Q belongs to head ``p // Dq`` (K, V alike): each head's D labels are unified
  within Q, K and V, and head h of Q, K and V are unified. Y [B, S, H Dv] carries V's labels
  (identity: output position p is head ``p // Dv``'s attention applied to V's column p). The
  bias [Nq + Nk + Nv] follows Q | K | V (``channelwise``), a constant ``attention_bias`` the
  heads on axis 1; ``num_heads`` becomes the kept count.
* ``SkipLayerNormalization``, ``SkipSimplifiedLayerNormalization``,
  ``EmbedLayerNormalization``: normalise over the hidden channels (the residual stream):
  frozen, since the statistics change when channels go.
* ``BiasGelu``, ``FastGelu``: ``gelu(X + bias)``, the index map of Add (:mod:`.broadcast`):
  Y carries X's channels, a per-channel bias is ``channelwise``.
* ``Gelu``, ``QuickGelu``: element-wise, identity map.

Freezes: a key/value cache (past inputs, present outputs: their heads axis has no rule),
computed weights or biases, channels off the last axis, MultiHeadAttention's packed and 4-D
Q/K/V forms (heads interleaved with the Q/K/V index), an attention_bias computed per head, and
channels on a mask input.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import (
    MS_DOMAIN,
    EditContext,
    OpSpec,
    RuleGraph,
    WeightLayout,
    attr,
    freeze_inputs,
    freeze_through,
)
from .broadcast import Broadcast
from .elementwise import Unary
from .linear import LinearSpec
from .registry import register

ATTENTION_BIAS = 5  # input index of ``attention_bias`` in Attention and MultiHeadAttention


def _input(node: onnx.NodeProto, index: int) -> str:
    """Input ``index`` of ``node``, '' when it is absent."""
    return node.input[index] if len(node.input) > index else ""


def _has_cache(node: onnx.NodeProto, past: tuple[int, ...], present: tuple[int, ...]) -> bool:
    """True when the node reads a past key/value input or writes a present output."""
    return (any(_input(node, i) for i in past)
            or any(len(node.output) > i and node.output[i] for i in present))


def _per_head(g: RuleGraph, name: str, heads: int) -> bool:
    """True when tensor ``name`` (an attention_bias [B|1, H|1, S, T]) has a heads axis."""
    shape = g.shape(name) if name else None
    return bool(shape) and len(shape) == 4 and shape[1] == heads > 1


def _bias_reason(g: RuleGraph, node: onnx.NodeProto, heads: int) -> str:
    """Why the node's attention_bias stops the heads from pruning ('' when it does not)."""
    name = _input(node, ATTENTION_BIAS)
    if _per_head(g, name, heads) and g.const(name) is None:
        return "an attention_bias computed per head"
    return ""


def _heads(g: RuleGraph, node: onnx.NodeProto, space: str, per_head: tuple[int, ...],
           sizes_attr: bool, masks_from: int) -> None:
    """What follows the heads of space ``space`` besides Q, K, V and the output: a constant
    per-head attention_bias (axis 1) and the edit setting ``num_heads`` (and
    ``qkv_hidden_sizes``, a head being ``per_head`` wide in each of Q, K, V) to the kept count.
    Channels on the inputs from ``masks_from`` on (masks, attention_bias, lengths) freeze: no
    index map relates them to the heads."""
    for name in node.input[masks_from:]:
        g.freeze_tensor(name, f"a mask input of {node.op_type} ({node.name or node.op_type})")
    heads = attr(node, "num_heads")
    name = _input(node, ATTENTION_BIAS)
    if _per_head(g, name, heads):
        g.param(name, 1, space, "channelwise", node)

    def set_heads(r: EditContext) -> None:
        kept = int(r.mask(space).sum())
        r.set_attr("num_heads", kept)
        if sizes_attr:
            r.set_attr("qkv_hidden_sizes", [kept * d for d in per_head])
    g.edit(set_heads)


@register
class Attention(LinearSpec):
    """``com.microsoft.Attention``: the Q/K/V projection and the attention in one node (see the
    module docstring for its index maps)."""

    op_types = ("Attention",)
    domain = MS_DOMAIN

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        x, y, bias = node.input[0], node.output[0], _input(node, 2)
        w = g.const(node.input[1])
        ch, rank = g.ch(x), len(g.shape(x) or ())
        heads = attr(node, "num_heads")
        sizes = self.block_sizes(node, w.shape) if w is not None and w.ndim == 2 else None
        reason = ("a key/value cache" if _has_cache(node, (4,), (1,))
                  else "a computed weight or Q/K/V not split into heads" if sizes is None
                  else "a computed bias" if bias and g.const(bias) is None
                  else "channels off the hidden axis" if ch is not None and ch.axis != rank - 1
                  else _bias_reason(g, node, heads))
        if reason:
            freeze_inputs(g, node, f"Attention with {reason}")
            return
        if ch is not None:
            g.param(node.input[1], 0, x, "in", node, scored=True)
        per_head = tuple(n // heads for n in sizes)
        space = f"{y}#{node.name or y}:heads"
        labels = g.new_source(space, 0, heads, node.name, node.op_type)
        g.set_channels(y, len(g.shape(y)) - 1, np.repeat(labels, per_head[2]), space,
                       how=f"repeat x{per_head[2]}")
        qkv = f"{y}#{node.name or y}:qkv"
        g.set_channels(qkv, 0, np.concatenate([np.repeat(labels, d) for d in per_head]), space,
                       how="Q|K|V blocks of heads")
        g.param(node.input[1], 1, qkv, "out", node, scored=True)
        g.param(bias, 0, qkv, "channelwise", node)
        _heads(g, node, space, per_head, attr(node, "qkv_hidden_sizes") is not None, 3)

    @staticmethod
    def block_sizes(node: onnx.NodeProto, w_shape: tuple[int, ...]) -> tuple[int, int, int] | None:
        """The widths (Nq, Nk, Nv) of W's column blocks, or None when they do not split into
        ``num_heads`` heads each."""
        heads = attr(node, "num_heads")
        sizes = tuple(attr(node, "qkv_hidden_sizes", None) or [w_shape[1] // 3] * 3)
        if sum(sizes) != w_shape[1] or any(n % heads for n in sizes):
            return None
        return sizes

    def layout(self, node: onnx.NodeProto, w_shape: tuple[int, ...], x_rank: int) -> WeightLayout:
        return WeightLayout(x_axis=x_rank - 1, y_axis=x_rank - 1, w_in=0, w_out=1)

    def macs(self, node: onnx.NodeProto, w_shape: tuple[int, ...],
             shapes: dict[str, tuple[int, ...]]) -> int:
        """The projection (``tokens x hidden x (Nq + Nk + Nv)``) and the attention proper
        (``tokens x S x (Nk + Nv)``: Q K^T and the weighted sum of V; no past)."""
        x = shapes.get(node.input[0])
        sizes = self.block_sizes(node, w_shape)
        if x is None or sizes is None:
            return 0
        tokens = int(np.prod(x[:-1]))
        return tokens * (w_shape[0] * w_shape[1] + x[-2] * (sizes[1] + sizes[2]))

    def isolated(self, node: onnx.NodeProto, w_shape: tuple[int, ...], mode: str, dim: int) -> None:
        """Swept on its output (``dim`` = kept heads x (Dq + Dk + Dv)), the isolated node gets
        the kept ``num_heads``; it runs without mask and cache inputs (the mask decides which
        scores are masked, not how much is computed)."""
        del node.input[3:]
        if mode != "out":
            return
        heads = attr(node, "num_heads")
        kept = dim // (w_shape[1] // heads)
        for a in node.attribute:
            if a.name == "num_heads":
                a.i = kept
            elif a.name == "qkv_hidden_sizes":
                a.ints[:] = [n // heads * kept for n in a.ints]

    def refit_skip(self, node: onnx.NodeProto, w_shape: tuple[int, ...]) -> str:
        return "Attention's output is not linear in its weight"


@register
class MultiHeadAttention(OpSpec):
    """``com.microsoft.MultiHeadAttention`` on projected Q, K, V (see the module docstring)."""

    op_types = ("MultiHeadAttention",)
    domain = MS_DOMAIN

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        names = [_input(node, i) for i in range(3)]
        bias, y = _input(node, 3), node.output[0]
        heads = attr(node, "num_heads")
        tracked = [g.ch(n) for n in names]
        reason = ("a key/value cache" if _has_cache(node, (6, 7), (1, 2))
                  else "packed or 4-D Q/K/V" if any(len(g.shape(n) or ()) != 3 for n in names)
                  else "an untracked Q, K or V" if any(ch is None for ch in tracked)
                  else "channels off the hidden axis" if any(ch.axis != 2 for ch in tracked)
                  else "Q, K or V not split into heads" if any(len(ch.labels) % heads
                                                               for ch in tracked)
                  else "a computed bias" if bias and g.const(bias) is None
                  else _bias_reason(g, node, heads))
        if reason:
            freeze_inputs(g, node, f"MultiHeadAttention with {reason}")
            return
        rows = [ch.labels.reshape(heads, -1) for ch in tracked]
        for block in rows:
            for row in block:
                g.unify(np.full_like(row, row[0]), row)
        for block in rows[1:]:
            g.unify(rows[0][:, 0], block[:, 0])
        g.set_channels(y, 2, tracked[2].labels, names[2])
        for name in names[:2]:
            g.set_channels(y, 2, tracked[2].labels, name, how="unify")
        space = f"{y}#{node.name or y}:heads"
        g.set_channels(space, 0, rows[0][:, 0], names[0], how=f"heads of {rows[0].shape[1]}")
        qkv = f"{y}#{node.name or y}:qkv"
        g.set_channels(qkv, 0, np.concatenate([ch.labels for ch in tracked]), names[0],
                       how="Q|K|V concatenated")
        g.param(bias, 0, qkv, "channelwise", node)
        _heads(g, node, space, tuple(block.shape[1] for block in rows), False, 4)


@register
class FusedLayerNorm(OpSpec):
    """LayerNorm fusions: they normalise over the hidden channels, which therefore stay."""

    op_types = ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization",
                "EmbedLayerNormalization")
    domain = MS_DOMAIN

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        freeze_through(g, node, f"{node.op_type} normalises over the hidden channels (LayerNorm "
                                "statistics change when channels go)", outputs=(0, 3))


@register
class BiasActivation(Broadcast):
    """``act(X + bias)``: the index map of Add."""

    op_types = ("BiasGelu", "FastGelu")
    domain = MS_DOMAIN


@register
class ContribUnary(Unary):
    """Element-wise contrib activations: identity map."""

    op_types = ("Gelu", "QuickGelu")
    domain = MS_DOMAIN
