"""Deployment precision (onnxprune.quantize): the int8 model is onnxruntime's own quantizer's,
the zero-filter proof survives quantization, the isolated int8 layer is profiled on its own
staircase, a node the quantizer declines stays float with one warning, and the calibration
method kept is the more faithful one."""

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tiny
from fakes import Int8Staircase
from onnx import helper, numpy_helper

from onnxprune import calib, fidelity, quantize, runtime
from onnxprune.preparation import prepare
from onnxprune.profile import Cache, profile_model
from onnxprune.rewrite import apply_plan, ratio_plan

RNG = np.random.default_rng(3)
SAMPLES = {"x": RNG.standard_normal((24, 3, 16, 16)).astype(np.float32)}


def _ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


def _reference(model: onnx.ModelProto, samples: dict, tmp_path) -> onnx.ModelProto:
    """The same model through the quantizer as its documentation has a user call it: the
    pre-processing step with its defaults, then quantize_static (defaults, QDQ, per channel)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{k: v[i:i + 1] for k, v in samples.items()} for i in range(len(samples["x"]))])

        def get_next(self):
            return next(self.it, None)

    src, pre, dst = (os.path.join(tmp_path, f) for f in ("f.onnx", "p.onnx", "q.onnx"))
    onnx.save(model, src)
    quant_pre_process(src, pre)
    quantize_static(pre, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return onnx.load(dst)


def test_int8_model_is_the_runtime_quantizers_and_keeps_the_interface(tmp_path):
    model = tiny.conv_chain()
    q = quantize.quantize(model, SAMPLES, quantize.Quantization(samples=24))
    assert q.quantized and q.warnings == [] and q.label == "int8 minmax"
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(q.model)
    assert "BatchNormalization" in _ops(model) and "BatchNormalization" not in _ops(q.model)  # folded
    onnx.checker.check_model(q.model)
    assert [(i.name, i.type) for i in q.model.graph.input] == [(i.name, i.type) for i in model.graph.input]
    assert [o.name for o in q.model.graph.output] == [o.name for o in model.graph.output]
    feeds = {"x": SAMPLES["x"][:1]}
    ours, ref = runtime.run_outputs(q.model, feeds), runtime.run_outputs(_reference(model, SAMPLES, tmp_path), feeds)
    flt = runtime.run_outputs(model, feeds)
    for name in ref:
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-5, atol=1e-5)
        scale = np.abs(flt[name]).max()
        assert 0 < np.abs(ours[name] - flt[name]).max() < 0.1 * scale  # int8, and close to float


def test_zero_filter_proof_holds_through_quantization():
    """Channels whose filters and consumer slices are zero: the pruned model, quantized, gives
    the zeroed model's quantized outputs (ranges include 0, zero slices set no weight scale)."""
    model = tiny.single_conv(cin=3, cout=16, hw=8, head=4, head_k=3)
    conv, head = (n for n in model.graph.node if n.op_type == "Conv")
    inits = {t.name: t for t in model.graph.initializer}
    drop = [1, 4, 5, 11]
    for name, axis in ((conv.input[1], 0), (head.input[1], 1)) + (((conv.input[2], 0),) if len(conv.input) > 2 else ()):
        w = numpy_helper.to_array(inits[name]).copy()
        np.moveaxis(w, axis, 0)[drop] = 0
        inits[name].CopyFrom(numpy_helper.from_array(w, name))
    prep = prepare(model)
    plan = ratio_plan(prep.graph, len(drop) / 16)
    assert sorted(next(iter(plan.removed(prep.graph).values()))) == drop  # zero norms go first
    pruned = apply_plan(prep.graph, plan)
    samples = {"x": RNG.standard_normal((16, 3, 8, 8)).astype(np.float32)}
    how = quantize.Quantization(samples=16)
    zq, pq = quantize.quantize(prep.model, samples, how), quantize.quantize(pruned, samples, how)
    feeds = {"x": samples["x"][:1]}
    assert runtime.max_rel_error(runtime.run_outputs(zq.model, feeds), runtime.run_outputs(pq.model, feeds)) < 1e-5


