"""Calibration, fidelity and recovery: bias compensation, least-squares refit, BN drift,
--max-drop, data-aware importance."""

import itertools

import numpy as np
import onnx
import pytest
import tiny
from onnx import helper, numpy_helper

from onnxprune import OnnxPruneError, calib, prune
from onnxprune.fidelity import fidelity, outputs_on
from onnxprune.inputs import graph_inputs, input_shapes
from onnxprune.pipeline import finish
from onnxprune.preparation import prepare
from onnxprune.recover import Cut, bias_compensation, consumers, lsq_refit
from onnxprune.rewrite import apply_plan, ratio_plan


def _samples(model, n=48, seed=0):
    rng = np.random.default_rng(seed)
    inp = graph_inputs(model)[0]
    shape = input_shapes(model)[inp.name]
    return {inp.name: (rng.standard_normal((n, *shape[1:])) + 0.5).astype(np.float32)}


def _linear_consumer():
    """x -> 1x1 conv (3->8) + Relu -> 1x1 conv (8->4) -> y: the consumer is linear."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             (("w1", (8, 3, 1, 1)), ("b1", (8,)), ("w2", (4, 8, 1, 1)), ("b2", (4,)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="c1"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2", "b2"], ["y"], name="c2")]
    graph = helper.make_graph(nodes, "lin", [helper.make_tensor_value_info("x", 1, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("y", 1, ["N", 4, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_bias_compensation_is_exact_for_the_mean():
    model = _linear_consumer()
    samples = _samples(model)
    prep = prepare(model)
    plan = ratio_plan(prep.graph, 0.5)
    pruned = apply_plan(prep.graph, plan)
    fixed = bias_compensation(prep.graph, pruned, samples, consumers(Cut.of(prep.graph, plan)))
    ref = outputs_on(prep.model, samples)["y"].mean((0, 2, 3))
    before = outputs_on(pruned, samples)["y"].mean((0, 2, 3))
    after = outputs_on(fixed, samples)["y"].mean((0, 2, 3))
    assert np.abs(before - ref).max() > 1e-2
    np.testing.assert_allclose(after, ref, rtol=1e-5, atol=1e-5)


def test_least_squares_refit_reduces_reconstruction_error():
    model = tiny.residual()
    samples = _samples(model, n=64)
    prep = prepare(model)
    plan = ratio_plan(prep.graph, 0.4)
    pruned = apply_plan(prep.graph, plan)
    split = calib.split(samples)
    fit, held = split.fit, split.held
    refit, layers = lsq_refit(prep.graph, pruned, fit, consumers(Cut.of(prep.graph, plan)))
    assert layers and all(layer["error_after"] <= layer["error_before"] for layer in layers)
    assert any(layer["error_after"] < 0.7 * layer["error_before"] for layer in layers)
    reference = outputs_on(prep.model, held)
    assert fidelity(reference, refit, held).rel_l2["y"] < fidelity(reference, pruned, held).rel_l2["y"]


def test_recovery_never_makes_fidelity_worse():
    model = tiny.depthwise_se()
    prep = prepare(model, calib_data=_samples(model, n=64))
    none = finish(prep, ratio_plan(prep.graph, 0.4), steps=())
    full = finish(prep, ratio_plan(prep.graph, 0.4))
    steps = full.quality.recovery.steps
    assert [s["step"] for s in steps] == ["none", "bias", "lsq", "bn"]
    assert min(full.quality.fidelity.cosine.values()) >= min(none.quality.fidelity.cosine.values())
    kept = [s for s in steps if s["kept"]]
    assert all(min(b["cosine"].values()) >= min(a["cosine"].values()) - 1e-12 for a, b in itertools.pairwise(kept))


def test_max_drop_is_honoured():
    model = tiny.residual()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 16, 16)) * rng.uniform(0.2, 3.0, (64, 1, 1, 1))
    feeds = [{"x": v} for v in np.split(x.astype(np.float32), 4)]
    with pytest.raises(OnnxPruneError, match="exceeds --max-drop"):
        prune(model, ratio=0.8, calib=feeds, max_drop=0.1, recovery=())
    out = prune(model, ratio=0.2, calib=feeds, max_drop=1.0)
    assert out.report["fidelity"]["drop"] <= 1.0
    assert out.report["fidelity"]["agreement"] is not None


def test_evaluate_callable_is_used():
    model = tiny.residual()
    calls = []

    def evaluate(path):
        calls.append(path)
        return float(onnx.load(path).graph.node[0].op_type == "Conv")

    out = prune(model, ratio=0.3, evaluate=evaluate)
    assert len(calls) == 2 and out.report["fidelity"]["metric"] == 1.0


def test_activation_importance_ranks_a_dead_channel_last():
    model = _linear_consumer()
    w1 = next(i for i in model.graph.initializer if i.name == "b1")
    arr = numpy_helper.to_array(w1).copy()
    arr[3] = -1e3  # channel 3 is always zero after the Relu
    w1.CopyFrom(numpy_helper.from_array(arr, "b1"))
    prep = prepare(model, importance="activation", calib_data=_samples(model))
    group = next(g for g in prep.graph.groups if g.name == "c1")
    assert int(np.argmin(group.importance)) == 3


@pytest.mark.parametrize("arrays,message", [
    ({"x": np.zeros((4, 3, 6), np.float32)}, "rank"),
    ({"x": np.zeros((4, 3, 6, 6), np.float32), "y": np.zeros((3, 1), np.float32)}, "no calibration arrays"),
])
def test_bad_calibration_data(tmp_path, arrays, message):
    path = tmp_path / "c.npz"
    np.savez(path, **arrays)
    model = _linear_consumer()
    if "y" in arrays:
        arrays = {"a": arrays["x"], "b": arrays["y"]}
        np.savez(path, **arrays)
    with pytest.raises(OnnxPruneError, match=message):
        calib.load_npz(str(path), model)


def test_bn_refit_is_each_bns_least_squares_fit_in_graph_order():
    """After the bn step, every BN's output is the per-channel least-squares fit of the
    original BN's output (regressing the original on it gives scale 1, offset 0), the later
    BNs too: each is fitted on the model with the earlier ones already refitted. And the
    squared error at each BN output never grows."""
    from onnxprune.recover import _paired_affine, bn_recalibration

    prep = prepare(tiny.residual(), calib_data=_samples(tiny.residual(), 64))
    plan = ratio_plan(prep.graph, 0.3)
    cut = Cut.of(prep.graph, plan)
    pruned = apply_plan(prep.graph, plan)
    fixed = bn_recalibration(cut, pruned, prep.split.fit)
    bns = [n for n in fixed.graph.node if n.op_type == "BatchNormalization"]
    assert len(bns) >= 4
    changed = 0
    for node in bns:
        y, keep = node.output[0], cut.mask(node.output[0])
        a, b = _paired_affine(prep.graph.model, fixed, y, prep.split.fit, keep)
        np.testing.assert_allclose(a, 1.0, atol=1e-3)
        np.testing.assert_allclose(b, 0.0, atol=1e-3)
        ref = calib.Tap(prep.graph.model, [y], prefix=True).collect(prep.split.fit, [y])[y][:, keep]
        errors = [float(((ref - calib.Tap(m, [y], prefix=True).collect(prep.split.fit, [y])[y]) ** 2).mean())
                  for m in (pruned, fixed)]
        assert errors[1] <= errors[0] + 1e-9
        changed += errors[1] < errors[0] * 0.999
    assert changed >= 1
