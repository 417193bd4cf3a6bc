"""Every unary, pooling and spatial-reduce rule carries channels: conv -> OP -> conv proofs."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from prunecheck import group_of, prove

from onnxprune.ops import REGISTRY
from onnxprune.ops.elementwise import POOLS as POOL_OPS
from onnxprune.ops.elementwise import UNARY

SKIP = {"Not", "IsNaN", "IsInf", "Cast", "Log", "Sqrt"}  # bool ops; Log/Sqrt need x > 0
EXTRA = {"Cast": {"to": onnx.TensorProto.FLOAT}, "Clip": {}}
POOLS = {
    "MaxPool": {"kernel_shape": [2, 2]}, "AveragePool": {"kernel_shape": [2, 2]},
    "LpPool": {"kernel_shape": [2, 2]}, "GlobalAveragePool": {}, "GlobalMaxPool": {},
    "GlobalLpPool": {},
}


def _model(op: str, attrs: dict, opset: int = 20, c2_in: int = 12) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((12, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(12).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((5, c2_in, 1, 1)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node(op, ["a"], ["b"], name="op", **attrs),
        helper.make_node("Conv", ["b", "w2"], ["y"], name="c2"),
    ]
    graph = helper.make_graph(
        nodes, op, [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [w1, b1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


@pytest.mark.parametrize("op", sorted(set(UNARY) - SKIP) + sorted(POOLS))
def test_single_op_carries_channels(op):
    assert REGISTRY.lookup(op, 20) is not None
    prep = prove(_model(op, POOLS.get(op, EXTRA.get(op, {}))))
    assert len(group_of(prep, "c1").prunable) == 12


def test_reduce_over_channels_freezes():
    prep = prove(_model("ReduceMean", {"axes": [1], "keepdims": 1}, opset=17, c2_in=1), min_removed=0)
    assert "ReduceMean over the channel axis" in group_of(prep, "c1").frozen_reason


def test_unknown_op_freezes():
    prep = prove(_model("LRN", {"size": 3}), min_removed=0)
    assert "no rule for LRN" in group_of(prep, "c1").frozen_reason


def test_every_pool_is_covered():
    assert set(POOLS) == set(POOL_OPS)