def test_a_node_the_quantizer_declines_stays_float_with_one_warning():
    w = numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    w2 = numpy_helper.from_array(RNG.standard_normal((8, 4)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Einsum", ["c", "w2"], ["y"], name="mix", equation="nchw,oc->nohw")]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 8, 8])], [w, w2]),
        opset_imports=[helper.make_opsetid("", 17)])
    q = quantize.quantize(model, {"x": RNG.standard_normal((4, 3, 8, 8)).astype(np.float32)})
    assert q.quantized and len(q.warnings) == 1 and "Einsum mix" in q.warnings[0]
    onnx.checker.check_model(q.model)
    einsum = next(n for n in q.model.graph.node if n.op_type == "Einsum")
    assert einsum.input[1] == "w2"  # its weight is still the float initializer
    assert runtime.run_outputs(q.model, {"x": np.ones((1, 3, 8, 8), np.float32)})["y"].shape == (1, 8, 8, 8)


def test_a_model_the_quantizer_cannot_take_comes_back_float_with_one_warning():
    model = tiny.conv_chain()
    bad = {"x": RNG.standard_normal((4, 3, 9, 9)).astype(np.float32)}  # the wrong spatial size
    q = quantize.quantize(model, bad)
    assert not q.quantized and q.model is model and q.label == "fp32"
    assert len(q.warnings) == 1 and "stays fp32" in q.warnings[0] and "\n" not in q.warnings[0]


def test_isolated_int8_layer_runs_like_the_float_one():
    prep = prepare(tiny.single_conv(cin=8, cout=16, hw=8))
    from onnxprune.profile import group_layers, isolate

    group = prep.graph.prunable_groups()[0]
    nodes = {n.name: n for n in prep.graph.model.graph.node}
    for layer in group_layers(prep.graph, group):
        f_model, feeds = isolate(prep.graph, nodes[layer.node], layer.mode, 12)
        q_model, q_feeds = isolate(prep.graph, nodes[layer.node], layer.mode, 12, precision="int8")
        assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(q_model) and q_model.opset_import[0].version >= 13
        f = ort.InferenceSession(f_model.SerializeToString()).run(None, feeds)[0]
        q = ort.InferenceSession(q_model.SerializeToString()).run(None, q_feeds)[0]
        assert f.shape == q.shape and np.abs(f - q).max() < 0.1 * np.abs(f).max() + 0.1


def test_int8_staircase_steps_are_found_and_cached_apart(tmp_path):
    prep = prepare(tiny.single_conv(cin=8, cout=64, hw=8))
    source, path = Int8Staircase(), str(tmp_path / "p.json")
    runs = {p: profile_model(prep.graph, source, Cache(path, source.key()), progress=False, precision=p)
            for p in ("fp32", "int8")}
    flt = runs["fp32"].groups[0].candidates
    assert all(w % 4 == 0 for w in flt) and {4, 8, 12, 20} <= set(flt)  # blocks of 4 in float
    assert runs["int8"].groups[0].candidates == [16, 32, 48, 64]  # blocks of 16 in int8
    again = profile_model(prep.graph, source, Cache(path, source.key()), progress=False, precision="int8")
    assert again.measured == 0 and again.groups[0].candidates == [16, 32, 48, 64]


def test_the_more_faithful_calibration_and_rounding_is_kept():
    prep = prepare(tiny.conv_chain(), calib_data=SAMPLES, precision="int8")
    chosen = prep.deployable(prep.model)
    samples, reference = prep.chooser

    def distortion(how: quantize.Quantization) -> float:
        q = quantize.quantize(prep.model, prep.split.fit, how).model
        return fidelity.distortion(reference, fidelity.outputs_on(q, samples), samples)

    got = {m: distortion(quantize.Quantization(m)) for m in quantize.CHOICES}
    method = min(got, key=got.get)
    rounded = distortion(quantize.Quantization(method, rounding="gptq"))
    assert chosen.quantized and chosen.method == method
    assert chosen.distortion == pytest.approx(min(got[method], rounded))
    assert chosen.rounding == ("gptq" if rounded < got[method] else "nearest")
    assert calib.count(prep.split.fit) < calib.count(SAMPLES)  # chosen on the fit part only


def test_a_failing_calibration_method_leaves_the_others(monkeypatch):
    """Percentile's histogram fails on some ranges (onnxruntime: 'too many bins'): MinMax is
    kept, no warning; only when every method fails the float model comes back, with one."""
    real = quantize._quantize

    def flaky(model, picked, how, failing=("percentile",)):
        if how.method in failing:
            return quantize.Quantized(model, [f"int8: {how.method} failed; it stays fp32"], False)
        return real(model, picked, how)

    monkeypatch.setattr(quantize, "_quantize", flaky)
    prep = prepare(tiny.conv_chain(), calib_data=SAMPLES, precision="int8")
    before = list(prep.warnings)
    chosen = prep.deployable(prep.model)
    assert chosen.quantized and chosen.method == "minmax" and prep.warnings == before
    monkeypatch.setattr(quantize, "_quantize", lambda m, p, h: flaky(m, p, h, quantize.CHOICES))
    chosen = prep.deployable(prep.model)
    assert not chosen.quantized and chosen.model is prep.model
    assert prep.warnings == [*before, "int8: minmax failed; it stays fp32"]


def test_cache_returns_the_model_quantized_before_and_stays_bounded(tmp_path, monkeypatch):
    """A model quantized on the same samples and settings is read back, not quantized again;
    other samples miss; an unreadable entry is quantized again; the folder keeps at most
    CACHED_MODELS files, the least recently used dropped."""
    model, cache = tiny.conv_chain(), str(tmp_path / "int8")
    first = quantize.quantize(model, SAMPLES, quantize.Quantization(samples=8), cache)
    made = []
    real = quantize._quantize
    monkeypatch.setattr(quantize, "_quantize", lambda *a: made.append(1) or real(*a))
    again = quantize.quantize(model, SAMPLES, quantize.Quantization(samples=8), cache)
    assert made == [] and again.quantized and again.label == "int8 minmax"
    assert again.model.SerializeToString() == first.model.SerializeToString()
    quantize.quantize(model, SAMPLES, quantize.Quantization(samples=6), cache)
    assert made == [1] and len(os.listdir(cache)) == 2
    for f in os.listdir(cache):
        (tmp_path / "int8" / f).write_bytes(b"not a model")
    assert quantize.quantize(model, SAMPLES, quantize.Quantization(samples=8), cache).quantized
    assert made == [1, 1]
    monkeypatch.setattr(quantize, "CACHED_MODELS", 2)
    for n in (3, 4, 5):
        quantize.quantize(model, SAMPLES, quantize.Quantization(samples=n), cache)
    assert len(os.listdir(cache)) == 2


def test_an_old_export_is_raised_to_the_qdq_opset_and_loads():
    """An opset-9 export with its initializers listed as graph inputs (as IR 3 exporters wrote)
    quantizes per channel: opset raised to 13, the weights constants, the model loads, keeps
    its feed, and its outputs stay close to the float model's."""
    model = tiny.old_style()
    x = RNG.standard_normal((12, 3, 8, 8)).astype(np.float32)
    q = quantize.quantize(model, {"x": x}, quantize.Quantization(samples=12))
    assert q.quantized and q.warnings == []
    assert [i.name for i in q.model.graph.input] == ["x"]
    assert next(o.version for o in q.model.opset_import if o.domain in ("", "ai.onnx")) >= quantize.QDQ_OPSET
    feeds = {"x": x[:1]}  # its batch is fixed at 1
    ours, flt = runtime.run_outputs(q.model, feeds)["y"], runtime.run_outputs(model, feeds)["y"]
    assert 0 < np.abs(ours - flt).max() < 0.1 * np.abs(flt).max()
    assert len(model.graph.input) > 1  # the user's model is left as it was


def test_a_qdq_model_dequantizes_to_the_float_model_it_stands_for():
    """Weights become the floats their DequantizeLinear computes, activation Q/DQ pairs become
    Clips to their representable range (a ReLU the quantizer folded into a range is kept), node
    names and precisions stay: the outputs are the QDQ model's without its rounding."""
    model = tiny.conv_chain()
    first = quantize.quantized_nodes(quantize.quantize(model, SAMPLES).model)[0]
    q = quantize.quantize(model, SAMPLES, quantize.Quantization(keep_float=(first,))).model
    before = q.SerializeToString()
    f, precisions = quantize.dequantized(q)
    assert q.SerializeToString() == before
    assert not set(quantize.QDQ_OPS) & _ops(f) and "Clip" in _ops(f)
    assert precisions == {first: "fp32", **{n: "int8" for n in quantize.quantized_nodes(q)}}
    assert quantize.weight_precision(f) == "fp32"
    want, rounded, got = (fidelity.outputs_on(m, SAMPLES)["y"] for m in (model, q, f))
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() < 0.05 * scale  # the int8 weights' error only
    assert np.abs(got - rounded).max() < 0.05 * scale
    no_relu = [n for n in q.graph.node if n.op_type == "Relu"]
    assert len(no_relu) < len([n for n in model.graph.node if n.op_type == "Relu"])  # folded by the quantizer
    assert (got >= 0).all() == (want >= 0).all()
