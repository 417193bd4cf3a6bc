"""Resize and Upsample: spatial rescaling carries the channels (Resize-11+ ``sizes`` get the
kept width on the channel axis); rescaling the channel axis freezes."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from opmodels import initializer, sandwich
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan


@pytest.mark.parametrize("by", ["scales", "sizes"])
def test_spatial_resize_carries_channels(by):
    """Resize-13 doubling H and W, given by ``scales`` (input 2) or ``sizes`` (input 3)."""
    scales = np.array([1, 1, 2, 2], np.float32)
    sizes = np.array([1, 12, 16, 16], np.int64)
    consts = [None, scales] if by == "scales" else [None, None, sizes]
    prep = prove(sandwich("Resize", {"mode": "nearest"}, opset=13, consts=consts), ratio=0.5)
    assert len(group_of(prep, "c1").prunable) == 12
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    if by == "sizes":
        assert list(initializer(pruned, "op", 3)) == [1, 6, 16, 16]


def test_resize10_scaling_the_channel_axis_freezes():
    """Resize-10 keeps its scales in input 1 (input 2 from opset 11): a channel scale of 2 is
    seen there and freezes the channels it would duplicate."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.array([1, 2, 1, 1], np.float32), "scales"),
             numpy_helper.from_array(rng.standard_normal((2, 8, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
             helper.make_node("Resize", ["a", "scales"], ["b"], name="resize"),
             helper.make_node("Conv", ["b", "w2"], ["y"], name="c2")]
    graph = helper.make_graph(nodes, "resize10", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 4, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    prep = prove(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)]),
                 min_removed=0)
    assert "Resize scales the channel axis" in group_of(prep, "c1").frozen_reason
