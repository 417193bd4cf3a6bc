"""CLI: a real run writes a valid model; bad input is one stderr line, non-zero, no file."""

import hashlib
import os
import subprocess
import sys

import onnx
import pytest
import tiny

from onnxprune.cli import main


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "onnxprune", *args], capture_output=True, check=False,
                          text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": os.getcwd()})


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "in.onnx"
    onnx.save(tiny.residual(), path)
    return path


def test_prune_ratio_writes_smaller_valid_model(model_path, tmp_path, capsys):
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    out = tmp_path / "out.onnx"
    main([str(model_path), "-o", str(out), "--ratio", "0.3", "--no-latency"])
    assert hashlib.sha256(model_path.read_bytes()).hexdigest() == digest
    pruned = onnx.load(out)
    onnx.checker.check_model(pruned, full_check=True)
    assert out.stat().st_size < model_path.stat().st_size
    assert "parameters" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".onnxprune")] == []


def test_analyze_json(model_path, capsys):
    import json
    main(["analyze", str(model_path), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["prunable_groups"] == 4
    assert {"id", "name", "width", "prunable", "members", "frozen", "index_maps"} <= set(data["groups"][0])
    stem = next(g for g in data["groups"] if g["name"] == "conv_0")
    assert any(m.endswith(": unify") for m in stem["index_maps"])  # the residual Add


@pytest.mark.parametrize("case", ["missing", "garbage", "ratio", "outdir", "noratio", "same"])
def test_bad_input_is_one_line(case, model_path, tmp_path):
    out = tmp_path / "out.onnx"
    args = {
        "missing": [str(tmp_path / "nope.onnx"), "-o", str(out), "--ratio", "0.3"],
        "garbage": [str(tmp_path / "junk.onnx"), "-o", str(out), "--ratio", "0.3"],
        "ratio": [str(model_path), "-o", str(out), "--ratio", "1.5"],
        "outdir": [str(model_path), "-o", str(tmp_path / "no" / "out.onnx"), "--ratio", "0.3"],
        "noratio": [str(model_path), "-o", str(out)],
        "same": [str(model_path), "-o", str(model_path), "--ratio", "0.3"],
    }[case]
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    before = model_path.read_bytes()
    proc = _run(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxprune: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and model_path.read_bytes() == before


def test_model_onnxruntime_cannot_load(tmp_path):
    bad = tiny.conv_chain()
    bad.graph.node[0].op_type = "NoSuchOp"
    path = tmp_path / "bad.onnx"
    onnx.save(bad, path)
    proc = _run(str(path), "-o", str(tmp_path / "o.onnx"), "--ratio", "0.2")
    assert proc.returncode == 2 and "onnxruntime cannot load" in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("onnxprune: error:"), proc.stderr


def test_model_onnxruntime_cannot_run_is_one_line(tmp_path):
    """onnxruntime loads the model but fails running it: its own log line stays silent."""
    bad = tiny.conv_chain()
    del bad.graph.value_info[:]  # so that the load-time shape inference does not see it
    group = next(a for a in bad.graph.node[3].attribute if a.name == "group")
    group.i = 5  # 16 input channels are not a multiple of 5: fails when run
    path = tmp_path / "bad.onnx"
    onnx.save(bad, path)
    proc = _run(str(path), "-o", str(tmp_path / "o.onnx"), "--ratio", "0.2")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("onnxprune: error:"), proc.stderr


def test_analyze_shows_the_precision_of_a_qdq_models_groups(tmp_path, capsys):
    """A QDQ model is analysed as the float model it stands for, each group's precision shown;
    pruning it is still refused in one line."""
    import json

    import numpy as np

    from onnxprune import quantize
    samples = {"x": np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)}
    model = tiny.conv_chain()
    first = quantize.quantized_nodes(quantize.quantize(model, samples).model)[0]
    path = tmp_path / "q.onnx"
    onnx.save(quantize.quantize(model, samples, quantize.Quantization(keep_float=(first,))).model, path)
    main(["analyze", str(path), "--json"])
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert [g["precision"] for g in groups] == ["int8 1, fp32 1", "int8", "int8"]  # conv_0 float feeds conv_1
    main(["analyze", str(path)])
    assert "precision" in capsys.readouterr().out
    got = _run(str(path), "-o", str(tmp_path / "out.onnx"), "--ratio", "0.3")
    assert got.returncode != 0 and got.stderr.count("\n") == 1 and "quantized graphs" in got.stderr
