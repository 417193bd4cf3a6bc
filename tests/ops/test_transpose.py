"""Transpose moves the channel axis (NCHW -> NHWC): the consumer reading the channels on
their new axis (a MatMul over the last axis) is coupled with the conv that makes them."""

from onnx import helper
from opmodels import initializer, model, weight
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan


def test_channels_last_feed_a_matmul():
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="c1"),
             helper.make_node("Transpose", ["a"], ["t"], name="nhwc", perm=[0, 2, 3, 1]),
             helper.make_node("MatMul", ["t", "w2"], ["y"], name="fc")]
    inits = [weight("w1", (12, 3, 1, 1), 0), weight("b1", (12,), 1), weight("w2", (12, 5), 2)]
    prep = prove(model(nodes, inits), ratio=0.5)
    assert prep.graph.channels["t"].axis == 3
    assert prep.graph.spaces.edges[("a", 1), ("t", 3)]["how"] == "transpose"
    conv = group_of(prep, "c1")
    assert len(conv.prunable) == 12 and ("fc", "in") in {(m.node, m.role) for m in conv.members}
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    assert initializer(pruned, "fc", 1).shape == (6, 5)
