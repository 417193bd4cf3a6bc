"""Gemm: the output units are a source (B's N axis and a per-unit C), the next Gemm's K axis
consumes them (axis 1 of B with ``transB``, else 0); ``transA`` freezes."""

from onnx import helper
from opmodels import initializer, model, weight
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan


def mlp(trans_a: int = 0):
    """x [1, 8] -> Gemm(16, transB) -> Relu -> Gemm(4, B as [K, N]; ``trans_a``) -> y."""
    w2 = weight("w2", (1, 4) if trans_a else (16, 4), 2)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="act"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transA=trans_a)]
    inits = [weight("w1", (16, 8), 0), weight("b1", (16,), 1), w2, weight("b2", (4,), 3)]
    return model(nodes, inits, x_shape=(1, 8))


def test_hidden_units_prune_on_both_sides():
    prep = prove(mlp(), ratio=0.5)
    hidden = group_of(prep, "fc1")
    assert hidden.width == 16 and len(hidden.prunable) == 16
    assert {(m.param, m.axis, m.role) for m in hidden.members} == {
        ("w1", 0, "out"), ("b1", 0, "channelwise"), ("w2", 0, "in")}
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    assert initializer(pruned, "fc1", 1).shape == (8, 8)
    assert initializer(pruned, "fc1", 2).shape == (8,)
    assert initializer(pruned, "fc2", 1).shape == (8, 4)


def test_trans_a_freezes():
    prep = prove(mlp(trans_a=1), min_removed=0)
    assert "Gemm with transA" in group_of(prep, "fc1").frozen_reason
