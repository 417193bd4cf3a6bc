"""Every unary, pooling and spatial-reduce rule carries channels: conv -> OP -> conv proofs."""

import onnx
import pytest
from opmodels import sandwich
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


@pytest.mark.parametrize("op", sorted(set(UNARY) - SKIP) + sorted(POOLS))
def test_single_op_carries_channels(op):
    assert REGISTRY.lookup(op, 20) is not None
    prep = prove(sandwich(op, POOLS.get(op, EXTRA.get(op, {}))))
    assert len(group_of(prep, "c1").prunable) == 12


def test_every_pool_is_covered():
    assert set(POOLS) == set(POOL_OPS)
