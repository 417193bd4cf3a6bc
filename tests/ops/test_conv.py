"""Conv (group=1) with bias and BN: producer rows, BN parameters and consumer slices follow.
Grouped (non-depthwise) convs: every group keeps the same count, so channel j of each group
is one channel; the group attribute stays, W's per-group input axis shrinks."""

import tiny
from onnx import numpy_helper
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan


def test_conv_chain_groups_and_proof():
    prep = prove(tiny.conv_chain())
    g0 = group_of(prep, "conv_0")
    assert g0.width == 16 and len(g0.prunable) == 16
    params = {(p.node, p.role) for p in g0.members}
    assert ("conv_0", "out") in params and ("bn_0", "channelwise") in params
    assert ("conv_1", "in") in params
    assert group_of(prep, "conv_2").frozen_reason == "reaches graph output"


def test_grouped_conv_prunes_equal_counts_per_group():
    prep = prove(tiny.grouped(), ratio=0.5)
    producer = group_of(prep, "conv_0")  # 16 channels feeding a group=4 conv: 4 per group
    assert producer.width == 4 and len(producer.prunable) == 4
    assert group_of(prep, "conv_1").width == 32 // 4
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    node = next(n for n in pruned.graph.node if n.name == "conv_1")
    w = numpy_helper.to_array(next(i for i in pruned.graph.initializer if i.name == node.input[1]))
    assert next(a.i for a in node.attribute if a.name == "group") == 4
    assert w.shape[:2] == (16, 2)
