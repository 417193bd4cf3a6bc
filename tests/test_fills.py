"""Constant fills: weights the source stores as ``ConstantOfShape`` (one value and a shape, as
in the onnx package's "light" models) are written back as fills of their pruned shape while
they still hold one value, and inferred value_info is written only when the source has some, so
the written model is not larger than its source; recovered (non-uniform) tensors stay
initializers. The written model computes what the in-memory one does."""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune import runtime, runtimes
from onnxprune.cli import main
from onnxprune.inputs import random_feeds
from onnxprune.load import normalise, source_form

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _filled_conv(ir_version: int = 3, opset: int = 9) -> onnx.ModelProto:
    """x -> Conv(W = Transpose(fill 0.05 of 3x8x3x3), B = fill 0.1 of 8) -> Relu -> Conv(W2 =
    random): one weight computed by a chain from a fill, one a fill itself."""
    shapes = [numpy_helper.from_array(np.array(s, np.int64), f"{n}__SHAPE")
              for n, s in (("wt", [3, 8, 3, 3]), ("b", [8]))]
    fill = lambda name, v: helper.make_node(
        "ConstantOfShape", [f"{name}__SHAPE"], [name],
        value=numpy_helper.from_array(np.array([v], np.float32)))
    w2 = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 8, 1, 1))
                                 .astype(np.float32), "w2")
    graph = helper.make_graph(
        [fill("wt", 0.05), helper.make_node("Transpose", ["wt"], ["w"], perm=[1, 0, 2, 3]),
         fill("b", 0.1),
         helper.make_node("Conv", ["x", "w", "b"], ["h"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Conv", ["r", "w2"], ["y"])],
        "filled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [*shapes, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    if ir_version < 4:
        graph.input.extend(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
                           for i in graph.initializer)
    return model


def test_uniform_tensors_become_fills_again_and_compute_the_same():
    source = _filled_conv()
    dense = normalise(source)
    assert not [n for n in dense.graph.node if n.op_type == "ConstantOfShape"]
    w = next(i for i in dense.graph.initializer if i.name == "w")
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w)[:5], "w"))  # a "pruned" fill
    got = source_form(onnx.ModelProto.FromString(dense.SerializeToString()), source)
    fills = {n.output[0] for n in got.graph.node if n.op_type == "ConstantOfShape"}
    assert fills == {"w", "b"}
    assert {i.name for i in got.graph.input} == {"x"} | {i.name for i in got.graph.initializer}
    onnx.checker.check_model(got, full_check=True)
    assert got.ByteSize() < dense.ByteSize()
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    ref = runtime.run_outputs(runtimes.session(_sliced(dense)), feeds)
    out = runtime.run_outputs(runtimes.session(_sliced(got)), feeds)
    np.testing.assert_allclose(out["y"], ref["y"], rtol=1e-6, atol=1e-6)


def _sliced(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make the 5-channel ``w`` consistent: slice ``b`` (fill or initializer) and ``w2``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for init in model.graph.initializer:
        if init.name == "b__shape":
            init.CopyFrom(numpy_helper.from_array(np.array([5], np.int64), init.name))
        elif init.name in ("b", "w2"):
            a = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(a[:5] if init.name == "b" else a[:, :5], init.name))
    for vi in model.graph.input:
        if vi.name in ("b", "w2", "b__shape"):
            dims = vi.type.tensor_type.shape.dim
            (dims[0] if vi.name == "b" else dims[1] if vi.name == "w2" else dims[0]).dim_value = \
                5 if vi.name != "b__shape" else 1
    return model


def test_recovered_tensors_stay_initializers():
    source = _filled_conv()
    dense = normalise(source)
    b = next(i for i in dense.graph.initializer if i.name == "b")
    b.CopyFrom(numpy_helper.from_array(np.linspace(0, 1, 8).astype(np.float32), "b"))
    got = source_form(dense, source)
    assert {n.output[0] for n in got.graph.node if n.op_type == "ConstantOfShape"} == {"w"}
    assert "b" in {i.name for i in got.graph.initializer}


def test_a_light_model_pruned_is_written_smaller_than_its_source(tmp_path):
    path = os.path.join(LIGHT, "light_squeezenet.onnx")
    out = tmp_path / "out.onnx"
    main([path, "-o", str(out), "--ratio", "0.3", "--no-latency"])
    written = onnx.load(out)
    onnx.checker.check_model(written, full_check=True)
    assert sum(n.op_type == "ConstantOfShape" for n in written.graph.node) > 20
    assert not written.graph.value_info  # the source carries none
    assert os.path.getsize(out) < os.path.getsize(path)
    feeds = random_feeds(written)
    y = runtime.run_outputs(runtimes.session(written), feeds)
    ref = runtime.run_outputs(runtimes.session(onnx.load(path)), feeds)
    assert [v.shape for v in y.values()] == [v.shape for v in ref.values()]


def test_before_opset_9_nothing_becomes_a_fill():
    """ConstantOfShape exists from opset 9: an older model's computed constants stay dense."""
    source = _filled_conv()
    dense = normalise(source)
    del dense.opset_import[:]
    dense.opset_import.extend([helper.make_opsetid("", 8)])
    got = source_form(dense, source)
    assert not [n for n in got.graph.node if n.op_type == "ConstantOfShape"]
    assert {"w", "b"} <= {i.name for i in got.graph.initializer}
