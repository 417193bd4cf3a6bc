"""Split on the channel axis: each output carries its sub-range of the channels, and the sizes
(an input from opset 13; ``num_outputs`` at opset 18 becomes one) are the kept counts; along
another axis every output carries all the channels."""

import numpy as np
from onnx import helper
from opmodels import initializer, model, weight
from prunecheck import group_of, prove

from onnxprune import ops
from onnxprune.rewrite import apply_plan, ratio_plan


def split_model(opset: int, axis: int = 1, sizes: list[int] | None = None):
    """x -> Conv c1 (12) -> Split into two -> Conv c2 / c3 -> Add -> y."""
    split_inputs = ["a", "sizes"] if sizes else ["a"]
    attrs = {} if sizes else {"num_outputs": 2}
    inits = [weight("w1", (12, 3, 1, 1), 0)]
    if sizes:
        inits.append(helper.make_tensor("sizes", 7, [2], sizes))
    halves = sizes or [6, 6]
    in_widths = halves if axis == 1 else [12, 12]
    inits += [weight("w2", (5, in_widths[0], 1, 1), 1), weight("w3", (5, in_widths[1], 1, 1), 2)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
             helper.make_node("Split", split_inputs, ["s0", "s1"], name="split", axis=axis, **attrs),
             helper.make_node("Conv", ["s0", "w2"], ["p"], name="c2"),
             helper.make_node("Conv", ["s1", "w3"], ["q"], name="c3")]
    if axis == 1:
        nodes.append(helper.make_node("Add", ["p", "q"], ["y"], name="add"))
    else:
        nodes.append(helper.make_node("Concat", ["p", "q"], ["y"], name="cat", axis=axis))
    return model(nodes, inits, opset)


def test_sizes_input_becomes_the_kept_counts():
    prep = prove(split_model(13, sizes=[4, 8]), ratio=0.5)
    g = prep.graph
    assert len(group_of(prep, "c1").prunable) == 12
    assert list(g.roots(g.channels["s0"].labels)) + list(g.roots(g.channels["s1"].labels)) == list(
        g.roots(g.channels["a"].labels))
    plan = ratio_plan(g, 0.5)
    kept = plan.keep[group_of(prep, "c1").id]
    pruned = apply_plan(g, plan)
    assert list(initializer(pruned, "split", 1)) == [int((kept < 4).sum()), int((kept >= 4).sum())]


def test_num_outputs_is_replaced_by_sizes():
    prep = prove(split_model(18), ratio=0.5)
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    node = next(n for n in pruned.graph.node if n.name == "split")
    assert ops.attr(node, "num_outputs") is None
    assert initializer(pruned, "split", 1).sum() == 6


def test_split_along_another_axis_carries_every_channel():
    prep = prove(split_model(13, axis=2, sizes=[3, 5]), ratio=0.5)
    g = prep.graph
    assert len(group_of(prep, "c1").prunable) == 12
    for part in ("s0", "s1"):
        assert np.array_equal(g.roots(g.channels[part].labels), g.roots(g.channels["a"].labels))
