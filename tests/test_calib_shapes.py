"""A model with a dynamic sequence axis is traced and timed at the calibration samples'
length (batch 1), unless --shape says otherwise; static inputs keep their shapes."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune import calib
from onnxprune.preparation import prepare


def tokens_model() -> onnx.ModelProto:
    """x [batch, seq, 8] -> MatMul(8x16) -> Relu -> MatMul(16x8) -> y."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
         helper.make_node("Relu", ["h"], ["r"], name="act"),
         helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")], "tokens",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8])],
        [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1"),
         numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_dynamic_sequence_takes_the_calibration_length():
    samples = {"x": np.random.default_rng(1).standard_normal((16, 12, 8)).astype(np.float32)}
    prep = prepare(tokens_model(), calib_data=samples)
    assert prep.feeds["x"].shape == (1, 12, 8)
    assert prep.graph.shapes["h"] == (1, 12, 16)


def test_shape_override_wins_and_no_data_keeps_defaults():
    model = tokens_model()
    samples = {"x": np.zeros((4, 12, 8), np.float32)}
    assert calib.shapes_from(model, samples, {"x": (1, 32, 8)}) == {"x": (1, 32, 8)}
    assert calib.shapes_from(model, None, None) == {}
    assert prepare(model).feeds["x"].shape == (1, 1, 8)
