"""Models the tool derives (cut prefixes and suffixes, sensitivity probes) from two kinds of
real exports that broke them: a graph with a scalar intermediate that crosses a cut (a shape
computed with Shape -> Gather, as TF and Paddle exports do), and an IR-3 graph (initializers
listed as graph inputs). Both go through the whole `--speedup` path: table, search, recovery."""

import numpy as np
import onnx
from fakes import Analytic
from onnx import helper, numpy_helper

from onnxprune import calib, load, sensitivity
from onnxprune.job import Job
from onnxprune.pipeline import prune_to_target
from onnxprune.preparation import prepare


def _scalar_shape_model(ir_version: int = 10, opset: int = 17) -> onnx.ModelProto:
    """x -> conv1 (8) -> Relu -> conv2 (16) -> Relu -> GAP -> Reshape(to [n, -1]) -> Gemm, where
    n = Gather(Shape(relu1), 0) is a scalar computed *before* conv2, the first consumer of
    conv1's channels, and read after it."""
    rng = np.random.default_rng(3)

    def w(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:])))
                                       .astype(np.float32), name)
    inits = [w("w1", (8, 3, 3, 3)), w("w2", (16, 8, 3, 3)), w("wg", (10, 16)),
             numpy_helper.from_array(np.full(10, 0.1, np.float32), "bg"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    unsqueeze = (helper.make_node("Unsqueeze", ["n"], ["n1"], name="unsq", axes=[0]) if opset < 13
                 else helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="unsq"))
    if opset >= 13:
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "axes0"))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Shape", ["r1"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="batch"),
             unsqueeze,
             helper.make_node("Concat", ["n1", "minus_one"], ["shp"], name="shp", axis=0),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
             helper.make_node("Reshape", ["p", "shp"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "scalar_shape", [helper.make_tensor_value_info("x", 1, ["N", 3, 12, 12])],
                              [helper.make_tensor_value_info("logits", 1, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def _ir3(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph the way IR-3 exporters wrote it: every initializer is also a graph input."""
    model.ir_version = 3
    model.graph.input.extend(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
                             for i in model.graph.initializer)
    return model


def _samples(n: int = 40, seed: int = 0) -> calib.Samples:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, 3, 12, 12)).astype(np.float32)}


def test_collect_stacks_tensors_without_a_batch_axis():
    model = load.normalise(_scalar_shape_model())
    got = calib.Tap(model, ["n", "shp", "r1"]).collect(_samples(40), ["n", "shp", "r1"])
    assert got["r1"].shape[0] == 40  # activations: one row per sample
    assert got["n"].shape == (3,) and got["shp"].shape == (3, 2)  # one entry per batch of 16


def test_probe_recomputes_a_scalar_that_crosses_the_cut():
    prep = prepare(_scalar_shape_model(), calib_data=_samples())
    samples, _ = prep.value_samples()
    group = next(g for g in prep.graph.groups if g.sources[0].node == "conv1")
    probe = sensitivity.GroupProbe(prep.graph, group, prep.stats, samples)
    assert "shp" not in probe.inputs and "n" not in probe.inputs  # recomputed, not fed
    ref = calib.Tap(prep.graph.model, []).collect(samples, ["logits"])["logits"]
    got = probe.outputs(probe.weights(np.zeros(0, np.int64), refit=False))["logits"]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def _speedup(model, tmp_path):
    prep = prepare(model, calib_data=_samples())
    tr = prune_to_target(prep, Analytic(), Job.of(prep.original, speedup=1.3,
                                                  cache_path=str(tmp_path / "p.json"),
                                                  progress=False))
    assert tr.result is not None and tr.final.speedup >= 1.3
    assert tr.table is not None and len(tr.table.values) >= 2
    return prep, tr


def test_scalar_intermediate_model_prunes_to_a_speedup(tmp_path):
    _speedup(_scalar_shape_model(), tmp_path)


def test_ir3_model_prunes_to_a_speedup_and_stays_ir3(tmp_path):
    _prep, tr = _speedup(_ir3(_scalar_shape_model(ir_version=3, opset=9)), tmp_path)
    out = tr.result.model
    assert out.ir_version == 3
    inputs = {i.name for i in out.graph.input}
    assert all(i.name in inputs for i in out.graph.initializer)  # IR 3's convention kept
    onnx.checker.check_model(out, full_check=True)
