"""Measuring in Ray actors: the same edges and the same model as measuring here, and failures
that end in one clear error instead of a hang. One local Ray instance (2 CPUs) for the module;
deterministic latency sources (tests/fakes.py) travel to the actors by value."""

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import tiny

ray = pytest.importorskip("ray")

import fakes

import onnxprune
from onnxprune import OnnxPruneError, runtime
from onnxprune.inputs import random_feeds
from onnxprune.job import Job
from onnxprune.pipeline import prune_to_target
from onnxprune.preparation import prepare
from onnxprune.profile import Cache, profile_model
from onnxprune.remote import RaySource
from onnxprune.stats import param_count

ray.cloudpickle.register_pickle_by_value(fakes)


@pytest.fixture(scope="module")
def local_ray():
    package = os.path.dirname(onnxprune.__file__)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [package]})
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_profile_and_loop_match_local(local_ray, tmp_path):
    """Two actors sweep the groups and run the hardware loop: with deterministic timings the
    candidate edges, the chosen widths and the written model equal measuring here exactly,
    and the measurements come back into this process's cache."""
    prep = prepare(tiny.conv_chain())
    source = RaySource(fakes.Analytic(), timeout_s=120)
    try:
        assert source.workers == 2 and source.key().startswith("staircase|ort:cpu")
        cache = Cache(str(tmp_path / "c.json"), source.key())
        there = profile_model(prep.graph, source, cache, progress=False)
        tr_there = prune_to_target(prep, source, Job.of(prep.original, speedup=1.3, progress=False))
    finally:
        source.close()
    here = profile_model(prep.graph, fakes.Analytic(), Cache(None, "here"), progress=False)
    assert [p.candidates for p in there.groups] == [p.candidates for p in here.groups]
    assert [p.curve for p in there.groups] == [p.curve for p in here.groups]
    assert there.measured == here.measured > 0 and Cache(cache.path, source.key()).data
    tr_here = prune_to_target(prep, fakes.Analytic(), Job.of(prep.original, speedup=1.3,
                                                             progress=False))
    assert tr_there.widths == tr_here.widths and tr_here.final.speedup >= 1.3 * 0.93
    assert tr_there.result.model.SerializeToString() == tr_here.result.model.SerializeToString()


@pytest.mark.parametrize("fake, timeout_s, message", [
    (fakes.Sleepy, 3, "no layer timing within 3 s"),      # a stuck actor is killed
    (fakes.Crashing, 60, "Ray actor failed during layer"),  # restarted, retried, then reported
])
def test_stuck_or_dropped_actor_is_one_error(local_ray, fake, timeout_s, message):
    prep = prepare(tiny.single_conv())
    source = RaySource(fake(), actors=1, timeout_s=timeout_s)
    try:
        with pytest.raises(OnnxPruneError, match=message):
            profile_model(prep.graph, source, Cache(None, "x"), progress=False)
    finally:
        source.close()


def test_missing_resources_is_one_error(local_ray):
    with pytest.raises(OnnxPruneError, match="no Ray node offers"):
        RaySource(fakes.Staircase(), resources={"edge_box": 1})


def test_cli_ray_auto_writes_a_verified_model(tmp_path):
    """Real timings in an actor of a Ray instance the CLI starts; the written model has the
    usual contract (checker, same output shapes, fewer parameters)."""
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(tiny.conv_chain(), src)
    proc = subprocess.run(
        [sys.executable, "-m", "onnxprune", str(src), "--ratio", "0.5", "-o", str(out),
         "--ray", "auto", "--ray-actors", "1"],
        capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(onnxprune.__file__).parents[1])})
    assert proc.returncode == 0, proc.stderr
    assert "speedup (interleaved)" in proc.stdout
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    feeds = random_feeds(model)
    got, ref = runtime.run_outputs(model, feeds), runtime.run_outputs(tiny.conv_chain(), feeds)
    assert {k: v.shape for k, v in ref.items()} == {k: v.shape for k, v in got.items()}
    assert param_count(model) < param_count(tiny.conv_chain())
