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
