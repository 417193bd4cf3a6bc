"""Every exporter era: IR 3 models (every initializer also a graph input) at opsets 7-9 with
legacy attributes -- Conv/Pad ``pads`` attributes, BatchNormalization ``spatial``, Upsample
(scales attribute, then input), Split's ``split`` attribute, Slice's attribute bounds, Softmax
coercing to 2-D; Resize-10 and input-bound Slice at opset 10 -- prune, keep IR 3 and their
opset, and pass the checker."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from prunecheck import group_of, prove

from onnxprune import ops, prune


def legacy_model(opset: int) -> onnx.ModelProto:
    """x [1,3,8,8] -> conv(12) -> BN -> Relu -> Upsample (Resize at 10) x2 -> Pad -> MaxPool ->
    Split(4, 8) ->
    Concat(swapped) -> Slice channels [2:12] -> conv(5) -> Flatten -> Gemm(7) -> Softmax."""
    rng = np.random.default_rng(opset)
    arrays = {
        "w1": rng.standard_normal((12, 3, 3, 3)), "b1": rng.standard_normal(12),
        "gamma": rng.uniform(0.5, 1.5, 12), "beta": rng.standard_normal(12),
        "mean": rng.standard_normal(12) * 0.1, "var": rng.uniform(0.5, 1.5, 12),
        "w2": rng.standard_normal((5, 10, 1, 1)), "b2": rng.standard_normal(5),
        "fc": rng.standard_normal((7, 5 * 9 * 9)) * 0.05, "fc_b": rng.standard_normal(7),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()]
    bn_attrs = {"spatial": 1} if opset < 9 else {}
    if opset < 9:
        upsample = helper.make_node("Upsample", ["r"], ["u"], name="up", scales=[1.0, 1.0, 2.0, 2.0])
    else:  # Upsample-9 and Resize-10 read the scales from input 1
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        upsample = helper.make_node("Upsample" if opset < 10 else "Resize", ["r", "scales"], ["u"],
                                    name="up")
    if opset < 10:
        slice_ = helper.make_node("Slice", ["cat"], ["sl"], name="slice", starts=[2], ends=[12],
                                  axes=[1])
    else:
        inits += [numpy_helper.from_array(np.array([v], np.int64), k)
                  for k, v in (("starts", 2), ("ends", 12), ("axes", 1))]
        slice_ = helper.make_node("Slice", ["cat", "starts", "ends", "axes"], ["sl"], name="slice")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"],
                         name="bn", **bn_attrs),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        upsample,
        helper.make_node("Pad", ["u"], ["p"], name="pad", pads=[0, 0, 1, 1, 0, 0, 1, 1]),
        helper.make_node("MaxPool", ["p"], ["m"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Split", ["m"], ["s0", "s1"], name="split", axis=1, split=[4, 8]),
        helper.make_node("Concat", ["s1", "s0"], ["cat"], name="cat", axis=1),
        slice_,
        helper.make_node("Conv", ["sl", "w2", "b2"], ["c2"], name="c2"),
        helper.make_node("Flatten", ["c2"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "fc", "fc_b"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    inputs += [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in inits]
    graph = helper.make_graph(nodes, f"legacy{opset}", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 3
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("opset", [7, 8, 9, 10])
def test_ir3_legacy_ops_prune_and_check(opset):
    prep = prove(legacy_model(opset))
    assert len(group_of(prep, "c1").prunable) == 12  # through BN, Upsample, Pad, Split, Slice
    assert len(group_of(prep, "c2").prunable) == 5  # through Flatten into the Gemm
    out = prune(legacy_model(opset), ratio=0.5).model
    assert out.ir_version == 3 and ops.opset_version(out) == opset
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in out.graph.input}
    assert all(inputs[i.name] == list(i.dims) for i in out.graph.initializer)
    onnx.checker.check_model(out, full_check=True)
    split = next(n for n in out.graph.node if n.op_type == "Split")
    assert sum(ops.attr(split, "split")) < 12  # the attribute (not an input) holds the kept sizes
