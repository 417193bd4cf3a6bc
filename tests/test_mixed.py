"""Precision per group (onnxprune.mixed): one calibration's ranges moved onto another choice of
float nodes, the items' measured costs and values, their keys beside the groups', and an int8
run that keeps a group float when the quantizer alone overshoots the target -- never less
faithful than it."""

import numpy as np
import onnx
import pytest
import tiny
from fakes import Int8Staircase

from onnxprune import api, fidelity, mixed, quantize
from onnxprune.job import Job
from onnxprune.pipeline import _floats_only, prune_to_target
from onnxprune.preparation import prepare
from onnxprune.profile import Cache, profile_model
from onnxprune.search import FLOAT, INT8, Choice, float_nodes, item_key, plan_for

RNG = np.random.default_rng(5)
SAMPLES = {"x": RNG.standard_normal((32, 3, 16, 16)).astype(np.float32)}


def test_ranges_move_onto_another_structure_of_the_same_model():
    """A few-sample quantization with a node kept float, given the all-sample model's ranges:
    the float node reads float weights, every other constant is the calibrated model's."""
    model = tiny.conv_chain()
    calibrated = quantize.quantize(model, SAMPLES).model
    first = quantize.quantized_nodes(calibrated)[0]
    structure = quantize.for_timing(model, SAMPLES, quantize.Quantization(keep_float=(first,)))
    moved = quantize.with_ranges(structure, calibrated)
    assert quantize.quantized_nodes(moved) == quantize.quantized_nodes(calibrated)[1:]
    theirs = {t.name: t for t in calibrated.graph.initializer}
    shared = [t for t in moved.graph.initializer if t.name in theirs and t.name.endswith("_scale")]
    assert shared and all(t == theirs[t.name] for t in shared)
    assert any(t != theirs.get(t.name) for t in structure.graph.initializer if t.name.endswith("_scale"))
    unmoved = quantize.with_ranges(quantize.for_timing(model, SAMPLES), calibrated)
    got, want = (fidelity.outputs_on(m, SAMPLES)["y"] for m in (unmoved, calibrated))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the model prepared once and quantized without pre-processing again: the same model
    once = quantize.for_timing(quantize.prepared(model), SAMPLES, quantize.Quantization(prepared=True))
    got = fidelity.outputs_on(quantize.with_ranges(once, calibrated), SAMPLES)["y"]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_items_are_groups_costed_in_both_precisions_and_cached(tmp_path, monkeypatch):
    prep = prepare(tiny.conv_chain(), calib_data=SAMPLES, precision="int8")
    source = Int8Staircase()
    cache = Cache(str(tmp_path / "p.json"), source.key())
    run = profile_model(prep.graph, source, cache, progress=False, precision="int8")
    choices, nodes = mixed.precision_choices(prep, run.groups, source, cache, str(tmp_path))
    assert len(nodes) == len(run.groups) and [c.group for c in choices] == [item_key(k) for k in range(len(nodes))]
    for c, prof, names in zip(choices, run.groups, nodes):
        assert set(names) == {lp.layer.node for lp in prof.layers}  # a producer and its reader
        assert c.widths == [INT8, FLOAT]
        assert c.cost[0] < c.cost[1]  # the fake's int8 kernels cost a quarter
        assert c.value[1] == 0.0 and c.value[0] <= 0.0
    assert any(c.value[0] < 0 for c in choices)  # some group buys fidelity back
    monkeypatch.setattr(mixed, "float_gain", None)  # a second run measures nothing
    again, _ = mixed.precision_choices(prep, run.groups, source, cache, str(tmp_path))
    assert [c.value[0] for c in again] == pytest.approx([c.value[0] for c in choices])


def test_item_keys_sit_beside_group_widths():
    widths = {0: 8, item_key(0): FLOAT, item_key(1): INT8, item_key(2): FLOAT}
    assert float_nodes([("a", "b"), ("c",), ("b", "d")], widths) == ("a", "b", "d")
    prep = prepare(tiny.conv_chain())
    plan = plan_for(prep.graph, widths)
    assert set(plan.keep) <= {0}  # an item is not a channel group


