"""Every failure is a refusal (one line naming the node or tensor) or a frozen group; NaN
weights are refused, infinities in constants are not; numpy's warnings never reach stderr."""

import os
import subprocess
import sys
import warnings

import fakes
import numpy as np
import onnx
import pytest
import tiny
from onnx import TensorProto, helper, numpy_helper
from test_guard import refusal

from onnxprune import OnnxPruneError, pipeline, preparation, prune, recover, runtime
from onnxprune.cli import main
from onnxprune.inputs import random_feeds
from onnxprune.job import Job
from onnxprune.load import normalise
from onnxprune.ops.conv import Conv


def _conv(model: onnx.ModelProto, name: str = "conv_1") -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def test_empty_kernel_shape_is_refused_naming_the_node(tmp_path, capsys):
    model = tiny.conv_chain()
    kernel = next(a for a in _conv(model).attribute if a.name == "kernel_shape")
    del kernel.ints[:]
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    line = refusal(capsys, [str(path), "-o", str(tmp_path / "o.onnx"), "--ratio", "0.3"])
    assert "conv_1" in line and "kernel_shape" in line
    with pytest.raises(OnnxPruneError, match=r"node 'conv_1' \(Conv\): kernel_shape \[\] does not match"):
        normalise(model, verify=False)  # the spec's own check, without onnxruntime's


@pytest.mark.parametrize("case", ["rank-2 weight", "undefined attribute", "group 0"])
def test_malformed_nodes_are_refused_by_the_specs(case):
    model = tiny.conv_chain()
    node = _conv(model)
    if case == "rank-2 weight":
        for a in list(node.attribute):
            if a.name == "kernel_shape":
                node.attribute.remove(a)
        w = next(i for i in model.graph.initializer if i.name == node.input[1])
        flat = numpy_helper.to_array(w).reshape(w.dims[0], -1)
        w.CopyFrom(numpy_helper.from_array(flat, w.name))
        match = r"node 'conv_1' \(Conv\): weight 'conv_1.weight' has shape \[\d+, \d+\]"
    elif case == "undefined attribute":
        node.attribute.append(onnx.AttributeProto(name="strange"))
        match = r"node 'conv_1' \(Conv\): attribute 'strange' has an unknown type"
    else:
        next(a for a in node.attribute if a.name == "group").i = 0
        match = r"node 'conv_1' \(Conv\): group must be a positive integer"
    with pytest.raises(OnnxPruneError, match=match):
        normalise(model, verify=False)


def test_a_nan_initializer_is_refused_by_name(tmp_path, capsys):
    model = tiny.conv_chain()
    w = next(i for i in model.graph.initializer if i.name == _conv(model).input[1])
    value = numpy_helper.to_array(w).copy()
    value.flat[3] = np.nan
    w.CopyFrom(numpy_helper.from_array(value, w.name))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    line = refusal(capsys, [str(path), "-o", str(tmp_path / "o.onnx"), "--ratio", "0.3"])
    assert f"initializer {w.name!r} holds NaN (1 of {value.size} values)" in line


def _masked_attention() -> onnx.ModelProto:
    """x [1, 6, 16] -> q, k, v projections -> causal scores (an additive -inf mask constant)
    -> Softmax -> attention -> output projection -> y [1, 6, 16]."""
    rng = np.random.default_rng(3)
    def w(name):
        return numpy_helper.from_array((rng.standard_normal((16, 16)) / 4).astype(np.float32), name)
    mask = np.triu(np.full((6, 6), -np.inf, np.float32), 1)[None]
    inits = [w("wq"), w("wk"), w("wv"), w("wo"), numpy_helper.from_array(mask, "mask")]
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="s"),
        helper.make_node("Add", ["s", "mask"], ["sm"], name="masked"),
        helper.make_node("Softmax", ["sm"], ["a"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["a", "v"], ["h"], name="attend"),
        helper.make_node("MatMul", ["h", "wo"], ["y"], name="o"),
    ]
    graph = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_an_infinite_attention_mask_is_accepted():
    model = _masked_attention()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning either
        out = prune(model, ratio=0.5)
    assert out.report["channels_removed"] > 0 and out.report["zero_filter_error"] < 1e-5
    onnx.checker.check_model(out.model, full_check=True)
    y = runtime.run_outputs(out.model, random_feeds(model))["y"]
    assert y.shape == (1, 6, 16) and np.isfinite(y).all()


