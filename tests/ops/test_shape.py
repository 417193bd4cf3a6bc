"""Ops that read or copy shapes. Shape: reading a shape couples nothing (torch's
``x.view(x.size(0), -1)`` prunes through it). Expand / Tile: broadcasts that keep the channel
width carry the channels (Expand's channel entry becomes 1); repeating the channel axis
freezes."""

import numpy as np
from onnx import helper, numpy_helper
from opmodels import X_SHAPE, initializer, model, sandwich, weight
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan


def test_flatten_by_shape_of_the_batch_prunes():
    """Conv -> Reshape(x, [Shape(x)[0], -1]) -> Gemm: the shape read is not a channel use."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
             helper.make_node("Shape", ["a"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="batch", axis=0),
             helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"], name="unsq"),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], name="target", axis=0),
             helper.make_node("Reshape", ["a", "target"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1)]
    hw = X_SHAPE[2] * X_SHAPE[3]
    inits = [weight("w1", (12, 3, 1, 1), 0), weight("fc", (5, 12 * hw), 1),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "zero1"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    prep = prove(model(nodes, inits), ratio=0.5)
    assert prep.graph.ch("s") is None  # the shape tensor carries no channels
    conv = group_of(prep, "c1")
    assert len(conv.prunable) == 12 and ("fc", "in") in {(m.node, m.role) for m in conv.members}
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    assert initializer(pruned, "fc", 1).shape == (5, 6 * hw)


def test_expand_keeping_the_width_carries_and_writes_1():
    prep = prove(sandwich("Expand", consts=[np.array([2, 12, 8, 8], np.int64)]), ratio=0.5)
    assert len(group_of(prep, "c1").prunable) == 12
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    assert list(initializer(pruned, "op", 1)) == [2, 1, 8, 8]


def test_tile_carries_spatial_repeats_and_freezes_channel_repeats():
    prep = prove(sandwich("Tile", consts=[np.array([1, 1, 2, 2], np.int64)]))
    assert len(group_of(prep, "c1").prunable) == 12
    prep = prove(sandwich("Tile", consts=[np.array([1, 2, 1, 1], np.int64)], c2_in=24),
                 min_removed=0)
    assert "Tile repeats the channel axis" in group_of(prep, "c1").frozen_reason
