"""What an op spec is, and the graph interface its channel rule reads and writes.

A spec holds everything the pipeline knows about one op family:

* ``rule(g, node)`` -- the channel rule: output channels (fresh labels or input labels carried
  along an index map), couplings (``g.unify``), frozen channels, the initializer slices that
  follow a channel space (``g.param``: axis ``a`` of initializer ``p`` is indexed like the channel
  positions of tensor ``t``) and the attribute edits that depend on the kept widths (``g.edit``);
* ``layout(node, w_shape, x_rank)`` -- for ops with a weight initializer: which axis of the input
  carries the input channels, which weight axis is indexed by input / output channels, groups;
  profiling isolates the layer from it (:func:`onnxprune.profile.isolate`);
* ``macs(node, w_shape, shapes)`` -- multiply-accumulates (:func:`onnxprune.stats.macs`);
* the linear map recovery refits (:class:`onnxprune.ops.linear.LinearSpec`).

This package imports nothing else from onnxprune: the graph it works on is described here by
protocols (:class:`RuleGraph`, :class:`EditContext`) that :mod:`onnxprune.graph` and
:mod:`onnxprune.rewrite` implement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import onnx


class ChannelSpace(Protocol):
    """A tensor's channel axis and one label per position along it (``block``: the axis was
    split into consecutive axes of these sizes, labels in row-major order over them)."""

    axis: int
    labels: np.ndarray
    block: tuple[int, ...] | None


class EditContext(Protocol):
    """What an edit sees at rewrite time: the node, the kept-position masks, the initializers."""

    node: onnx.NodeProto
    mask: Callable[[str], np.ndarray]
    inits: dict[str, onnx.TensorProto]
    graph: onnx.GraphProto

    def const(self, name: str) -> np.ndarray: ...

    def set_const(self, name: str, value: np.ndarray) -> None: ...

    def set_attr(self, name: str, value) -> None: ...


Edit = Callable[[EditContext], None]


class RuleGraph(Protocol):
    """The channel graph as a rule sees it (implemented by :class:`onnxprune.graph.ChannelGraph`)."""

    model: onnx.ModelProto

    def shape(self, name: str) -> tuple[int, ...] | None: ...

    def const(self, name: str) -> np.ndarray | None: ...

    def value(self, name: str) -> np.ndarray | None: ...

    def ch(self, name: str) -> ChannelSpace | None: ...

    def consumers(self, name: str) -> list[onnx.NodeProto]: ...

    def new_source(self, tensor: str, axis: int, size: int, node: str, op_type: str) -> np.ndarray: ...

    def set_channels(self, tensor: str, axis: int, labels: np.ndarray, src: str | None = None,
                     how: str = "identity", block: tuple[int, ...] | None = None) -> None: ...

    def unify(self, a: np.ndarray, b: np.ndarray) -> None: ...

    def freeze(self, labels: np.ndarray, reason: str) -> None: ...

    def freeze_tensor(self, name: str, reason: str) -> None: ...

    def param(self, param: str, axis: int, tensor: str, role: str, node: onnx.NodeProto,
              scored: bool = False) -> None: ...

    def edit(self, fn: Edit) -> None: ...


def attr(node: onnx.NodeProto, name: str, default=None):
    """The value of attribute ``name`` of ``node``, or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib ops (its transformer optimizer's fusions)
Opsets = dict[str, int]  # domain ("" for ai.onnx) -> the version a model imports


def domain_of(domain: str) -> str:
    """The canonical name of an op domain: ``""`` for the default domain (also ``ai.onnx``)."""
    return "" if domain == "ai.onnx" else domain


def opset_versions(model: onnx.ModelProto) -> Opsets:
    """The version the model imports of each domain; the default domain is 1 when not imported."""
    versions = {"": 1}
    versions.update({domain_of(imp.domain): imp.version for imp in model.opset_import})
    return versions


def opset_version(model: onnx.ModelProto) -> int:
    """The version of the default (``ai.onnx``) domain the model imports."""
    return opset_versions(model)[""]


def freeze_inputs(g: RuleGraph, node: onnx.NodeProto, reason: str) -> None:
    """The fallback: every tracked input is frozen and the outputs are untracked."""
    for name in node.input:
        g.freeze_tensor(name, f"{reason} ({node.name or node.op_type})")


def freeze_through(g: RuleGraph, node: onnx.NodeProto, reason: str,
                   outputs: tuple[int, ...] = (0,)) -> None:
    """Freeze every tracked input (``reason``), and let those of ``outputs`` shaped like input 0
    carry its channels (identity map): they are frozen, so downstream ops that meet them (a
    residual Add) couple to these channels and report this reason, not an untracked operand."""
    freeze_inputs(g, node, reason)
    ch = g.ch(node.input[0])
    if ch is not None:
        for k in outputs:
            if len(node.output) > k and node.output[k] and g.shape(node.output[k]) == g.shape(node.input[0]):
                g.set_channels(node.output[k], ch.axis, ch.labels, node.input[0])


def passthrough(g: RuleGraph, node: onnx.NodeProto, nchw: bool = False) -> None:
    """Output 0 carries input 0's channels unchanged (identity index map); with ``nchw`` the
    channels must be on axis 1 (pooling mixes the other axes) or they freeze."""
    ch = g.ch(node.input[0])
    if ch is None:
        return
    if nchw and ch.axis != 1:
        freeze_inputs(g, node, f"{node.op_type} mixes the channel axis")
        return
    g.set_channels(node.output[0], ch.axis, ch.labels, node.input[0])


def axes_input(g: RuleGraph, node: onnx.NodeProto, index: int, name: str = "axes") -> list[int] | None:
    """Axes given as attribute (old opsets) or as constant input ``index`` (new opsets); None
    when computed."""
    if len(node.input) > index and node.input[index]:
        value = g.value(node.input[index])
        return None if value is None else [int(v) for v in np.ravel(value)]
    value = attr(node, name)
    return [] if value is None else list(value)


def replace_at(values, k: int, new: int):
    """A copy of ``values`` (array or list) with flat entry ``k`` set to ``new``."""
    if isinstance(values, np.ndarray):
        out = values.copy()
        out.reshape(-1)[k] = new
        return out
    out = list(values)
    out[k] = new
    return out


@dataclass(frozen=True)
class WeightLayout:
    """Where the channels of a weight-bearing op live.

    ``x_axis``: channel axis of input 0 (the input channels); ``y_axis``: channel axis of output
    0; ``w_in`` / ``w_out``: the axes of the weight (input 1) indexed by input / output channels;
    ``groups``: the conv group count (``w_in`` then holds one group's channels)."""

    x_axis: int
    y_axis: int
    w_in: int
    w_out: int
    groups: int = 1


class OpSpec:
    """One op family: its channel rule and what the other stages need to know about it.

    Subclasses set ``op_types``, their ``domain`` (default: the ONNX domain) and the opset range
    ``[min_opset, max_opset]`` of that domain they describe and override :meth:`rule`;
    weight-bearing ops also :meth:`layout` and :meth:`macs`. Register a spec with
    :func:`onnxprune.ops.registry.register`."""

    op_types: ClassVar[tuple[str, ...]] = ()
    domain: ClassVar[str] = ""
    min_opset: ClassVar[int] = 1
    max_opset: ClassVar[int | None] = None
    split_axis_ok: ClassVar[bool] = False  # reads tensors whose channel axis was split
    # Inputs that hold tunable parameters when they are float initializers, besides a
    # LinearSpec's weight (input 1) and bias (``bias_input``): a normalisation's scale and bias,
    # the operand of a Gemm or MatMul that may be the constant weight instead of input 1.
    # Gradient tuning (:func:`onnxprune.torchexec.trainable_names`) trains exactly these.
    trainable_inputs: ClassVar[tuple[int, ...]] = ()

    def rule(self, g: RuleGraph, node: onnx.NodeProto) -> None:
        """Declare the node's channel maps (see the module docstring)."""
        raise NotImplementedError

    def layout(self, node: onnx.NodeProto, w_shape: tuple[int, ...], x_rank: int) -> WeightLayout | None:
        """The weight layout, or None for ops without a channel-indexed weight."""
        return None

    def macs(self, node: onnx.NodeProto, w_shape: tuple[int, ...],
             shapes: dict[str, tuple[int, ...]]) -> int:
        """Multiply-accumulates of one run (0 for ops that are not counted)."""
        return 0

    def sweep_mode(self, node: onnx.NodeProto, role: str) -> str | None:
        """How profiling sweeps a layer whose weight is a member slice of ``role``: ``out``
        (output channels), ``in`` (input channels), ``both`` (depthwise), or None (not swept)."""
        return None

    def isolated(self, node: onnx.NodeProto, w_shape: tuple[int, ...], mode: str, dim: int) -> None:
        """Fit ``node``, the copy profiling runs alone (:func:`onnxprune.profile.isolate`), to
        ``dim`` positions on the axis ``mode`` sweeps (``w_shape``: the model's weight shape):
        set the attributes that count channels, drop inputs a one-node model cannot feed. The
        default changes nothing."""

    def running_stats(self, node: onnx.NodeProto) -> tuple[str, str] | None:
        """Names of the running mean and variance initializers a normalisation keeps, if any."""
        return None

    def channel_scale(self, node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> np.ndarray | None:
        """The per-channel scale the op applies to input 0 (BN: ``|gamma| / sqrt(var + eps)``)."""
        return None

    def make_explicit(self, node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> None:
        """Write attributes the op leaves implicit (defaults read off its inputs) onto ``node``,
        so every later stage reads them from the node; never changes what the node computes."""

    def validate(self, node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> str:
        """What is wrong with ``node`` for this spec's rule and edits ('' when nothing): an
        attribute the op needs that is missing, empty, of the wrong type or out of range, or a
        weight of the wrong rank. The loader refuses the model with it, naming the node."""
        return ""

    def refit_skip(self, node: onnx.NodeProto, w_shape: tuple[int, ...]) -> str:
        """Why recovery cannot refit this op as a consumer of removed channels ('' if it can)."""
        return f"no linear map for {node.op_type}"