def test_non_finite_outputs_compare_by_position():
    a = {"y": np.array([1.0, -np.inf, np.nan, 2.0], np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.max_rel_error(a, {"y": a["y"] * np.float32(1.0)}) == 0.0
        assert runtime.max_rel_error(a, {"y": np.array([1.0, np.inf, np.nan, 2.0], np.float32)}) == np.inf
        assert runtime.max_rel_error(a, {"y": np.array([1.0, -np.inf, 0.0, 2.0], np.float32)}) == np.inf
        assert runtime.max_rel_error(a, {"y": np.array([1.5, -np.inf, np.nan, 2.0], np.float32)}) == 0.25
        assert runtime.max_rel_error(a, {}) == np.inf


def test_no_numpy_warning_reaches_stderr(tmp_path):
    """Outputs with -inf (Log of a Relu) make inf - inf in every comparison of the run."""
    model = tiny.conv_chain()
    model.graph.node.append(helper.make_node("Relu", ["y"], ["relu_y"], name="relu"))
    model.graph.node.append(helper.make_node("Log", ["relu_y"], ["log_y"], name="log"))
    model.graph.output[0].name = "log_y"
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    proc = subprocess.run([sys.executable, "-m", "onnxprune", str(path), "-o", str(tmp_path / "o.onnx"),
                           "--ratio", "0.3", "--no-latency"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if not line.startswith("onnxprune: ")] == []
    assert "Warning" not in proc.stderr
    assert np.isneginf(runtime.run_outputs(onnx.load(tmp_path / "o.onnx"),
                                   random_feeds(model))["log_y"]).any()


def _strides_edit(monkeypatch):
    """conv_1's rule also writes a one-element ``strides`` when its input loses channels: the
    pruned model fails the onnx checker (a broken rule)."""
    original = Conv.rule

    def broken(self, g, node):
        original(self, g, node)
        if node.name == "conv_1":
            g.edit(lambda r: None if r.mask(r.node.input[0]).all() else r.set_attr("strides", [1]))
    monkeypatch.setattr(Conv, "rule", broken)


def _frozen_for_checker(frozen) -> None:
    assert len(frozen) == 1 and "pruned model fails onnx.checker" in frozen[0]["reason"]


def test_a_rule_emitting_an_invalid_model_is_frozen_with_ratio(monkeypatch, tmp_path, capsys):
    _strides_edit(monkeypatch)
    path, out, report = tmp_path / "m.onnx", tmp_path / "o.onnx", tmp_path / "r.json"
    onnx.save(tiny.conv_chain(), path)
    main([str(path), "-o", str(out), "--ratio", "0.3", "--no-latency", "--report", str(report)])
    import json
    data = json.loads(report.read_text())
    _frozen_for_checker(data["quality"]["frozen_groups"])
    assert data["quality"]["params_after"] < data["quality"]["params_before"]
    onnx.checker.check_model(onnx.load(out), full_check=True)
    assert "left unpruned" in capsys.readouterr().out


def test_a_rule_emitting_an_invalid_model_is_frozen_with_a_target(monkeypatch):
    """The search never builds and times a candidate carrying the broken rewrite."""
    _strides_edit(monkeypatch)
    out = prune(tiny.conv_chain(), speedup=1.2, config=fakes.Analytic())
    _frozen_for_checker(out.report["quality"]["frozen_groups"])
    onnx.checker.check_model(out.model, full_check=True)
    assert out.report["final"]["params_after"] < out.report["final"]["params_before"]


def test_recovery_that_breaks_the_model_is_dropped(monkeypatch):
    """Recovery writes an invalid attribute: the proven model goes on, with the reason."""
    original = recover.bias_compensation

    def broken(g, pruned, samples, cons):
        model = original(g, pruned, samples, cons)
        _conv(model).attribute.append(helper.make_attribute("strides", [1]))
        return model
    monkeypatch.setattr(recover, "bias_compensation", broken)
    samples = {"x": np.random.default_rng(0).standard_normal((24, 3, 16, 16)).astype(np.float32)}
    prep = preparation.prepare(tiny.conv_chain(), calib_data=samples)
    result = pipeline.prune_ratio(prep, Job.of(prep.original, ratio=0.3))
    onnx.checker.check_model(result.model, full_check=True)
    step = result.quality.recovery.steps[0]
    assert step["kept"] is False and "strides" in step["why"]
    assert result.channels_removed > 0 and result.quality.fidelity is not None
