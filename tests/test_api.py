"""The front door (onnxprune.api): one typed job, checked in one place before any work. A
:class:`onnxprune.job.Job` runs into a :class:`PruneRun` (preparation, latency source, result) by ratio
and to a speedup measured on a deterministic fake source; a frontier job's checks; bench's
timing, comparison and fidelity; profile's group selection."""

import numpy as np
import pytest
import tiny
from fakes import Analytic

from onnxprune import OnnxPruneError, runtime
from onnxprune.api import (
    BenchRequest,
    PruneRun,
    bench,
    profile_groups,
    run_prune,
)
from onnxprune.job import Job
from onnxprune.preparation import prepare
from onnxprune.results import PruneResult, TargetResult

SAMPLES = {"x": np.random.default_rng(0).standard_normal((24, 3, 16, 16)).astype(np.float32)}


@pytest.mark.parametrize("asked, message", [
    ({}, "say how much to prune: exactly one of --target-ms, --speedup, --ratio"),
    ({"speedup": 1.3, "ratio": 0.3}, "say how much to prune"),
    ({"ratio": 1.0}, r"--ratio must be in \[0, 1\), got 1.0"),
    ({"speedup": 0.0}, "--speedup must be positive, got 0.0"),
    ({"target_ms": -1.0}, "--target-ms must be positive, got -1.0"),
    ({"ratio": 0.3, "shapes": ("x:1xfoo",)}, "bad --shape 'x:1xfoo'"),
    ({"ratio": 0.3, "recovery": "bias,nope"}, r"--recover: unknown step\(s\) \['nope'\]"),
    ({"max_drop": 0.1}, "--max-drop needs calibration data"),
    ({"speedup": 1.3, "stages": 0}, "--stages must be at least 1, got 0"),
])
def test_what_was_asked_is_refused_before_the_model_is_read(asked, message):
    with pytest.raises(OnnxPruneError, match=message):
        run_prune(Job.of("no/such/model.onnx", **asked))


def test_outputs_are_checked_before_any_work(tmp_path):
    with pytest.raises(OnnxPruneError, match="does not exist"):
        run_prune(Job.of(tiny.conv_chain(), ratio=0.3, outputs=(str(tmp_path / "no" / "o.onnx"),)))


def test_pruning_nothing_reproduces_the_outputs():
    done = run_prune(Job.of(tiny.conv_chain(), ratio=0.0, recovery=()))
    out, ref = runtime.run_outputs(done.model, done.prep.feeds), done.prep.reference()
    assert out.keys() == ref.keys()
    for name, value in ref.items():
        np.testing.assert_allclose(out[name], value, rtol=1e-5, atol=1e-6)


def test_ratio_request_gives_a_proven_recovered_model():
    done = run_prune(Job.of(tiny.conv_chain(), ratio=0.5, calib=SAMPLES, recovery="bias"))
    assert isinstance(done, PruneRun) and isinstance(done.result, PruneResult)
    assert done.source is None and done.latency is None  # ratio mode times nothing unless asked
    result = done.result
    assert result.channels_removed > 0 and result.zero_filter_error < 1e-5
    assert done.model is result.model and result.params_after < result.params_before
    out, ref = runtime.run_outputs(done.model, done.prep.feeds), done.prep.reference()
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in ref.items()}
    steps = {s["step"] for s in result.quality.recovery.steps}
    assert steps - {"none"} == {"bias"}  # the --recover text, parsed
    assert result.quality.fidelity is not None and result.quality.data == "held-out"
    outcome = done.outcome()
    assert outcome.report["ratio"] == 0.5 and outcome.model is done.model


def test_ratio_request_with_latency_times_against_the_original():
    done = run_prune(Job.of(tiny.conv_chain(), ratio=0.5, recovery=(), latency=True,
                              config=Analytic()))
    assert isinstance(done.source, Analytic) and done.latency is None
    done.time()
    assert done.latency is not None and done.latency.speedup > 1.0


def test_speedup_request_meets_its_target_on_a_fake_source(tmp_path):
    done = run_prune(Job.of(tiny.conv_chain(), speedup=1.2, calib=SAMPLES, recovery=("bias",),
                              config=Analytic(), cache_path=str(tmp_path / "p.json")))
    tr = done.result
    assert isinstance(tr, TargetResult) and not done.already_met
    assert done.model is tr.result.model and tr.final.speedup >= 1.2 * 0.97
    assert tr.result.zero_filter_error < 1e-5 and tr.result.quality.fidelity is not None
    report = done.outcome().report
    assert report["target_speedup"] == pytest.approx(1.2) and report["final"]["speedup"] == tr.speedup


@pytest.mark.parametrize("speedups, message", [
    ("1.2,fast", "--speedups must be a comma list of numbers above 1, got '1.2,fast'"),
    ("1.0,1.2", "--speedups must be a comma list of numbers above 1"),
    ("", "--speedups must be a comma list of numbers above 1"),
])
def test_frontier_request_is_checked_before_the_model_is_read(speedups, message):
    with pytest.raises(OnnxPruneError, match=message):
        Job.of("no/such/model.onnx", speedups=speedups).validate_frontier()


def test_frontier_request_sorts_and_parses():
    job = Job.of(tiny.conv_chain(), speedups="1.5, 1.1,1.3",
                 recovery="bias,lsq").validate_frontier()
    assert job.goal.speedups == (1.1, 1.3, 1.5) and job.recovery.steps == ("bias", "lsq")


def test_bench_times_one_model_or_compares_two(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(tiny.conv_chain().SerializeToString())
    pruned = run_prune(Job.of(tiny.conv_chain(), ratio=0.5, recovery=())).model
    b.write_bytes(pruned.SerializeToString())
    with pytest.raises(OnnxPruneError, match="--rounds must be at least 3"):
        bench(BenchRequest(str(a), rounds=2))
    one = bench(BenchRequest(str(a), rounds=3, warmup=1, connect=Analytic))
    assert one.timing is not None and one.comparison is None
    two = bench(BenchRequest(str(a), str(b), rounds=3, warmup=1, data=SAMPLES, connect=Analytic))
    assert two.timing is None and two.comparison.speedup > 1.0
    assert two.samples == 24 and two.fid is not None and two.fid.cosine


def test_profile_groups_refuses_unknown_ids():
    prep = prepare(tiny.conv_chain())
    every = profile_groups(prep)
    assert every and [g.id for g in profile_groups(prep, (every[0].id,))] == [every[0].id]
    with pytest.raises(OnnxPruneError, match=r"--group \[999\]: not prunable group ids"):
        profile_groups(prep, (999,))


def test_floor_is_checked_before_the_model_is_read():
    with pytest.raises(OnnxPruneError, match=r"--floor must be in \(0, 1\], got 2.0"):
        run_prune(Job.of("no/such/model.onnx", speedup=1.3, floor=2.0))
    with pytest.raises(OnnxPruneError, match=r"--floor must be in \(0, 1\], got 0.0"):
        Job.of("no/such/model.onnx", speedups="1.2", floor=0.0).validate_frontier()
