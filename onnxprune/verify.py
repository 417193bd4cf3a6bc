"""Verify: the pruned model is valid, runs, keeps its outputs' shapes, and its index maps are right.

The index-map proof (:func:`zero_filter_error`): in the unpruned model, zero every consumer's
input slice for the removed channels (so they carry nothing downstream; zeroing the producer is
not enough when a BN or bias follows), then compare with the pruned model. Equal outputs (to
float rounding) prove that every rule removed exactly the positions its map claims.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import numpy_helper

from . import runtime
from .errors import OnnxPruneError
from .graph import ChannelGraph
from .rewrite import PrunePlan, apply_plan, channel_masks


def check_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                reference: onnx.ModelProto | None = None) -> dict[str, np.ndarray]:
    """Full onnx check, load and run in onnxruntime; outputs keep the reference's names and
    shapes. Returns the outputs."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise OnnxPruneError(f"internal: pruned model fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    out = runtime.run(runtime.session(model), feeds)
    if reference is not None:
        ref = runtime.run(runtime.session(reference), feeds)
        for name, value in ref.items():
            if name not in out or out[name].shape != value.shape:
                raise OnnxPruneError(f"internal: output {name!r} changed shape after pruning")
    return out


def zeroed_model(g: ChannelGraph, plan: PrunePlan) -> onnx.ModelProto:
    """``g.model`` with the consumer input slices of the removed channels set to zero."""
    model = copy.deepcopy(g.model)
    mask = channel_masks(g, plan)
    inits = {i.name: i for i in model.graph.initializer}
    arrays: dict[str, np.ndarray] = {}
    for p in g.params:
        if p.role != "in":
            continue
        gone = np.flatnonzero(~mask(p.tensor))
        if not len(gone):
            continue
        value = arrays.get(p.param, g.consts[p.param]).copy()
        index = [slice(None)] * value.ndim
        index[p.axis] = gone
        value[tuple(index)] = 0
        arrays[p.param] = value
    for name, value in arrays.items():
        inits[name].CopyFrom(numpy_helper.from_array(value, name))
    return model


def zero_filter_error(g: ChannelGraph, plan: PrunePlan, feeds: dict[str, np.ndarray]) -> float:
    """Max relative output error between the zeroed and the pruned model (should be ~1e-7)."""
    cfg = runtime.RuntimeConfig(opt_level="disable")
    ref = runtime.run(runtime.session(zeroed_model(g, plan), cfg), feeds)
    got = runtime.run(runtime.session(apply_plan(g, plan), cfg), feeds)
    return runtime.max_rel_error(ref, got)
