"""Benchmarking: statistics, interleaved A/B ratios, both runtimes, the CLI."""

import importlib.util
import json
import os
import subprocess
import sys

import onnx
import pytest
import tiny

from onnxprune import backends, bench, cli, runtimes
from onnxprune.bench import Timing
from onnxprune.inputs import random_feeds


def _needs(package: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(package) is None,
                              reason=f"{package} not installed")


RUNTIMES = ["ort", pytest.param("openvino", marks=_needs("openvino"))]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxprune", *args], capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_timing_statistics():
    t = Timing.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert t.median_ms == 3.0 and t.min_ms == 1.0 and t.runs == 5 and t.p90_ms > 4.0


@pytest.mark.parametrize("name", RUNTIMES)
def test_model_against_itself_is_about_one(name):
    model = tiny.residual()
    feeds = random_feeds(model)
    config = runtimes.RuntimeConfig(runtime=name)
    cmp = bench.compare(runtimes.runner(model, feeds, config), runtimes.runner(model, feeds, config),
                        rounds=15)
    assert 0.85 < cmp.speedup < 1.15
    assert cmp.ratio_p10 <= cmp.speedup <= cmp.ratio_p90


@pytest.mark.parametrize("name", RUNTIMES)
def test_wider_layer_is_slower_on_every_runtime(name):
    """Coarse: 4x the output channels of a 3x3 conv costs clearly more on both runtimes."""
    source = backends.Local(runtimes.RuntimeConfig(runtime=name))
    narrow, wide = tiny.single_conv(cout=32, head=8), tiny.single_conv(cout=128, head=8)
    feeds = random_feeds(narrow)
    cmp = source.compare(wide.SerializeToString(), narrow.SerializeToString(), feeds, rounds=9)
    assert cmp.speedup > 1.5
    assert source.key().startswith(f"{name}:") and f"|{name}" in source.key()


def test_warm_up_runs_until_timings_settle():
    class Cooling:
        """Slow at first, then approaching 1 ms (caches, clocks, engine builds)."""

        def __init__(self):
            self.runs = 0

        def time_once(self, repeat: int = 1) -> float:
            self.runs += 1
            return 1.0 + 10.0 * 0.8 ** self.runs

    runner = Cooling()
    bench.warm_up(runner, runs=5)
    assert 20 < runner.runs < 100 and runner.time_once() < 1.05


@pytest.mark.parametrize("name", RUNTIMES)
def test_bench_cli_json(tmp_path, name):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), path)
    proc = _cli("bench", str(path), str(path), "--rounds", "5", "--json", "--runtime", name)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    expected = {"ort": "ort:cpu[]/t1/all", "openvino": "openvino:CPU[]/t1/LATENCY"}[name]
    assert data["rounds"] == 5 and data["speedup"] > 0 and data["config"] == expected
    assert data["precision_a"] == data["precision_b"] == "fp32"


def test_unavailable_provider_is_one_line(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), path)
    proc = _cli("bench", str(path), "--provider", "tensorrt")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "not available" in proc.stderr


def test_plugin_ep_library_that_does_not_exist_is_one_line(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), path)
    proc = _cli("bench", str(path), "--provider", "ExampleExecutionProvider",
                "--ep-library", str(tmp_path / "libnothere.so"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "cannot register EP library" in proc.stderr


def test_openvino_missing_is_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), path)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", str(path), "--runtime", "openvino"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("onnxprune: error: ") and "openvino" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--fp16"], "--fp16 needs"),
    (["--device", "1"], "--device is"),
    (["--ray", "auto", "--ray-resources", "GPU"], "expected KEY=VALUE"),
    (["--ray", "auto", "--ray-resources", "GPU=x"], "positive number"),
    (["--ray-actors", "2"], "need --ray"),
    pytest.param(["--ray", "127.0.0.1:9"], "cannot reach Ray at 127.0.0.1:9", marks=_needs("ray")),
])
def test_bad_runtime_options_are_one_line(tmp_path, capsys, args, message):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", str(path), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
