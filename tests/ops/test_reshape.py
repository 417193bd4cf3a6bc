"""Flatten/Reshape into Gemm/MatMul: each channel maps to a block of H*W features."""

import tiny
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan


def test_flatten_into_gemm_repeats_each_channel():
    prep = prove(tiny.flatten_gemm())
    conv = group_of(prep, "conv_0")
    flat = prep.graph.channels[next(n for n in prep.model.graph.node if n.name == "flatten_0").output[0]]
    assert len(flat.labels) == conv.width * 64
    assert any(p.node == "gemm_0" and p.role == "in" for p in conv.members)
    hidden = group_of(prep, "gemm_0")
    assert len(hidden.prunable) == hidden.width


def test_reshape_constant_shape_is_rewritten():
    prep = prove(tiny.reshape_matmul())
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    node = next(n for n in pruned.graph.node if n.name == "reshape_1")
    shape = next(i for i in pruned.graph.initializer if i.name == node.input[1])
    from onnx import numpy_helper
    assert numpy_helper.to_array(shape)[1] < 512
