"""The runtime registry (:mod:`onnxprune.runtimes`): every family registered and found by
name, cache-key strings pinned (profile caches are keyed by them), each family's refusals in
one line, and a new family added by ``register`` alone is measured end to end."""

import ast
import re
import time
from pathlib import Path

import numpy as np
import pytest
import tiny

from onnxprune import OnnxPruneError, runtimes
from onnxprune.backends import Local
from onnxprune.inputs import random_feeds
from onnxprune.runtimes import BaseRunner, Family, RuntimeConfig
from onnxprune.runtimes import base as registry


def test_families_registered_in_order():
    assert runtimes.names() == ("ort", "openvino")
    assert runtimes.family(RuntimeConfig()).name == "ort"
    with pytest.raises(OnnxPruneError, match="unknown runtime 'nope'; use one of ort, openvino"):
        runtimes.family(RuntimeConfig(runtime="nope"))
    with pytest.raises(ValueError, match="twice"):
        runtimes.register(runtimes.ort.Ort())


@pytest.mark.parametrize(("config", "key"), [
    (RuntimeConfig(), "ort:cpu[]/t1/all"),
    (RuntimeConfig(provider="cuda", device="1"),
     "ort:cuda[cudnn_conv_algo_search=EXHAUSTIVE,device_id=1]/t1/all"),
    (RuntimeConfig(provider="tensorrt", fp16=True),
     "ort:tensorrt[trt_engine_cache_enable=True,trt_fp16_enable=True,trt_timing_cache_enable=True]/t1/all/fp16"),
    (RuntimeConfig(runtime="openvino"), "openvino:CPU[]/t1/LATENCY"),
    (RuntimeConfig(runtime="openvino", device="GPU", fp16=True, threads=4), "openvino:GPU[]/t4/LATENCY/fp16"),
    (RuntimeConfig(provider="MyEP", ep_library="/x.so", provider_options={"a": 1}), "ort:MyEP[a=1]/t1/all"),
    (RuntimeConfig(opt_level="basic", provider_options={"z": "2", "b": 3}), "ort:cpu[b=3,z=2]/t1/basic"),
])
def test_key_strings_are_stable(config, key):
    assert config.key() == key


def test_device_names_and_sweep_settings():
    assert runtimes.device_name(RuntimeConfig(provider="cuda", device="2")) == "cuda:2"
    assert runtimes.device_name(RuntimeConfig(runtime="openvino", device="GPU")) == "openvino:GPU"
    host = runtimes.device_name(RuntimeConfig())
    assert host and host == runtimes.device_name(RuntimeConfig(runtime="openvino"))
    assert runtimes.version(RuntimeConfig()).startswith("ort")
    cuda = Local(RuntimeConfig(provider="cuda"))
    assert cuda.sweeper().config.provider_options == {"cudnn_conv_algo_search": "HEURISTIC"}
    assert Local(RuntimeConfig(runtime="openvino")).sweeper().config.provider_options == {}


@pytest.mark.parametrize(("config", "message"), [
    (RuntimeConfig(fp16=True), "--fp16 needs --provider tensorrt or --runtime openvino"),
    (RuntimeConfig(provider="cuda", fp16=True), "--fp16 needs --provider tensorrt or --runtime openvino"),
    (RuntimeConfig(device="1"), "--device is a CUDA/TensorRT device id or an OpenVINO device (CPU, GPU)"),
])
def test_refused_requests(config, message):
    with pytest.raises(OnnxPruneError, match=re.escape(message)):
        runtimes.check_request(config)


def test_accepted_requests():
    for config in (RuntimeConfig(provider="tensorrt", fp16=True, device="0"),
                   RuntimeConfig(runtime="openvino", device="GPU", fp16=True),
                   RuntimeConfig(provider="cuda", device="1")):
        runtimes.check_request(config)


def test_missing_provider_and_package_are_one_line(monkeypatch):
    with pytest.raises(OnnxPruneError, match="provider 'tensorrt' is not available .*it needs"):
        runtimes.check_available(RuntimeConfig(provider="tensorrt"))
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # import openvino fails
    with pytest.raises(OnnxPruneError, match=r"--runtime openvino needs the openvino package"):
        runtimes.check_available(RuntimeConfig(runtime="openvino"))


class _Sleeper(BaseRunner):
    """A fake runtime's model: sleeps longer the more weight values it holds."""

    def __init__(self, model, feeds, config):
        self.seconds = 1e-4 * len(model) / 1000

    def run_once(self) -> None:
        time.sleep(self.seconds)


class _Fake(Family):
    name = "fake"
    help = "a fake runtime"

    def key(self, config):
        return self._key(config, "here", "ALWAYS")

    def runner(self, model, feeds, config):
        return _Sleeper(model, feeds, config)

    def version(self, config):
        return "fake0"


def test_a_registered_family_is_measured_end_to_end(monkeypatch):
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    runtimes.register(_Fake())
    config = RuntimeConfig(runtime="fake")
    assert "fake" in runtimes.names() and config.key() == "fake:here[]/t1/ALWAYS"
    model = tiny.conv_chain()
    small, feeds = model.SerializeToString(), random_feeds(model)
    large = small * 20  # the fake runtime's latency grows with the bytes it is given
    src = Local(config)
    assert src.key().endswith("|fake0")
    a, b = src.layers([(small, feeds), (large, feeds)])
    assert 0 < a < b
    assert np.isfinite(src.measure(small, feeds, rounds=3, warmup=1).median_ms)


def _literals(path: Path) -> list[str]:
    """``path``'s string literals, docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr)}
    return [n.value.lower() for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_only_the_registry_names_runtimes():
    """Outside runtimes/ no string literal names a runtime; "cuda" only as torch's device type,
    in the modules that run torch."""
    package = Path(runtimes.__file__).parent.parent
    for path in package.rglob("*.py"):
        if path.parent.name == "runtimes":
            continue
        said = " ".join(_literals(path))
        assert "openvino" not in said and "tensorrt" not in said, path
        if "cuda" in said:
            assert "import torch" in path.read_text(), path
