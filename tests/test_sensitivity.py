"""Measured value: consumer statistics, reconstruction selection, the sensitivity table."""

import numpy as np
from onnx import helper, numpy_helper

from onnxprune import calib, sensitivity
from onnxprune.linear import fold_error
from onnxprune.preparation import prepare


def _two_paths(dead_scale: float = 1e-3):
    """(Convs without ``kernel_shape``: optional in ONNX, normalisation writes it.)
       x -> convA (8) -> Relu -> convA2 (8->6, weights * dead_scale)  \\
       x -> convB (8) -> Relu -> convB2 (8->6)                          Add -> GAP -> Flatten
       -> Gemm (6->10) -> logits: path A barely reaches the output, path B carries it."""
    rng = np.random.default_rng(1)

    def w(name, shape, scale=1.0):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale / np.sqrt(np.prod(shape[1:])))
                                       .astype(np.float32), name)
    inits = [w("wa", (8, 3, 3, 3)), w("wa2", (6, 8, 1, 1), dead_scale), w("wb", (8, 3, 3, 3)),
             w("wb2", (6, 8, 1, 1)), w("wg", (10, 6), 4.0),
             numpy_helper.from_array(np.zeros(10, np.float32), "bg")]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="convA", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ar"], name="reluA"),
             helper.make_node("Conv", ["ar", "wa2"], ["a2"], name="convA2"),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="convB", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["b"], ["br"], name="reluB"),
             helper.make_node("Conv", ["br", "wb2"], ["b2"], name="convB2"),
             helper.make_node("Add", ["a2", "b2"], ["s"], name="add"),
             helper.make_node("GlobalAveragePool", ["s"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "two_paths", [helper.make_tensor_value_info("x", 1, ["N", 3, 12, 12])],
                              [helper.make_tensor_value_info("logits", 1, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def _samples(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, 3, 12, 12)).astype(np.float32)}


def _group(prep, source):
    return next(g for g in prep.graph.groups if g.sources[0].node == source)


def test_table_ranks_a_near_dead_path_below_the_signal_path():
    prep = prepare(_two_paths(), calib_data=_samples())
    a, b = _group(prep, "convA"), _group(prep, "convB")
    samples, synthetic = prep.value_samples()
    assert not synthetic
    table = sensitivity.sensitivity_table(prep.graph, {a.id: [4], b.id: [4]}, samples, prep.stats, refit=False)
    assert table.values[a.id][8] == 0.0 and table.values[b.id][8] == 0.0
    assert table.values[a.id][4] < 0.01 * table.values[b.id][4]
    assert table.values[b.id][4] > 0


def test_local_refit_lowers_the_measured_distortion():
    prep = prepare(_two_paths(dead_scale=1.0), calib_data=_samples(96))
    b = _group(prep, "convB")
    samples, _ = prep.value_samples()
    plain = sensitivity.sensitivity_table(prep.graph, {b.id: [4]}, samples, prep.stats, refit=False)
    refit = sensitivity.sensitivity_table(prep.graph, {b.id: [4]}, samples, prep.stats, refit=True)
    assert refit.values[b.id][4] < plain.values[b.id][4]


def test_probe_without_a_cut_reproduces_the_model():
    prep = prepare(_two_paths(), calib_data=_samples())
    samples, _ = prep.value_samples()
    ref = calib.Tap(prep.graph.model, []).collect(samples, ["logits"])["logits"]
    for source in ("convA", "convB"):
        probe = sensitivity.GroupProbe(prep.graph, _group(prep, source), prep.stats, samples)
        got = probe.outputs(probe.weights(np.zeros(0, np.int64), refit=False))["logits"]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_reconstruction_selection_never_loses_to_weight_norm():
    """At every width, the refit error of the channels the reconstruction order keeps is at
    most that of the channels the weight-norm order keeps (same layer, same statistics)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((64, 3, 12, 12)).astype(np.float32)
    prep_l1 = prepare(_two_paths(dead_scale=1.0), importance="l1", calib_data={"x": base})
    prep_rc = prepare(_two_paths(dead_scale=1.0), importance="reconstruction", calib_data={"x": base})
    stats = prep_rc.stats
    group = _group(prep_rc, "convB")
    consumer = sensitivity.group_consumers(prep_rc.graph, group, stats)[0]
    h, full = consumer.h, consumer.wfull()
    for width in range(1, group.width):
        errs = []
        for prep in (prep_rc, prep_l1):
            removed = np.sort(_group(prep, "convB").keep_order()[width:])
            keep = np.ones(len(h), bool)
            keep[consumer.features_of(removed)] = False
            sol = np.zeros_like(full)
            sol[:, keep] = np.linalg.lstsq(h[np.ix_(keep, keep)], h[keep] @ full.T, rcond=None)[0].T
            errs.append(fold_error(sol, h, h @ full.T, float(np.sum((full @ h) * full))))
        assert errs[0] <= errs[1] * (1 + 1e-6) + 1e-9, (width, errs)


def test_table_is_cached_on_disk(tmp_path):
    prep = prepare(_two_paths(), calib_data=_samples())
    samples, _ = prep.value_samples()
    b = _group(prep, "convB")
    first = sensitivity.sensitivity_table(prep.graph, {b.id: [4, 6]}, samples, prep.stats, cache_dir=str(tmp_path))
    again = sensitivity.sensitivity_table(prep.graph, {b.id: [4, 6]}, samples, prep.stats, cache_dir=str(tmp_path))
    assert not first.cached and again.cached and again.values == first.values


def test_synthetic_samples_look_like_normalised_images():
    model = _two_paths()
    x = calib.synthetic(model, 6)["x"]
    assert x.shape == (6, 3, 12, 12) and x.dtype == np.float32
    assert np.allclose(x.mean(axis=(2, 3)), 0, atol=1e-5) and np.allclose(x.std(axis=(2, 3)), 1, atol=1e-3)
    # smooth: neighbouring pixels correlate (a natural-image spectrum, not white noise)
    assert np.corrcoef(x[..., :-1].ravel(), x[..., 1:].ravel())[0, 1] > 0.3


def _fast_vs_built(model, samples, folder=None):
    """For every prunable group cut to half its prunable channels: the table's fast path (one
    probe session, zeroed consumer slices, no refit; with ``folder``, the probes load their
    weights from files there) and the pruned model the rewrite builds give the same distortion
    of the outputs."""
    from onnxprune.fidelity import distortion, outputs_on
    from onnxprune.rewrite import apply_plan
    from onnxprune.search import plan_for

    prep = prepare(model, calib_data=samples)
    g = prep.graph
    reference = outputs_on(g.model, samples)
    groups = g.prunable_groups()
    boundaries = sensitivity.Boundaries(g.model, samples, folder=folder, arrays=g.consts)
    assert groups
    for group in groups:
        width = group.width - max(1, len(group.prunable) // 2)
        probe = sensitivity.GroupProbe(g, group, prep.stats, samples, boundaries)
        fast = distortion(reference, probe.outputs(probe.weights(np.sort(group.keep_order()[width:]),
                                                                 refit=False)), samples)
        built = distortion(reference, outputs_on(apply_plan(g, plan_for(g, {group.id: width})), samples),
                           samples)
        assert fast > 0 or built == 0, group.name
        np.testing.assert_allclose(fast, built, rtol=1e-5, atol=1e-5, err_msg=group.name)
    return len(groups)


def test_fast_path_distortion_equals_the_built_model():
    assert _fast_vs_built(_two_paths(), _samples()) == 3  # convA, convB, the summed pair


def test_fast_path_distortion_equals_the_built_model_on_the_bundled_models(tmp_path, monkeypatch):
    from pathlib import Path

    import onnx

    from onnxprune import load

    monkeypatch.setattr(load, "OFFLOAD_BYTES", 1024)  # every weight but the smallest from files

    models = Path(__file__).resolve().parents[1] / "models"
    rng = np.random.default_rng(0)
    cnn = onnx.load(str(models / "mnist_cnn.onnx"))
    shape = [d.dim_value or 24 for d in cnn.graph.input[0].type.tensor_type.shape.dim][1:]
    assert _fast_vs_built(cnn, {cnn.graph.input[0].name: rng.random((24, *shape), np.float32)},
                          str(tmp_path)) >= 2
    assert any(f.suffix == ".bin" for f in tmp_path.iterdir())
    (tmp_path / "vit").mkdir()
    vit = onnx.load(str(models / "vit_mnist.onnx"))
    shape = [d.dim_value for d in vit.graph.input[0].type.tensor_type.shape.dim][1:]
    assert _fast_vs_built(vit, {vit.graph.input[0].name: rng.random((24, *shape), np.float32)},
                          str(tmp_path / "vit")) >= 2


def test_table_measures_less_of_a_costly_model_within_its_budget():
    """The plan trades widths first, then samples, for the budget; a cheap model keeps all."""
    prep = prepare(_two_paths(), calib_data=_samples())
    samples, _ = prep.value_samples()
    a, b = _group(prep, "convA"), _group(prep, "convB")
    widths = {a.id: list(range(1, 8)), b.id: list(range(1, 8))}
    full = sensitivity.plan_table(prep.graph, widths, samples, prep.stats)
    assert full.points == sensitivity.TABLE_POINTS and calib.count(full.samples) == calib.count(samples)
    tight = sensitivity.plan_table(prep.graph, widths, samples, prep.stats, budget=full.cost / 3)
    assert tight.points == sensitivity.MIN_POINTS
    assert sensitivity.MIN_SAMPLES <= calib.count(tight.samples) < calib.count(samples)
    assert tight.cost <= full.cost / 3
    table = sensitivity.sensitivity_table(prep.graph, widths, samples, prep.stats, budget=full.cost / 3)
    assert table.samples == calib.count(tight.samples) and sorted(table.values[a.id]) == list(range(1, 9))
