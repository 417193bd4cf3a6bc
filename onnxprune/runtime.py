"""ONNX Runtime sessions, the runtime configuration and input feeds shared by every stage that
runs a model (timing on other runtimes goes through :mod:`onnxprune.backends`).

Invariant: every concrete shape the tool uses comes from :func:`input_shapes`, so a model is
always run with the same resolution of its dynamic dimensions (batch 1, spatial 224 unless the
user passes ``--shape``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort

from .errors import OnnxPruneError

ort.set_default_logger_severity(4)  # fatal only: failures reach the user as our one stderr line

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
NP_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.BOOL: np.bool_,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT8: np.int8,
}


RUNTIMES = ("ort", "openvino")
GPU_PROVIDERS = ("cuda", "tensorrt")


@dataclass(frozen=True)
class RuntimeConfig:
    """How a model is run: mirrors the deployment session.

    ``runtime``: ``ort`` (onnxruntime; ``provider`` is an alias from :data:`PROVIDERS` or any
    execution provider's full name, registered from ``ep_library`` for plugin EPs) or
    ``openvino`` (OpenVINO's own runtime on ``device``, e.g. CPU or GPU). ``device`` is the
    device id for the CUDA/TensorRT providers. ``fp16``: TensorRT or OpenVINO half precision."""

    provider: str = "cpu"
    threads: int = 1
    opt_level: str = "all"
    provider_options: dict = field(default_factory=dict)
    runtime: str = "ort"
    device: str = ""
    fp16: bool = False
    ep_library: str = ""

    def options(self) -> dict[str, str]:
        """Provider options with this tool's conventions filled in (recorded in :meth:`key`):
        the device id on GPU providers, cuDNN's exhaustive conv algorithm search on CUDA, and
        TensorRT's engine/timing caches and fp16 flag."""
        opts = {k: str(v) for k, v in self.provider_options.items()}
        if self.runtime != "ort":
            return opts
        if self.provider in GPU_PROVIDERS and self.device:
            opts.setdefault("device_id", self.device)
        if self.provider == "cuda":
            opts.setdefault("cudnn_conv_algo_search", "EXHAUSTIVE")
        if self.provider == "tensorrt":
            opts.setdefault("trt_engine_cache_enable", "True")
            opts.setdefault("trt_timing_cache_enable", "True")
            opts.setdefault("trt_fp16_enable", str(self.fp16))
        return opts

    def key(self) -> str:
        """A stable string naming this configuration (used in cache keys)."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options().items()))
        fp16 = "/fp16" if self.fp16 else ""
        if self.runtime == "openvino":
            return f"openvino:{self.device or 'CPU'}[{opts}]/t{self.threads}/LATENCY{fp16}"
        return f"ort:{self.provider}[{opts}]/t{self.threads}/{self.opt_level}{fp16}"


def cache_dir() -> str:
    """Where measurements and engine caches live: ``$ONNXPRUNE_CACHE`` or ~/.cache/onnxprune."""
    return os.environ.get("ONNXPRUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "onnxprune")


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The real inputs of the graph (initializers listed as inputs are not inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_shapes(
    model: onnx.ModelProto, overrides: dict[str, tuple[int, ...]] | None = None
) -> dict[str, tuple[int, ...]]:
    """Concrete shape per graph input: overrides first, then static dims; dynamic dims become
    1 on axis 0 (batch), 224 on the spatial axes of rank-4 inputs and 1 elsewhere."""
    overrides = overrides or {}
    names = [i.name for i in graph_inputs(model)]
    unknown = set(overrides) - set(names)
    if unknown:
        raise OnnxPruneError(f"--shape names unknown input(s) {sorted(unknown)}; inputs: {names}")
    shapes = {}
    for inp in graph_inputs(model):
        if inp.name in overrides:
            shapes[inp.name] = overrides[inp.name]
            continue
        dims = inp.type.tensor_type.shape.dim
        shape = []
        for axis, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(d.dim_value)
            elif axis == 0:
                shape.append(1)
            else:
                shape.append(224 if len(dims) == 4 and axis >= 2 else 1)
        shapes[inp.name] = tuple(shape)
    return shapes


def random_feeds(
    model: onnx.ModelProto,
    overrides: dict[str, tuple[int, ...]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Deterministic random inputs: standard normal for floats, ones for integers/bools (a
    token id in any vocabulary; an attention mask with every token real: full-length
    sequences, the case latency is measured for)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    shapes = input_shapes(model, overrides)
    for inp in graph_inputs(model):
        dtype = NP_TYPES.get(inp.type.tensor_type.elem_type, np.float32)
        shape = shapes[inp.name]
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[inp.name] = np.ones(shape, dtype=dtype)
    return feeds


def session(
    model: onnx.ModelProto | bytes | str, config: RuntimeConfig | None = None
) -> ort.InferenceSession:
    """An InferenceSession for a model proto, serialized bytes or a path.

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


#: what each device provider needs besides onnxruntime itself
_PROVIDER_NEEDS = {
    "cuda": "onnxruntime-gpu (pip install 'onnxprune[gpu]'), a CUDA device and the CUDA/cuDNN "
            "libraries on the library path",
    "tensorrt": "onnxruntime-gpu built with TensorRT and TensorRT's libraries (libnvinfer, "
                "pip install tensorrt) on the library path",
}


def check_provider(config: RuntimeConfig) -> None:
    """One clear error when ``config``'s onnxruntime execution provider is not available here
    (plugin EP libraries are checked when registered)."""
    if config.runtime != "ort" or config.ep_library:
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


def run(
    model: onnx.ModelProto | ort.InferenceSession,
    feeds: dict[str, np.ndarray],
    config: RuntimeConfig | None = None,
) -> dict[str, np.ndarray]:
    """Run once and return ``{output name: array}``."""
    sess = model if isinstance(model, ort.InferenceSession) else session(model, config)
    names = [o.name for o in sess.get_outputs()]
    try:
        values = sess.run(names, feeds)
    except Exception as exc:
        asked = re.search(r"requested buffer of size (\d+)", str(exc))
        if asked:  # onnxruntime's arena ran out: the same one line as numpy's MemoryError
            raise MemoryError(f"Unable to allocate {int(asked.group(1)) / 2**30:.1f} GiB") from exc
        raise OnnxPruneError(f"onnxruntime failed to run the model: {first_line(exc)}") from exc
    return dict(zip(names, values))


def max_rel_error(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    """Largest ``max|ref - got| / max(max|ref|, 1e-12)`` over the finite values of the outputs
    of ``ref`` (infinite when ``got`` lacks one or it changed shape); non-finite values (an infinity through a mask, NaN) must sit at the same
    positions with the same value, else the error is infinite."""
    worst = 0.0
    for name, a in ref.items():
        b = got.get(name)
        if b is None or a.shape != b.shape:
            return float("inf")
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        finite = np.isfinite(a64)
        if not (np.array_equal(finite, np.isfinite(b64))
                and np.array_equal(a64[~finite], b64[~finite], equal_nan=True)):
            return float("inf")
        a64, b64 = a64[finite], b64[finite]
        scale = max(float(np.abs(a64).max(initial=0.0)), 1e-12)
        worst = max(worst, float(np.abs(a64 - b64).max(initial=0.0)) / scale)
    return worst


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