def test_an_int8_run_keeps_nodes_float_when_the_quantizer_overshoots(tmp_path):
    """Target below what int8 alone gives: the knapsack buys fidelity back with a float group,
    lands at the target, and is at least as faithful as the quantizer alone."""
    model = tiny.conv_chain()
    prep = prepare(model, calib_data=SAMPLES, precision="int8")
    source = Int8Staircase()
    base = source.model_ms(prep.model.SerializeToString())
    alone = prep.deployable(prep.model)
    fastest = base / source.model_ms(alone.model.SerializeToString())
    pair = tuple(quantize.quantized_nodes(alone.model)[:2])  # the cheapest group to keep float (the fake's)
    one = prep.deployable(prep.model, timing=True, keep_float=pair).model
    target = base / source.model_ms(one.SerializeToString()) / 1.02  # room for one group alone
    tr = prune_to_target(prep, source, Job.of(prep.original, speedup=target,
                                              cache_path=str(tmp_path / "p.json"),
                                              progress=False, recovery=()))
    quality = tr.result.quality
    assert tuple(quality.float_nodes) in prep.float_items  # one group kept float
    assert quality.precision.endswith("2 node(s) fp32")
    assert target <= tr.speedup <= target * 1.05 < fastest
    kept = {n.name for n in tr.result.model.graph.node
            if not any(i.endswith("DequantizeLinear_Output") for i in n.input)}
    assert set(quality.float_nodes) <= kept  # the written model computes them in float
    held = fidelity.fidelity(prep.held_reference(), alone.model, prep.split.held)
    assert quality.drop <= held.drop() + 1e-12
    judged = [p for p in tr.points if p["speedup"] >= target]  # every finished candidate that meets it
    assert len(judged) >= 2 and quality.drop == min(p["drop"] for p in judged)


def test_floats_only_holds_every_channel_group_at_full_width():
    choices = [Choice(0, [4, 8], [1.0, 2.0], [-0.5, 0.0]), Choice(item_key(0), [INT8, FLOAT], [1.0, 3.0], [-0.2, 0.0])]
    held = _floats_only(choices)
    assert held[0] == Choice(0, [8], [2.0], [0.0]) and held[1] is choices[1]


def test_the_precision_of_a_written_model_is_read_back(tmp_path):
    model = tiny.conv_chain()
    first = quantize.quantized_nodes(quantize.quantize(model, SAMPLES).model)[0]
    mixed_model = quantize.quantize(model, SAMPLES, quantize.Quantization(keep_float=(first,))).model
    assert quantize.weight_precision(model) == "fp32"
    assert quantize.weight_precision(quantize.quantize(model, SAMPLES).model) == "int8"
    assert quantize.weight_precision(mixed_model) == "int8, 1 of 3 node(s) fp32"
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(model, a)
    onnx.save(mixed_model, b)
    assert api.bench(api.BenchRequest(str(a), str(b), rounds=3)).precisions == (
        "fp32", "int8, 1 of 3 node(s) fp32")


def test_a_node_the_pre_processing_fused_is_an_item_under_its_fused_name(tmp_path):
    """A MatMul and its bias Add become one Gemm in the quantizer's pre-processing: the group
    is still an item, keeping float the node the quantizer knows."""
    model = tiny.mlp()
    x = model.graph.input[0]
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    samples = {x.name: RNG.standard_normal([16, *shape[1:]]).astype(np.float32)}
    prep = prepare(model, calib_data=samples, precision="int8")
    source = Int8Staircase()
    cache = Cache(str(tmp_path / "p.json"), source.key())
    run = profile_model(prep.graph, source, cache, progress=False, precision="int8")
    choices, nodes = mixed.precision_choices(prep, run.groups, source, cache, None)
    names = set(quantize.quantized_nodes(prep.deployable(prep.model).model))
    assert choices and all(set(n) <= names for n in nodes)
    assert any(name.endswith("Fusion") for n in nodes for name in n)
