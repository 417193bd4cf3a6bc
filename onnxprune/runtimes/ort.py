"""onnxruntime: its execution providers (CPU, CUDA, TensorRT, any EP by full name, plugin EP
libraries) as one runtime family, and :func:`session`, the onnxruntime session every stage
that runs a model uses.

Conventions recorded in the key (:meth:`Ort.options`): the device id on device providers,
cuDNN's exhaustive conv algorithm search on CUDA, TensorRT's engine/timing caches and fp16
flag. On device providers the runner binds inputs and outputs on the device (IO binding), so
host<->device copies are not part of the figure; on the CPU provider with one thread it
clocks the session thread's CPU time.
"""

from __future__ import annotations

import os
import time

import onnx
import onnxruntime as ort

from ..cachefile import cache_dir
from ..errors import OnnxPruneError, first_line
from .base import BaseRunner, Family, Feeds, RuntimeConfig, phrases

ort.set_default_logger_severity(4)  # fatal only: failures reach the user as our one stderr line

#: ``--provider`` aliases
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
DEVICE_PROVIDERS = ("cuda", "tensorrt")  # the providers whose ``--device`` is a device id
OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
#: options a layer sweep uses on device providers when the user did not set them
SWEEP_OPTIONS = {
    "cuda": {"cudnn_conv_algo_search": "HEURISTIC"},
    "tensorrt": {"trt_builder_optimization_level": "1"},
}
#: what each device provider needs besides onnxruntime itself
_PROVIDER_NEEDS = {
    "cuda": "onnxruntime-gpu (pip install 'onnxprune[gpu]'), a CUDA device and the CUDA/cuDNN "
            "libraries on the library path",
    "tensorrt": "onnxruntime-gpu built with TensorRT and TensorRT's libraries (libnvinfer, "
                "pip install tensorrt) on the library path",
}


def session(model: onnx.ModelProto | bytes | str,
            config: RuntimeConfig | None = None) -> ort.InferenceSession:
    """An InferenceSession for a model proto, serialized bytes or a path (default: the CPU
    provider, one thread).

    Raises OnnxPruneError (one line) when onnxruntime cannot load the model or lacks the provider.
    """
    config = config or RuntimeConfig()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = OPT_LEVELS[config.opt_level]
    opts.log_severity_level = 4
    provider = PROVIDERS.get(config.provider, config.provider)
    options = config.options()
    providers: list = []
    if config.ep_library:
        opts.add_provider_for_devices(_plugin_devices(provider, config.ep_library), options)
    else:
        check_provider(config)
        if config.provider == "tensorrt":
            trt = os.path.join(cache_dir(), "tensorrt")
            options = {"trt_engine_cache_path": trt, "trt_timing_cache_path": trt, **options}
        providers = [(provider, options)]
        if config.provider == "tensorrt" and "CUDAExecutionProvider" in ort.get_available_providers():
            # what TensorRT does not take runs on CUDA, as deployed
            providers.append(("CUDAExecutionProvider", {k: v for k, v in options.items() if k == "device_id"}))
        if provider != "CPUExecutionProvider":
            providers.append(("CPUExecutionProvider", {}))
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    try:
        sess = ort.InferenceSession(src, sess_options=opts, providers=providers or None)
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise OnnxPruneError(f"onnxruntime cannot load the model: {first_line(exc)}") from exc
    if providers and provider not in sess.get_providers():  # onnxruntime fell back silently
        needs = _PROVIDER_NEEDS.get(config.provider, "its libraries on the library path")
        raise OnnxPruneError(f"provider {config.provider!r} could not start (onnxruntime fell back to "
                             f"{', '.join(sess.get_providers())}); it needs {needs}")
    return sess


def check_provider(config: RuntimeConfig) -> None:
    """One clear error when ``config``'s execution provider is not available in this
    onnxruntime (plugin EP libraries are checked when registered)."""
    if config.ep_library:
        return
    provider = PROVIDERS.get(config.provider, config.provider)
    available = ort.get_available_providers()
    if provider not in available:
        needs = _PROVIDER_NEEDS.get(config.provider)
        raise OnnxPruneError(
            f"provider {config.provider!r} is not available in this onnxruntime "
            f"{ort.__version__} (available: {', '.join(available)})"
            + (f"; it needs {needs}" if needs else ""))


