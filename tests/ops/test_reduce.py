"""Reductions: over spatial axes the channels pass (keepdims or not); over the channel axis
they freeze with the op's reason."""

import numpy as np
from onnx import helper
from opmodels import initializer, model, sandwich, weight
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan


def test_reduce_over_channels_freezes():
    prep = prove(sandwich("ReduceMean", {"axes": [1], "keepdims": 1}, opset=17, c2_in=1), min_removed=0)
    assert "ReduceMean over the channel axis" in group_of(prep, "c1").frozen_reason


def test_spatial_reduce_with_axes_input_carries_channels():
    """Opset 18 moves ``axes`` to input 1; reducing H and W keeps every channel prunable."""
    prep = prove(sandwich("ReduceMax", {"keepdims": 1}, consts=[np.array([2, 3], np.int64)]))
    assert len(group_of(prep, "c1").prunable) == 12
    assert ("c2", "in") in {(m.node, m.role) for m in group_of(prep, "c1").members}


def test_global_pool_without_keepdims_feeds_a_gemm():
    """Conv -> ReduceMean over H, W (keepdims=0) -> Gemm: the [1, 12] features are the conv's
    channels, so the Gemm's input columns go with them."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
             helper.make_node("ReduceMean", ["a"], ["p"], name="gap", axes=[2, 3], keepdims=0),
             helper.make_node("Gemm", ["p", "fc"], ["y"], name="fc", transB=1)]
    prep = prove(model(nodes, [weight("w1", (12, 3, 1, 1), 0), weight("fc", (5, 12), 1)]),
                 ratio=0.5)
    assert prep.graph.channels["p"].axis == 1
    conv = group_of(prep, "c1")
    assert len(conv.prunable) == 12
    assert ("fc", "fc", "in") in {(m.node, m.param, m.role) for m in conv.members}
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    assert initializer(pruned, "fc", 1).shape == (5, 6)
