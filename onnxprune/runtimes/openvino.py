"""OpenVINO's own runtime as a runtime family: the ONNX model read from bytes, compiled for
``config.device`` (CPU by default) with the LATENCY performance hint and ``config.threads``
inference threads, inputs set once; ``fp16`` sets the f16 inference precision hint."""

from __future__ import annotations

import onnx

from ..errors import OnnxPruneError, first_line
from .base import BaseRunner, Family, Feeds, RuntimeConfig


def module():
    """The ``openvino`` module, or one clear error when it is not installed."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise OnnxPruneError("--runtime openvino needs the openvino package "
                             "(pip install 'onnxprune[openvino]')") from exc
    return ov


class OpenVinoRunner(BaseRunner):
    """A model compiled by OpenVINO, its inputs set once."""

    def __init__(self, model: onnx.ModelProto | bytes | str, feeds: Feeds, config: RuntimeConfig):
        ov = module()
        data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
        properties = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": config.threads,
                      **config.options()}
        if config.fp16:
            properties["INFERENCE_PRECISION_HINT"] = "f16"
        try:
            core = ov.Core()
            compiled = core.compile_model(core.read_model(data), config.device or "CPU", properties)
        except Exception as exc:  # OpenVINO raises RuntimeError for every failure
            raise OnnxPruneError(f"openvino cannot compile the model: {first_line(exc)}") from exc
        self.request = compiled.create_infer_request()
        for name, value in feeds.items():
            self.request.set_tensor(name, ov.Tensor(value))

    def run_once(self) -> None:
        self.request.infer()


class OpenVino(Family):
    name = "openvino"
    help = "OpenVINO's own runtime"
    device_help = "an OpenVINO device (CPU, GPU)"
    fp16_help = "--runtime openvino"
    options_help = "OpenVINO"

    def available(self, config: RuntimeConfig) -> None:
        module()

    def key(self, config: RuntimeConfig) -> str:
        return self._key(config, config.device or "CPU", "LATENCY")

    def runner(self, model: onnx.ModelProto | bytes | str, feeds: Feeds,
               config: RuntimeConfig) -> BaseRunner:
        return OpenVinoRunner(model, feeds, config)

    def device(self, config: RuntimeConfig) -> str | None:
        return None if (config.device or "CPU") == "CPU" else f"openvino:{config.device}"

    def version(self, config: RuntimeConfig) -> str:
        return f"openvino{module().__version__}"