def _plugin_devices(provider: str, library: str) -> list:
    """The devices of a plugin execution provider, registering its library once per process."""
    if not any(d.ep_name == provider for d in ort.get_ep_devices()):
        try:
            ort.register_execution_provider_library(provider, library)
        except Exception as exc:
            raise OnnxPruneError(f"cannot register EP library {library}: {first_line(exc)}") from exc
    devices = [d for d in ort.get_ep_devices() if d.ep_name == provider]
    if not devices:
        found = sorted({d.ep_name for d in ort.get_ep_devices()})
        raise OnnxPruneError(f"{library} registered but provider {provider!r} found no device "
                             f"(EP devices: {found})")
    return devices


class OrtRunner(BaseRunner):
    """An onnxruntime session with its feeds (bound on the device on device providers)."""

    def __init__(self, model: onnx.ModelProto | bytes | str, feeds: Feeds, config: RuntimeConfig):
        self.session = session(model, config)
        self.feeds = feeds
        if config.provider == "cpu" and config.threads == 1 and not config.ep_library:
            self.clock = time.thread_time  # the inference runs on this thread alone
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.binding = None
        if config.provider in DEVICE_PROVIDERS:
            device_id = int(config.options().get("device_id", 0))
            self.binding = self.session.io_binding()
            self._keep = [ort.OrtValue.ortvalue_from_numpy(v, "cuda", device_id) for v in feeds.values()]
            for name, value in zip(feeds, self._keep):
                self.binding.bind_ortvalue_input(name, value)
            for name in self.outputs:
                self.binding.bind_output(name, "cuda", device_id)

    def run_once(self) -> None:
        if self.binding is None:
            self.session.run(self.outputs, self.feeds)
        else:
            self.session.run_with_iobinding(self.binding)
            self.binding.synchronize_outputs()


class Ort(Family):
    name = "ort"
    help = "onnxruntime"
    device_help = "a CUDA/TensorRT device id"
    fp16_help = "--provider tensorrt"
    options_help = "provider"

    def check(self, config: RuntimeConfig) -> None:
        if config.fp16 and config.provider != "tensorrt":
            raise OnnxPruneError(f"--fp16 needs {phrases('fp16_help')}")
        if config.device and config.provider not in DEVICE_PROVIDERS:
            raise OnnxPruneError(f"--device is {phrases('device_help')}")

    def available(self, config: RuntimeConfig) -> None:
        check_provider(config)

    def options(self, config: RuntimeConfig) -> dict[str, str]:
        opts = super().options(config)
        if config.provider in DEVICE_PROVIDERS and config.device:
            opts.setdefault("device_id", config.device)
        if config.provider == "cuda":
            opts.setdefault("cudnn_conv_algo_search", "EXHAUSTIVE")
        if config.provider == "tensorrt":
            opts.setdefault("trt_engine_cache_enable", "True")
            opts.setdefault("trt_timing_cache_enable", "True")
            opts.setdefault("trt_fp16_enable", str(config.fp16))
        return opts

    def key(self, config: RuntimeConfig) -> str:
        return self._key(config, config.provider, config.opt_level)

    def runner(self, model: onnx.ModelProto | bytes | str, feeds: Feeds,
               config: RuntimeConfig) -> BaseRunner:
        return OrtRunner(model, feeds, config)

    def device(self, config: RuntimeConfig) -> str | None:
        if config.provider == "cpu":
            return None
        return f"{config.provider}:{self.options(config).get('device_id', 0)}"

    def version(self, config: RuntimeConfig) -> str:
        return f"ort{ort.__version__}"

    def sweep_options(self, config: RuntimeConfig) -> dict[str, str]:
        return SWEEP_OPTIONS.get(config.provider, {})

