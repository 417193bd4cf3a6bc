"""The search drivers (onnxprune.pipeline), called directly on one preparation: by ratio, to a
speedup and at several targets on a deterministic fake latency source."""

import numpy as np
import pytest
import tiny
from fakes import Analytic

from onnxprune import runtime
from onnxprune.job import Job
from onnxprune.pipeline import prune_ratio, prune_to_target, search_frontier
from onnxprune.preparation import prepare

SAMPLES = {"x": np.random.default_rng(1).standard_normal((24, 3, 16, 16)).astype(np.float32)}


def test_ratio_zero_reproduces_the_outputs_and_removes_nothing():
    prep = prepare(tiny.conv_chain())
    result = prune_ratio(prep, Job.of(prep.original, ratio=0.0, recovery=()))
    assert result.channels_removed == 0
    out, ref = runtime.run_outputs(result.model, prep.feeds), prep.reference()
    for name, value in ref.items():
        np.testing.assert_allclose(out[name], value, rtol=1e-5, atol=1e-6)


def test_more_ratio_removes_more_and_keeps_every_output_shape():
    prep = prepare(tiny.conv_chain(), calib_data=SAMPLES)
    small = prune_ratio(prep, Job.of(prep.original, ratio=0.25, recovery=()))
    large = prune_ratio(prep, Job.of(prep.original, ratio=0.5, recovery=()))
    assert 0 < small.channels_removed < large.channels_removed
    ref = prep.reference()
    for result in (small, large):
        out = runtime.run_outputs(result.model, prep.feeds)
        assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in ref.items()}
        assert result.zero_filter_error < 1e-5


def test_target_and_frontier_on_a_fake_source(tmp_path):
    prep = prepare(tiny.conv_chain(), calib_data=SAMPLES)
    cache = str(tmp_path / "p.json")
    tr = prune_to_target(prep, Analytic(), Job.of(prep.original, speedup=1.2, cache_path=cache,
                                                  progress=False, recovery=()))
    assert tr.final.speedup >= 1.2 * 0.97 and tr.result.zero_filter_error < 1e-5
    points = search_frontier(prep, Analytic(), Job.of(prep.original, speedups=[1.1, 1.3],
                                                      cache_path=cache, progress=False,
                                                      recovery=()))
    assert [p.target_speedup for p in points] == pytest.approx([1.1, 1.3])
    assert all(p.final.speedup >= p.target_speedup * 0.97 for p in points)


def test_int8_run_times_judges_and_writes_the_quantized_model(tmp_path):
    """--precision int8: the profile and every candidate are int8 (the fake's int8 staircase
    blocks by 16), the speedup is against the float original, the written model is QDQ with
    the held-out fidelity measured on it, and the runtime quantizer's rows stand beside it."""
    from fakes import Int8Staircase

    samples = {"x": np.random.default_rng(2).standard_normal((24, 8, 8, 8)).astype(np.float32)}
    prep = prepare(tiny.single_conv(cin=8, cout=64, hw=8), calib_data=samples, precision="int8")
    source = Int8Staircase()
    base = source.model_ms(prep.model.SerializeToString())
    tr = prune_to_target(prep, source, Job.of(prep.original, speedup=1.2 * base / source.model_ms(
        prep.deployable(prep.model, timing=True).model.SerializeToString()), cache_path=str(tmp_path / "p.json"),
        progress=False, recovery=()))
    model = tr.result.model
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert tr.result.quality.precision.startswith("int8")
    assert tr.final.speedup == pytest.approx(base / source.model_ms(model.SerializeToString()), rel=1e-6)
    assert tr.final.speedup >= tr.target_speedup * 0.97
    assert tr.result.zero_filter_error < 1e-5
    assert all(w % 16 == 0 for w in tr.widths.values())  # right edges of the int8 steps
    assert [r["method"] for r in tr.quantizer] == ["minmax", "percentile"]
    assert all(r["speedup"] == pytest.approx(tr.quantizer[0]["speedup"]) for r in tr.quantizer)
    assert 0.9 < tr.result.quality.fidelity.cosine["y"] <= 1 + 1e-6


def test_auto_keeps_the_more_faithful_of_the_precisions_that_meet_the_target(tmp_path):
    from fakes import Int8Staircase

    samples = {"x": np.random.default_rng(2).standard_normal((24, 8, 8, 8)).astype(np.float32)}
    runs = {}
    for precision in ("fp32", "int8", "auto"):
        prep = prepare(tiny.single_conv(cin=8, cout=64, hw=8), calib_data=samples, precision=precision)
        runs[precision] = prune_to_target(prep, Int8Staircase(), Job.of(
            prep.original, speedup=1.3, cache_path=str(tmp_path / "p.json"), progress=False, recovery=()))
    assert all(r.speedup >= 1.3 for r in runs.values())
    drops = {p: runs[p].result.quality.drop for p in ("fp32", "int8")}
    best = min(drops, key=drops.get)
    assert drops["fp32"] != drops["int8"]
    assert runs["auto"].result.quality.drop == pytest.approx(drops[best])
    assert runs["auto"].result.quality.precision.startswith(best)
