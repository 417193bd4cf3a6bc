"""The correctness proofs every test model goes through."""

from __future__ import annotations

import onnx

from onnxprune import runtime, verify
from onnxprune.preparation import Prepared, prepare
from onnxprune.rewrite import PrunePlan, apply_plan, ratio_plan
from onnxprune.stats import param_count


def prove(model: onnx.ModelProto, ratio: float = 0.3, min_removed: int = 1) -> Prepared:
    """Pruning nothing is exact; pruning ``ratio`` of every group passes the checker, runs,
    keeps output shapes, shrinks the model, and matches the zero-filter model to 1e-5."""
    prep = prepare(model)
    ref = runtime.run_outputs(prep.original, prep.feeds)
    normalised = prep.reference()
    assert runtime.max_rel_error(ref, normalised) < 1e-6
    untouched = runtime.run_outputs(apply_plan(prep.graph, PrunePlan()), prep.feeds)
    assert runtime.max_rel_error(normalised, untouched) == 0.0
    plan = ratio_plan(prep.graph, ratio)
    removed = sum(len(v) for v in plan.removed(prep.graph).values())
    assert removed >= min_removed
    pruned = apply_plan(prep.graph, plan)
    out = verify.check_model(pruned, prep.feeds, normalised)
    for name, value in ref.items():
        assert out[name].shape == value.shape
    if removed:
        assert param_count(pruned) < param_count(prep.model)
    assert verify.zero_filter_error(prep.graph, plan, prep.feeds) < 1e-5
    return prep


def group_of(prep: Prepared, node_name: str):
    """The group whose source (or member) is the node called ``node_name``."""
    for g in prep.graph.groups:
        if any(s.node == node_name for s in g.sources):
            return g
    raise KeyError(node_name)
