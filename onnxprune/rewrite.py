"""Rewrite: remove chosen channels by slicing initializers and editing attributes.

A :class:`PrunePlan` names, per group, the channel indices (into ``group.classes``) to keep.
Every tensor position whose label belongs to a removed channel disappears; every initializer
axis registered by a rule is sliced with the same mask as the tensor it follows; rule edits fix
attributes and shape constants. Stale ``value_info`` is dropped and shapes are re-inferred.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import OnnxPruneError
from .graph import ChannelGraph
from .load import export_form


class Rewriter:
    """What an edit sees at rewrite time (:class:`onnxprune.ops.EditContext`): the node, the
    kept-position masks and the initializers."""

    def __init__(self, node: onnx.NodeProto, mask: Callable[[str], np.ndarray],
                 inits: dict[str, onnx.TensorProto], graph: onnx.GraphProto):
        self.node, self.mask, self.inits, self.graph = node, mask, inits, graph

    def const(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.inits[name])

    def set_const(self, name: str, value: np.ndarray) -> None:
        self.inits[name].CopyFrom(numpy_helper.from_array(np.asarray(value), name))

    def set_attr(self, name: str, value) -> None:
        for attr in self.node.attribute:
            if attr.name == name:
                self.node.attribute.remove(attr)
                break
        self.node.attribute.append(onnx.helper.make_attribute(name, value))


@dataclass
class PrunePlan:
    """Channels to keep per group id (indices into ``group.classes``, sorted). Groups that are
    absent keep every channel. Frozen channels are always kept."""

    keep: dict[int, np.ndarray] = field(default_factory=dict)

    def removed(self, g: ChannelGraph) -> dict[int, np.ndarray]:
        """Channel indices removed per group."""
        out = {}
        for gid, kept in self.keep.items():
            gone = np.setdiff1d(np.arange(g.groups[gid].width), kept)
            if len(gone):
                out[gid] = gone
        return out

    def alive(self, g: ChannelGraph) -> dict[int, bool]:
        """``{union-find root: kept?}`` for every channel the plan removes (others are kept)."""
        dead = {}
        for gid, gone in self.removed(g).items():
            group = g.groups[gid]
            for i in gone.tolist():
                if group.frozen[i]:
                    raise ValueError(f"plan removes frozen channel {i} of group {gid}")
                dead[int(group.classes[i])] = False
        return dead


def ratio_plan(g: ChannelGraph, ratio: float) -> PrunePlan:
    """Remove ``round(ratio * width)`` least important prunable channels of every group (at
    least one channel always stays)."""
    plan = PrunePlan()
    for group in g.prunable_groups():
        n_remove = min(round(ratio * group.width), len(group.prunable), group.width - 1)
        if n_remove <= 0:
            continue
        order = group.removal_order()
        plan.keep[group.id] = np.sort(np.setdiff1d(np.arange(group.width), order[:n_remove]))
    return plan


def channel_masks(g: ChannelGraph, plan: PrunePlan):
    """A function ``tensor name -> bool mask over its channel positions`` for ``plan``."""
    alive = plan.alive(g)
    cache: dict[str, np.ndarray] = {}

    def mask(name: str) -> np.ndarray:
        if name not in cache:
            roots = g.roots(g.channels[name].labels)
            cache[name] = np.array([alive.get(int(r), True) for r in roots.tolist()], dtype=bool)
        return cache[name]
    return mask


def apply_plan(g: ChannelGraph, plan: PrunePlan) -> onnx.ModelProto:
    """The pruned model (``g.model`` is not modified), in the form its IR version requires
    (:func:`onnxprune.load.export_form`)."""
    model = copy.deepcopy(g.model)
    graph = model.graph
    mask = channel_masks(g, plan)
    inits = {i.name: i for i in graph.initializer}
    arrays: dict[str, np.ndarray] = {}
    for p in g.params:
        m = mask(p.tensor)
        if m.all():
            continue
        value = arrays.get(p.param, g.consts[p.param])
        arrays[p.param] = np.take(value, np.flatnonzero(m), axis=p.axis)
    for name, value in arrays.items():
        inits[name].CopyFrom(numpy_helper.from_array(value, name))
    for index, edit in g.edits:
        edit(Rewriter(graph.node[index], mask, inits, graph))
    del graph.value_info[:]
    export_form(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as exc:
        raise OnnxPruneError(f"internal: shape inference failed after pruning: {exc}") from exc
    return model
