"""Depthwise conv passes channels through (group attribute rewritten); the squeeze-excite Mul
couples the SE expand conv with the block's expanded channels (GAP and ReduceMean variants)."""

import tiny
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan


def test_expand_dw_se_is_one_group():
    prep = prove(tiny.depthwise_se())
    for expand, se_expand in (("conv_1", "conv_4"), ("conv_6", "conv_9")):
        g = group_of(prep, expand)
        assert {s.node for s in g.sources} == {expand, se_expand}
        roles = {(p.node, p.role) for p in g.members}
        assert any(role == "in" for _, role in roles)


def test_depthwise_group_attribute_follows_kept_width():
    prep = prove(tiny.depthwise_se())
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    dw = next(n for n in pruned.graph.node if n.name == "conv_2")
    group = next(a.i for a in dw.attribute if a.name == "group")
    weight = next(i for i in pruned.graph.initializer if i.name == dw.input[1])
    assert group == weight.dims[0] < 32
