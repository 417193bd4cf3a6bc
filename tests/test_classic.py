"""The classic IR-3 / opset-9 networks of the onnx wheel's backend test data (caffe2-era
exports, structure only: weights are ConstantOfShape nodes): with random weights folded in,
every index map is proven by the zero-filter check, and the written models keep IR 3."""

import json
import os

import numpy as np
import onnx
import pytest
from prunecheck import prove

from onnxprune import load_model, prune
from onnxprune.cli import main
from onnxprune.load import export_form, normalise
from onnxprune.stats import param_count

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def classic(name: str) -> onnx.ModelProto:
    """``light_<name>.onnx`` with its constant weights folded and replaced by random ones
    (1-D parameters positive, so BN variances stay valid), in IR-3 form."""
    model = normalise(load_model(os.path.join(LIGHT, f"light_{name}.onnx")), verify=False)
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        dims = list(init.dims)
        if len(dims) == 1:
            value = rng.uniform(0.5, 1.5, dims)
        else:
            value = rng.standard_normal(dims) / np.sqrt(max(np.prod(dims[1:]), 1))
        init.CopyFrom(onnx.numpy_helper.from_array(value.astype(np.float32), init.name))
    return export_form(model)


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet", "inception_v1", "resnet50"])
def test_classic_network_is_proven(name):
    model = classic(name)
    assert model.ir_version == 3
    prep = prove(model, min_removed=50)
    assert prep.graph.summary()["prunable_share"] > 0.15


def test_classic_network_written_by_prune_passes_the_checker():
    original = load_model(os.path.join(LIGHT, "light_squeezenet.onnx"))
    out = prune(original, ratio=0.3)
    assert out.model.ir_version == 3 and out.report["params_after"] < out.report["params_before"]
    onnx.checker.check_model(out.model, full_check=True)


def test_classic_network_from_the_command_line(tmp_path, capsys):
    path = os.path.join(LIGHT, "light_squeezenet.onnx")
    main(["analyze", path, "--json"])
    assert json.loads(capsys.readouterr().out)["summary"]["prunable_groups"] >= 20
    out = tmp_path / "out.onnx"
    main([path, "-o", str(out), "--ratio", "0.3", "--no-latency"])
    written = onnx.load(out)
    assert written.ir_version == 3 and [o.version for o in written.opset_import] == [9]
    onnx.checker.check_model(written, full_check=True)
    assert (param_count(normalise(written, verify=False))
            < 0.7 * param_count(normalise(load_model(path), verify=False)))
