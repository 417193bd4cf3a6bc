"""Staircase profiling: steps found on the real runtime, the sweep's economies (aligned widths,
flat regions, smooth slopes, batches), caches that lose nothing, device-like sources.

Timing assertions are coarse properties that hold on any noisy machine: the jumps checked are
20-70% on ORT's blocked CPU kernels (blocks of 8 or 16 channels), the tolerance is 5%. Fake
sources (formulas) make everything else exact and fast."""

import json
import os
import subprocess
import sys
import time

import fakes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tiny
from onnx import numpy_helper

from onnxprune import OnnxPruneError, backends, bench, cachefile, runtimes
from onnxprune.backends import Local
from onnxprune.job import Job
from onnxprune.pipeline import prune_to_target
from onnxprune.preparation import prepare
from onnxprune.profile import Cache, coarse_grid, find_steps, profile_model, steps_and_candidates


def _batched(fn, calls):
    def measure(widths):
        calls.extend(widths)
        return [fn(w) for w in widths]
    return measure


def test_step_finder_on_a_synthetic_staircase():
    calls = []
    points = find_steps(_batched(lambda w: 1.0 + (w - 1) // 16, calls), 128, align=4)
    _, cands = steps_and_candidates(points)
    assert cands == [16, 32, 48, 64, 80, 96, 112, 128]
    assert all(w % 4 == 0 for w in calls) and len(calls) == len(set(calls)) < 50


def test_step_finder_stops_on_flat_regions_and_smooth_slopes():
    flat, slope = [], []
    find_steps(_batched(lambda w: 0.05, flat), 256, align=4)
    assert len(flat) <= 6  # the scout grid only: a launch-bound staircase
    find_steps(_batched(lambda w: 0.1 + 0.01 * w, slope), 960, align=4)
    assert len(slope) <= 2 * len(coarse_grid(960, 1, 4))  # one look inside each interval, no more
    jump = []  # one step hidden between two grid points is still located to one aligned step
    points = find_steps(_batched(lambda w: 1.0 + (w > 100), jump), 256, align=4)
    assert steps_and_candidates(points)[1] == [100, 256]


def test_candidates_skip_slower_misaligned_widths():
    curve = {44: 1.0, 46: 1.4, 47: 1.5, 48: 1.0, 64: 1.3}
    steps, cands = steps_and_candidates(curve)
    assert cands == [48, 64] and steps[0][:2] == (44, 48)


def test_coarse_grid_is_aligned():
    assert coarse_grid(128, align=4) == [4, *range(8, 129, 8)]
    assert coarse_grid(1280, align=4)[:3] == [4, 80, 160]
    assert coarse_grid(128, min_width=30, align=4)[:2] == [32, 40]
    assert coarse_grid(10) == list(range(1, 11))
    assert coarse_grid(99, align=4)[-2:] == [96, 99]  # the full width, aligned or not


def _single_conv_profile(path):
    prep = prepare(tiny.single_conv())
    config = runtimes.RuntimeConfig(threads=1)
    return prep, config, profile_model(prep.graph, config, Cache(path, Local(config).key()), progress=False)


def test_single_conv_staircase_has_edges_at_multiples_of_16(tmp_path):
    """Real timings: a busy machine can blur one sweep, so up to three fresh sweeps are taken
    and the properties must hold for one of them (every assertion is kept)."""
    for attempt in range(3):
        path = str(tmp_path / f"cache{attempt}.json")
        prep, config, run = _single_conv_profile(path)
        (prof,) = run.groups
        producer = next(lp for lp in prof.layers if lp.layer.mode == "out").points
        aligned = [c for c in prof.candidates if c % 8 == 0]
        jumps = all(k in producer for k in (16, 20, 32, 36)) and producer[20] > 1.15 * producer[16] \
            and producer[36] > 1.1 * producer[32]  # a blurred sweep may not visit both sides
        if {16, 32, 48, 64} <= set(prof.candidates) and jumps \
                and len(aligned) >= 0.75 * len(prof.candidates):
            break
    assert prof.width == 128 and {lp.layer.mode for lp in prof.layers} == {"out", "in"}
    assert {16, 32, 48, 64} <= set(prof.candidates)
    assert len(aligned) >= 0.75 * len(prof.candidates)
    assert producer[20] > 1.15 * producer[16] and producer[36] > 1.1 * producer[32]
    assert run.measured > 0 and all(w % 4 == 0 or w == 128 for w in prof.curve)

    again = profile_model(prep.graph, config, Cache(path, Local(config).key()), progress=False)
    assert again.measured == 0 and again.groups[0].candidates == prof.candidates


def test_cache_key_separates_threads_and_runtimes():
    configs = [runtimes.RuntimeConfig(threads=1), runtimes.RuntimeConfig(threads=2),
               runtimes.RuntimeConfig(runtime="openvino"), runtimes.RuntimeConfig(provider="cuda")]
    keys = [config.key() for config in configs]
    assert len(set(keys)) == 4 and keys[0] == "ort:cpu[]/t1/all"
    assert "cudnn_conv_algo_search=EXHAUSTIVE" in keys[3]  # the chosen search is recorded
    trt = runtimes.RuntimeConfig(provider="tensorrt", fp16=True, device="1").options()
    assert trt["trt_fp16_enable"] == "True" and trt["device_id"] == "1"
    assert trt["trt_engine_cache_enable"] == trt["trt_timing_cache_enable"] == "True"
    assert Local(configs[0]).key().endswith(f"|ort{ort.__version__}")
    cuda, cpu = Local(configs[3]), Local(configs[0])
    sweep = cuda.sweeper()  # device providers sweep on the cheap algorithm search
    assert "cudnn_conv_algo_search=HEURISTIC" in sweep.key() and sweep.builds is cuda.builds
    assert cpu.sweeper() is cpu
    chosen = Local(runtimes.RuntimeConfig(provider="cuda", provider_options={"cudnn_conv_algo_search": "DEFAULT"}))
    assert chosen.sweeper() is chosen  # the user's choice is kept for sweeps too


def test_old_cache_entries_are_not_misread(tmp_path):
    """Keys carry the cache version: a file written by an older version is ignored, not read
    as measurements of today's sweep."""
    path = tmp_path / "p.json"
    old = Cache(None, "src")
    old.prefix = "src|"  # the unversioned key of the previous format
    path.write_text(json.dumps({old.key("sig"): {"4": [9.9, 3]}}))
    assert Cache(str(path), "src").get("sig", 4) is None


# -- caches that lose nothing ------------------------------------------------------------------

_KILLED = """
import os, sys
sys.path[:0] = {paths!r}
import fakes, tiny
from onnxprune.preparation import prepare
from onnxprune.profile import Cache, profile_model

class Dying(fakes.Staircase):
    calls = 0
    def layer(self, model, feeds, count):
        Dying.calls += 1
        if Dying.calls > {limit}:
            os._exit(3)  # killed: no cleanup, no flush
        return super().layer(model, feeds, count)

source = Dying()
prep = prepare(tiny.{model}())
profile_model(prep.graph, source, Cache({path!r}, source.key()), progress=False)
"""


def _per_group(model, path):
    """Measurements per group of a full profile (groups in the profiler's order)."""
    prep = prepare(getattr(tiny, model)())
    source = fakes.Staircase()
    cache = Cache(path, source.key())
    counts = []
    for group in prep.graph.prunable_groups():
        counts.append(profile_model(prep.graph, source, cache, [group], progress=False).measured)
    return prep, counts


def test_killed_run_keeps_finished_groups_and_the_next_run_measures_the_rest(tmp_path):
    prep, counts = _per_group("residual", None)
    k = 2  # killed inside group k + 1, after its first measurement
    assert len(counts) > k and counts[k] >= 2
    path = str(tmp_path / "p.json")
    script = _KILLED.format(paths=[os.path.join(os.getcwd(), p) for p in ("", "tests", "models")],
                            limit=sum(counts[:k]) + 1, model="residual", path=path)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 3, proc.stderr
    with open(path) as f:
        data = json.load(f)  # valid JSON
    taken = sum(n for v in data.values() for d, (_, n) in v.items() if d != "0")  # "0": a sweep
    assert taken == sum(counts[:k])  # every measurement of the k groups, none of the one killed
    source = fakes.Staircase()
    resumed = profile_model(prep.graph, source, Cache(path, source.key()), progress=False)
    assert resumed.measured == sum(counts[k:])


def test_concurrent_writers_keep_both_sets(tmp_path):
    path = str(tmp_path / "c.json")
    code = ("import sys; sys.path.insert(0, {root!r}); from onnxprune import cachefile\n"
            "for i in range(150): cachefile.update({path!r}, {{'{tag}%d' % i: [i, 1]}})\n")
    procs = [subprocess.Popen([sys.executable, "-c", code.format(root=os.getcwd(), path=path, tag=t)])
             for t in "ab"]
    assert [p.wait() for p in procs] == [0, 0]
    data = cachefile.read(path)
    assert len(data) == 300 and data["a149"] == [149, 1] and data["b0"] == [0, 1]


def test_two_profiles_sharing_a_cache_keep_both(tmp_path):
    """Two runs (different models) write one cache; each finds all its measurements after."""
    path = str(tmp_path / "p.json")
    source = fakes.Staircase()
    preps = [prepare(tiny.residual()), prepare(tiny.conv_chain())]
    first, second = Cache(path, source.key()), Cache(path, source.key())  # both opened empty
    for prep, cache in zip(preps, (first, second)):
        assert profile_model(prep.graph, source, cache, progress=False).measured > 0
    for prep in preps:
        assert profile_model(prep.graph, source, Cache(path, source.key()), progress=False).measured == 0
    (tmp_path / "bad.json").write_text('{"trunc')  # a damaged file reads as empty, then is replaced
    assert cachefile.read(str(tmp_path / "bad.json")) == {}
    assert cachefile.update(str(tmp_path / "bad.json"), {"k": 1}) == {"k": 1}


# -- device-like sources ---------------------------------------------------------------------


class Device(backends.Local):
    """A launch-bound device: every layer costs ``base`` ms plus a little per 64 channels at
    the deployment setting (the sweep setting is 20% slower), every session build costs
    ``build_s``; whole models take the same flat time. Counts builds per setting."""

    build_s = 0.002

    def __init__(self, cheap: bool = False, log: list | None = None):
        super().__init__(runtimes.RuntimeConfig(provider="cpu"))
        self.cheap, self.log = cheap, log if log is not None else []

    def key(self) -> str:
        return f"device|{'sweep' if self.cheap else 'deploy'}"

    def sweeper(self):
        return Device(True, self.log)

    def layers(self, items, count=1):
        time.sleep(self.build_s * len(items) * count)
        self.log.extend([self.cheap] * len(items) * count)
        out = []
        for model, _ in items:
            weight = numpy_helper.to_array(onnx.load_from_string(model).graph.initializer[0])
            ms = 0.05 + 0.002 * sum(-(-d // 64) for d in weight.shape[:2])
            out.append(ms * (1.2 if self.cheap else 1.0))
        return out

    def measure(self, model, feeds, rounds=30, warmup=5):
        return bench.Timing.of([1.0] * rounds)

    def compare(self, a, b, feeds, rounds=30, warmup=5):
        one = bench.Timing.of([1.0])
        return bench.Comparison(one, one, 1.0, 1.0, 1.0, rounds)


def test_device_source_sweeps_cheaply_and_confirms_on_the_deployment_setting():
    prep = prepare(tiny.residual())
    log: list[bool] = []
    start = time.perf_counter()
    run = profile_model(prep.graph, Device(log=log), Cache(None, "x"), progress=False)
    assert time.perf_counter() - start < 10
    groups = prep.graph.prunable_groups()
    layers = sum(len(p.layers) for p in run.groups)
    assert log.count(True) <= 6 * layers  # flat staircases: the scout grid only
    assert 0 < log.count(False) <= 4 * layers  # the deployment setting confirms the candidates
    assert len(run.groups) == len(groups)
    for prof in run.groups:  # the search costs candidates at the deployment setting's figures
        for w, ms in prof.curve.items():
            swept = sum(lp.points[w] for lp in prof.layers)
            assert ms == pytest.approx(swept / 1.2 if w in prof.candidates else swept)


def test_launch_bound_model_says_pruning_cannot_help(tmp_path):
    prep = prepare(tiny.residual())
    with pytest.raises(OnnxPruneError, match=r"cannot help.*measures 1\.000 ms against 1\.000 ms") as err:
        prune_to_target(prep, Device(), Job.of(prep.original, speedup=1.3,
                                               cache_path=str(tmp_path / "p.json"), progress=False))
    assert "\n" not in str(err.value) and "launch-bound" in str(err.value)


def test_interleaved_rounds_stop_early_on_a_quiet_machine():
    class Quiet:
        runs = 0

        def time_once(self, repeat=1):
            Quiet.runs += 1
            return 0.5

    runners = [Quiet() for _ in range(4)]
    assert bench.best_of(runners, max_rounds=9) == [0.5] * 4
    assert Quiet.runs <= 4 * (4 + 2)  # warm-up until settled, then the minimum of 2 rounds


def test_missing_tensorrt_or_cuda_is_one_line(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), path)
    for provider, needs in (("tensorrt", "TensorRT"), ("cuda", "onnxruntime-gpu")):
        if runtimes.PROVIDERS[provider] in ort.get_available_providers():
            continue
        proc = subprocess.run([sys.executable, "-m", "onnxprune", "profile", str(path), "--provider", provider],
                              capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "not available" in proc.stderr and needs in proc.stderr


def test_provider_that_falls_back_silently_is_refused(monkeypatch):
    """onnxruntime lists a provider whose libraries are missing, then runs on the CPU: refused."""
    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", *real])
    config = runtimes.RuntimeConfig(provider="tensorrt")
    with pytest.warns(UserWarning), pytest.raises(OnnxPruneError, match="could not start.*TensorRT"):
        runtimes.session(tiny.conv_chain(), config)


def test_isolated_layers_reuse_one_draw_of_random_weights():
    prep = prepare(tiny.single_conv())
    source = fakes.Staircase()
    from onnxprune.profile import LayerBench, group_layers

    lb = LayerBench(prep.graph, source, Cache(None, source.key()))
    layer = group_layers(prep.graph, prep.graph.prunable_groups()[0])[0]
    (small, _), (big, _) = lb.isolated(layer, 16), lb.isolated(layer, 32)
    w16 = numpy_helper.to_array(onnx.load_from_string(small).graph.initializer[0])
    w32 = numpy_helper.to_array(onnx.load_from_string(big).graph.initializer[0])
    assert w16.shape[0] == 16 and w32.shape[0] == 32 and np.array_equal(w16, w32[:16])
