"""Load and normalise: old exporters, constant folding, shared weights, dynamic dims, external
data, quantized refusal, IR version kept."""

import numpy as np
import onnx
import pytest
import tiny
from onnx import helper, numpy_helper
from prunecheck import prove

from onnxprune import OnnxPruneError, load_model
from onnxprune.load import normalise
from onnxprune.rewrite import apply_plan, ratio_plan


def test_old_exporter_style_is_normalised():
    model = tiny.old_style()
    assert model.ir_version == 4
    prep = prove(model)
    assert not any(n.op_type == "Constant" for n in prep.model.graph.node)
    inits = {i.name for i in prep.model.graph.initializer}
    assert not any(i.name in inits for i in prep.model.graph.input)
    assert apply_plan(prep.graph, ratio_plan(prep.graph, 0.3)).ir_version == 4


def test_dynamic_dims_resolve_and_stay_dynamic():
    prep = prove(tiny.dynamic())
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.3))
    dims = pruned.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["N", "", "H", "W"]


def test_shared_initializer_is_copied_per_use():
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("Conv", ["a", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1, 4, 2, 2])],
                              [helper.make_tensor_value_info("y", 1, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    out = normalise(model)
    assert len({n.input[1] for n in out.graph.node}) == 2


def test_quantized_graph_is_refused():
    nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s"], ["y"])]
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", 1, [1, 2])],
                              [helper.make_tensor_value_info("y", 1, [1, 2])],
                              [numpy_helper.from_array(np.float32(0.1), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(OnnxPruneError, match="quantized"):
        normalise(model)


def test_external_data_model_loads(tmp_path):
    model = tiny.conv_chain()
    path = tmp_path / "ext.onnx"
    onnx.save(model, path, save_as_external_data=True, location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").exists()
    prove(load_model(str(path)))


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x08\x07"])
def test_garbage_is_refused(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(OnnxPruneError):
        load_model(str(path))


def test_implicit_conv_kernel_shape_is_written_out():
    """kernel_shape is optional on Conv; normalisation writes it from W (the refit reads it)."""
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", 1, [1, 4, 8, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    out = normalise(model)
    got = {a.name: helper.get_attribute_value(a) for a in out.graph.node[0].attribute}
    assert got["kernel_shape"] == [3, 3]
    assert not any(a.name == "kernel_shape" for a in model.graph.node[0].attribute)  # input untouched
