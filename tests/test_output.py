"""Writing models and reports: atomically (a temp file in the target folder, renamed over the
output only after the written file loaded and ran in onnxruntime), never over the input, and
nothing left behind when it fails."""

import os

import numpy as np
import onnx
import pytest
import tiny
from onnx import numpy_helper

from onnxprune import OnnxPruneError, output, runtime, runtimes
from onnxprune.output import check_output_path, write_model, write_text

FEEDS = {"x": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}


def _broken() -> onnx.ModelProto:
    """Saves fine, fails in onnxruntime: conv_1 expects 8 input channels, gets 16."""
    model = tiny.conv_chain()
    w = next(i for i in model.graph.initializer if i.name == "conv_1.weight")
    w.CopyFrom(numpy_helper.from_array(np.ones((24, 8, 3, 3), np.float32), w.name))
    return model


def test_written_model_loads_and_runs_like_the_original(tmp_path):
    model = tiny.conv_chain()
    out = tmp_path / "out.onnx"
    write_model(model, str(out), FEEDS)
    assert os.listdir(tmp_path) == ["out.onnx"]  # no temp file left
    again = runtime.run_outputs(runtimes.session(str(out)), FEEDS)
    ref = runtime.run_outputs(runtimes.session(model), FEEDS)
    np.testing.assert_array_equal(again["y"], ref["y"])
    assert onnx.load(str(out)) == model


def test_a_model_that_fails_to_run_leaves_no_file(tmp_path):
    out = tmp_path / "out.onnx"
    with pytest.raises(OnnxPruneError, match="failed to run"):
        write_model(_broken(), str(out), FEEDS)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    out = tmp_path / "out.onnx"
    write_model(tiny.conv_chain(), str(out), FEEDS)
    before = out.read_bytes()
    with pytest.raises(OnnxPruneError):
        write_model(_broken(), str(out), FEEDS)
    assert out.read_bytes() == before and os.listdir(tmp_path) == ["out.onnx"]


def test_output_paths_refused_before_any_work(tmp_path):
    model = tmp_path / "in.onnx"
    onnx.save(tiny.conv_chain(), str(model))
    with pytest.raises(OnnxPruneError, match="refusing to overwrite the input model"):
        check_output_path(str(model), str(model))
    with pytest.raises(OnnxPruneError, match="is a directory"):
        check_output_path(str(tmp_path), str(model))
    with pytest.raises(OnnxPruneError, match="does not exist"):
        check_output_path(str(tmp_path / "missing" / "out.onnx"), str(model))
    check_output_path(str(tmp_path / "out.onnx"), str(model))  # a new file next to it is fine


def test_write_text_is_atomic_utf8(tmp_path):
    out = tmp_path / "report.json"
    write_text('{"name": "π"}', str(out))
    assert out.read_text(encoding="utf-8") == '{"name": "π"}' and os.listdir(tmp_path) == ["report.json"]
    with pytest.raises(OnnxPruneError, match="cannot write"):
        write_text("x", str(tmp_path / "missing" / "report.json"))


def test_external_data_is_written_with_the_model_or_not_at_all(tmp_path, monkeypatch):
    """A model over the protobuf limit goes out as OUT + OUT.data: both appear only once the
    written model ran; a failure leaves neither (nor a stray folder)."""
    monkeypatch.setattr(output, "EXTERNAL_DATA_BYTES", 0)
    out = tmp_path / "out.onnx"
    with pytest.raises(OnnxPruneError, match="failed to run"):
        write_model(_broken(), str(out), FEEDS)
    assert os.listdir(tmp_path) == []
    write_model(tiny.conv_chain(), str(out), FEEDS)
    assert sorted(os.listdir(tmp_path)) == ["out.onnx", "out.onnx.data"]
    again = runtime.run_outputs(runtimes.session(str(out)), FEEDS)
    np.testing.assert_array_equal(again["y"], runtime.run_outputs(runtimes.session(tiny.conv_chain()), FEEDS)["y"])
