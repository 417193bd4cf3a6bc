"""Benchmarking: statistics, interleaved A/B ratios, the CLI."""

import json
import os
import subprocess
import sys

import onnx
import tiny

from onnxprune import bench, runtime
from onnxprune.bench import Timing


def test_timing_statistics():
    t = Timing.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert t.median_ms == 3.0 and t.min_ms == 1.0 and t.runs == 5 and t.p90_ms > 4.0


def test_model_against_itself_is_about_one():
    model = tiny.residual()
    feeds = runtime.random_feeds(model)
    cmp = bench.compare(bench.Runner(model, feeds), bench.Runner(model, feeds), rounds=15)
    assert 0.85 < cmp.speedup < 1.15
    assert cmp.ratio_p10 <= cmp.speedup <= cmp.ratio_p90


def test_bench_cli_json(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), path)
    proc = subprocess.run([sys.executable, "-m", "onnxprune", "bench", str(path), str(path),
                           "--rounds", "5", "--json"], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["rounds"] == 5 and data["speedup"] > 0 and data["config"] == "cpu[]/t1/all"


def test_unavailable_provider_is_one_line(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), path)
    proc = subprocess.run([sys.executable, "-m", "onnxprune", "bench", str(path), "--provider",
                           "tensorrt"], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "not available" in proc.stderr
