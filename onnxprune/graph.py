"""Channel-dependency graph: which channels must be removed together, and where they live.

Model. Every tracked activation tensor has one *channel axis* and, along it, a vector of integer
*labels*, one per position. Ops that create channels (Conv, Gemm, MatMul, graph inputs, ...) are
*sources*: they allocate fresh labels. Shape movers carry labels along (Concat concatenates the
vectors, Split/Slice cut them, Flatten repeats each label once per spatial position, Transpose
moves the axis). Ops that combine two activations position by position (residual Add, the
squeeze-excite Mul) *unify* the labels they align, with a union-find. A *channel* (class) is a
union-find class of labels; removing it removes every position, in every tensor, that carries one
of its labels -- that is the index map of every rule, made explicit and checkable.

Two networkx graphs expose the structure:

* ``spaces`` (directed): nodes are channel spaces ``(tensor, axis)``; an edge goes from a space
  an op reads to the one it writes and says how indices map (``identity``, ``concat@offset``,
  ``slice@start``, ``repeat x49``, ``unify``, ``depthwise``, ...). ``analyze --json`` lists them.
* ``sources``: nodes are sources; an edge joins two sources whose channels are unified. A
  connected set of sources is a *group*, the unit that loses channels together (concatenated
  branches stay separate groups: Concat is an index map, not a coupling).

A channel is *frozen* (never removed) when any of its labels reaches a graph output, a graph
input, a control-flow subgraph, or an op without a rule. Never guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import onnx
from onnx import numpy_helper

from . import ops, runtime, runtimes
from .errors import OnnxPruneError
from .inputs import graph_inputs, random_feeds
from .load import subgraph_names

_SMALL_VALUE = 64  # traced integer tensors up to this size keep their values (shape tensors)


@dataclass
class Channels:
    """The channel axis of a tensor and the label of each position along it.

    ``block``: when a reshape splits the channel axis (channel shuffle: C -> (g, C/g)) the
    channels span ``len(block)`` consecutive axes from ``axis``, ``labels`` in row-major order
    over them. Only Reshape and Transpose accept such tensors; other ops freeze them."""

    axis: int
    labels: np.ndarray
    block: tuple[int, ...] | None = None


@dataclass
class ParamSlice:
    """Axis ``axis`` of initializer ``param`` is indexed like the channel positions of ``tensor``.

    ``role``: ``out`` (producer weight rows), ``in`` (a consumer's input slice: zeroing it is what
    disconnects a channel downstream), ``channelwise`` (depthwise weights, BN parameters, biases,
    per-channel constants). ``scored`` slices count towards importance.
    """

    param: str
    axis: int
    tensor: str
    role: str
    node: str
    scored: bool


@dataclass
class Source:
    """A contiguous range of labels created by one node output."""

    start: int
    size: int
    tensor: str
    node: str
    op_type: str


@dataclass
class Group:
    """Channels that are removed together. ``classes`` are union-find roots, in channel order of
    the first source; ``frozen[i]`` gives why channel i must stay, or ''."""

    id: int
    name: str
    sources: list[Source]
    classes: np.ndarray
    frozen: list[str]
    members: list[ParamSlice] = field(default_factory=list)
    importance: np.ndarray | None = None
    order: np.ndarray | None = None

    def removal_order(self) -> np.ndarray:
        """Prunable channel indices, first to remove first: ``order`` when a data-aware
        selection set it (reconstruction cost), else ascending importance."""
        if self.order is not None:
            return self.order
        prunable = self.prunable
        return prunable[np.argsort(self.importance[prunable], kind="stable")]

    def keep_order(self) -> np.ndarray:
        """Channel indices in the order they are kept: frozen first, then the reverse of the
        removal order; keeping ``w`` channels keeps ``keep_order()[:w]``."""
        frozen = np.array([i for i, r in enumerate(self.frozen) if r], dtype=np.int64)
        return np.concatenate([frozen, self.removal_order()[::-1]])

    @property
    def width(self) -> int:
        return len(self.classes)

    @property
    def prunable(self) -> np.ndarray:
        """Indices (into ``classes``) of the channels that may be removed."""
        return np.array([i for i, r in enumerate(self.frozen) if not r], dtype=np.int64)

    @property
    def frozen_reason(self) -> str:
        reasons = sorted({r for r in self.frozen if r})
        return "; ".join(reasons)


class ChannelGraph:
    """The channel-dependency graph of a normalised model (see the module docstring); it is the
    :class:`onnxprune.ops.RuleGraph` every op spec's rule reads and writes."""

    def __init__(self, model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None):
        self.model = model
        self.opsets = ops.opset_versions(model)
        self.consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.shapes, self.values = trace(model, shapes)
        self.channels: dict[str, Channels] = {}
        self.params: list[ParamSlice] = []
        self.edits: list[tuple[int, ops.Edit]] = []
        self.sources_list: list[Source] = []
        self.spaces = nx.DiGraph()
        self._parent: list[int] = []
        self._frozen: dict[int, str] = {}
        self.node_index = 0
        self._consumers: dict[str, list[onnx.NodeProto]] | None = None

        for inp in graph_inputs(model):
            shape = self.shapes.get(inp.name)
            if shape and len(shape) >= 2:
                axis = 1 if len(shape) != 3 else 2
                labels = self.new_source(inp.name, axis, shape[axis], "graph input", "Input")
                self.freeze(labels, "graph input")
        nested = subgraph_names(model.graph)
        for k, node in enumerate(model.graph.node):
            self.node_index = k
            spec = ops.spec_for(node, self.opsets)
            blocked = any(self.ch(n) is not None and self.ch(n).block for n in node.input)
            if blocked and not (spec is not None and spec.split_axis_ok):
                ops.freeze_inputs(self, node, f"{node.op_type} on a split channel axis")
            elif spec is None:
                ops.freeze_inputs(self, node, f"no rule for {node.op_type}")
            else:
                spec.rule(self, node)
        for name in nested:
            self.freeze_tensor(name, "used inside a control-flow subgraph")
        for out in model.graph.output:
            self.freeze_tensor(out.name, "reaches graph output")
        self.groups = self._make_groups()

    # -- what rules read ---------------------------------------------------------------------
    def shape(self, name: str) -> tuple[int, ...] | None:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        return self.shapes.get(name)

    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer, or None for activations and missing optional inputs."""
        return self.consts.get(name) if name else None

    def value(self, name: str) -> np.ndarray | None:
        """Initializer value, or the traced value of a small integer tensor (shape arithmetic)."""
        got = self.const(name)
        return got if got is not None else self.values.get(name)

    def ch(self, name: str) -> Channels | None:
        return self.channels.get(name) if name else None

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        """The nodes of the main graph that read tensor ``name``, in graph order."""
        if self._consumers is None:
            self._consumers = {}
            for node in self.model.graph.node:
                for inp in set(node.input):
                    self._consumers.setdefault(inp, []).append(node)
        return self._consumers.get(name, [])

    def affine_reader(self, name: str) -> tuple[onnx.NodeProto, np.ndarray] | None:
        """``(node, scale)`` when the only reader of tensor ``name`` is a per-channel affine map
        of it (its spec's :meth:`~onnxprune.ops.OpSpec.channel_scale`: BatchNormalization), with
        that map's channel scale; else None."""
        readers = self.consumers(name)
        if len(readers) != 1 or readers[0].input[0] != name:
            return None
        spec = ops.spec_for(readers[0], self.opsets)
        scale = spec.channel_scale(readers[0], self.consts) if spec is not None else None
        return None if scale is None else (readers[0], scale)

    # -- what rules write --------------------------------------------------------------------
    def new_source(self, tensor: str, axis: int, size: int, node: str, op_type: str) -> np.ndarray:
        """Allocate ``size`` fresh labels for ``tensor`` along ``axis``."""
        start = len(self._parent)
        self._parent.extend(range(start, start + size))
        self.sources_list.append(Source(start, size, tensor, node, op_type))
        labels = np.arange(start, start + size, dtype=np.int64)
        self.set_channels(tensor, axis, labels)
        return labels

    def set_channels(self, tensor: str, axis: int, labels: np.ndarray,
                     src: str | None = None, how: str = "identity",
                     block: tuple[int, ...] | None = None) -> None:
        self.channels[tensor] = Channels(axis, np.asarray(labels, dtype=np.int64), block)
        self.spaces.add_node((tensor, axis))
        if src is not None and src in self.channels:
            self.spaces.add_edge((src, self.channels[src].axis), (tensor, axis), how=how)

    def unify(self, a: np.ndarray, b: np.ndarray) -> None:
        """Channels at equal positions of ``a`` and ``b`` are the same channel."""
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self._parent[max(rx, ry)] = min(rx, ry)

    def freeze(self, labels: np.ndarray, reason: str) -> None:
        for x in np.unique(labels).tolist():
            self._frozen.setdefault(int(x), reason)

    def freeze_tensor(self, name: str, reason: str) -> None:
        ch = self.ch(name)
        if ch is not None:
            self.freeze(ch.labels, reason)

    def param(self, param: str, axis: int, tensor: str, role: str, node: onnx.NodeProto,
              scored: bool = False) -> None:
        if param and param in self.consts:
            self.params.append(ParamSlice(param, axis, tensor, role, node.name, scored))

    def edit(self, fn: ops.Edit) -> None:
        """Register a node edit (attribute or shape constant) run at rewrite time."""
        self.edits.append((self.node_index, fn))

    # -- results -----------------------------------------------------------------------------
    def find(self, x: int) -> int:
        parent = self._parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def roots(self, labels: np.ndarray) -> np.ndarray:
        return np.array([self.find(int(x)) for x in labels.tolist()], dtype=np.int64)

    def _make_groups(self) -> list[Group]:
        root_sources: dict[int, list[int]] = {}
        src_graph = nx.Graph()
        for k, src in enumerate(self.sources_list):
            src_graph.add_node(k)
            for lab in range(src.start, src.start + src.size):
                root_sources.setdefault(self.find(lab), []).append(k)
        for ks in root_sources.values():
            nx.add_path(src_graph, ks)
        self.source_graph = src_graph
        frozen_roots: dict[int, str] = {}
        for lab, reason in self._frozen.items():
            frozen_roots.setdefault(self.find(lab), reason)
        groups = []
        for comp in sorted(nx.connected_components(src_graph), key=min):
            srcs = [self.sources_list[k] for k in sorted(comp)]
            order: dict[int, None] = {}
            for s in srcs:
                for lab in range(s.start, s.start + s.size):
                    order.setdefault(self.find(lab))
            classes = np.array(list(order), dtype=np.int64)
            frozen = [frozen_roots.get(int(r), "") for r in classes]
            groups.append(Group(len(groups), srcs[0].node, srcs, classes, frozen))
        by_root = {int(r): g for g in groups for r in g.classes}
        for p in self.params:
            labs = self.channels[p.tensor].labels
            for gid in {by_root[self.find(int(x))].id for x in np.unique(labs).tolist()}:
                groups[gid].members.append(p)
        return groups

    def group_spaces(self) -> dict[int, list[tuple[str, int]]]:
        """Channel spaces ``(tensor, axis)`` each group's channels occupy, by group id."""
        by_root = {int(r): grp.id for grp in self.groups for r in grp.classes}
        out: dict[int, list[tuple[str, int]]] = {grp.id: [] for grp in self.groups}
        for tensor, ch in self.channels.items():
            for gid in {by_root[int(r)] for r in np.unique(self.roots(np.unique(ch.labels)))}:
                out[gid].append((tensor, ch.axis))
        return out

    def prunable_groups(self) -> list[Group]:
        return [g for g in self.groups if len(g.prunable) > 0]

    def summary(self) -> dict:
        """Counts for reports: groups, channels, prunable share (graph inputs not counted)."""
        groups = [g for g in self.groups if any(s.op_type != "Input" for s in g.sources)]
        total = sum(g.width for g in groups)
        prunable = sum(len(g.prunable) for g in groups)
        return {
            "groups": len(groups),
            "prunable_groups": len(self.prunable_groups()),
            "channels": total,
            "prunable_channels": prunable,
            "prunable_share": prunable / total if total else 0.0,
        }


def trace(model: onnx.ModelProto, overrides: dict[str, tuple[int, ...]] | None = None):
    """Run the model once with every intermediate tensor exposed: concrete shapes of all
    tensors, and the values of small integer tensors (computed shapes)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in have:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                have.add(name)
    feeds = random_feeds(model, overrides)
    sess = runtimes.session(probe, runtimes.RuntimeConfig(opt_level="disable"))
    values = runtime.run_outputs(sess, feeds)
    values.update(feeds)
    shapes = {k: tuple(int(d) for d in np.shape(v)) for k, v in values.items()}
    small = {
        k: np.asarray(v) for k, v in values.items()
        if np.issubdtype(np.asarray(v).dtype, np.integer) and np.size(v) <= _SMALL_VALUE
    }
    return shapes, small


def build_graph(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None) -> ChannelGraph:
    """Build the channel graph of a *normalised* model (see :func:`onnxprune.load.normalise`)."""
    if not any(n.op_type for n in model.graph.node):
        raise OnnxPruneError("the model has no nodes")
    return ChannelGraph(model, shapes)


def matches(name: str, patterns: list[str]) -> bool:
    """True when a node/group name matches any regular expression in ``patterns``."""
    return any(re.search(p, name) for p in patterns)
