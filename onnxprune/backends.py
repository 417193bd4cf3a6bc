"""The measuring seam: every figure the tool quotes comes from a :class:`LatencySource`.

A *runner* is a model built for one runtime configuration with its feeds bound, timed by
:meth:`BaseRunner.time_once`; :func:`build` makes one from model bytes for onnxruntime (any execution
provider, plugin EPs included) or OpenVINO's own runtime. A *latency source* turns model bytes
into timings: :class:`Local` measures on this machine; :class:`onnxprune.remote.RaySource` asks
Ray actors on other machines; tests pass fakes. Layer profiles, ``bench``, the hardware loop and
the quick latency check all call a source, so the optimiser never needs to know where, or on
what, a model runs.

Invariant: a source's :meth:`~LatencySource.key` names everything a timing depends on (runtime,
its version and options, threads, device), and is the prefix of every profile cache key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import onnx
import onnxruntime as ort

from . import bench, runtime
from .errors import OnnxPruneError

Feeds = dict[str, np.ndarray]


class BaseRunner:
    """A built model with its inputs bound; subclasses define one inference (:meth:`run_once`).

    ``clock``: wall time, or the calling thread's CPU time where the whole inference runs on
    that thread (onnxruntime's CPU provider with one thread): the same figure on a quiet
    machine, but other processes taking the cores (a shared, busy machine) no longer add to
    it (measured on a 2-core machine at load 15: a conv staircase's spread over repeats
    1.04-1.12x instead of 1.2-3.5x of wall time)."""

    clock = staticmethod(time.perf_counter)

    def run_once(self) -> None:
        raise NotImplementedError

    def time_once(self, repeat: int = 1) -> float:
        """Run ``repeat`` times; milliseconds per run."""
        start = self.clock()
        for _ in range(repeat):
            self.run_once()
        return (self.clock() - start) * 1e3 / repeat

    def calibrate(self, budget_ms: float = 10.0) -> int:
        """Runs per round so that one round lasts about ``budget_ms`` (at least 1)."""
        self.time_once()
        one = min(self.time_once() for _ in range(3))
        return max(1, int(budget_ms / max(one, 1e-3)))


class OrtRunner(BaseRunner):
    """An onnxruntime session. On device providers (CUDA, TensorRT) inputs and outputs are bound
    on the device with IO binding, so host<->device copies are not part of the figure."""

    def __init__(self, model: onnx.ModelProto | bytes | str, feeds: Feeds,
                 config: runtime.RuntimeConfig):
        self.session = runtime.session(model, config)
        self.feeds = feeds
        if config.provider == "cpu" and config.threads == 1 and not config.ep_library:
            self.clock = time.thread_time  # the inference runs on this thread alone
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.binding = None
        if config.provider in runtime.GPU_PROVIDERS:
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


class OpenVinoRunner(BaseRunner):
    """OpenVINO's runtime: the ONNX model read from bytes, compiled for ``config.device`` with the
    LATENCY performance hint and ``config.threads`` inference threads, inputs set once."""

    def __init__(self, model: onnx.ModelProto | bytes | str, feeds: Feeds,
                 config: runtime.RuntimeConfig):
        ov = openvino()
        data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
        properties = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": config.threads,
                      **config.options()}
        if config.fp16:
            properties["INFERENCE_PRECISION_HINT"] = "f16"
        try:
            core = ov.Core()
            compiled = core.compile_model(core.read_model(data), config.device or "CPU", properties)
        except Exception as exc:  # OpenVINO raises RuntimeError for every failure
            raise OnnxPruneError(f"openvino cannot compile the model: {runtime.first_line(exc)}") from exc
        self.request = compiled.create_infer_request()
        for name, value in feeds.items():
            self.request.set_tensor(name, ov.Tensor(value))

    def run_once(self) -> None:
        self.request.infer()


def openvino():
    """The ``openvino`` module, or one clear error when it is not installed."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise OnnxPruneError("--runtime openvino needs the openvino package "
                             "(pip install 'onnxprune[openvino]')") from exc
    return ov


def build(model: onnx.ModelProto | bytes | str, feeds: Feeds,
          config: runtime.RuntimeConfig | None = None) -> BaseRunner:
    """A runner for ``model`` (proto, serialized bytes or path) on ``config``'s runtime."""
    config = config or runtime.RuntimeConfig()
    if config.runtime == "openvino":
        return OpenVinoRunner(model, feeds, config)
    if config.runtime != "ort":
        raise OnnxPruneError(f"unknown runtime {config.runtime!r}; use one of {', '.join(runtime.RUNTIMES)}")
    return OrtRunner(model, feeds, config)


def device_name(config: runtime.RuntimeConfig) -> str:
    """What the cache key calls the machine: CPU model, or the device for device providers."""
    if config.runtime == "openvino" and (config.device or "CPU") != "CPU":
        return f"openvino:{config.device}"
    if config.runtime == "ort" and config.provider != "cpu":
        return f"{config.provider}:{config.options().get('device_id', 0)}"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runtime_version(config: runtime.RuntimeConfig) -> str:
    """The runtime and its version, e.g. ``ort1.20.1`` or ``openvino2025.1.0``."""
    if config.runtime == "openvino":
        return f"openvino{openvino().__version__}"
    return f"ort{ort.__version__}"


class LatencySource(Protocol):
    """Where timings come from. ``workers``: how many timings may run at once (one per device)."""

    workers: int

    def key(self) -> str:
        """Names the runtime, its version and options, and the device (cache key prefix)."""

    def layer(self, model: bytes, feeds: Feeds, count: int) -> float:
        """Best of ``count`` independent measurements (ms) of a small model (one layer).
        A source may also offer ``layers(items, count) -> list[float]``, the same for a batch
        of ``(model, feeds)`` timed together (the profiler prefers it), and ``sweeper()``, a
        cheaper setting for layer sweeps (:meth:`Local.sweeper`)."""

    def measure(self, model: bytes, feeds: Feeds, rounds: int = 30,
                warmup: int = 5) -> bench.Timing:
        """Statistics of ``rounds`` timed rounds of a model."""

    def compare(self, a: bytes, b: bytes, feeds: Feeds, rounds: int = 30,
                warmup: int = 5) -> bench.Comparison:
        """Interleaved A/B rounds of two models on the same device."""


#: options a layer sweep uses on device providers when the user did not set them: the cheap
#: algorithm search (the deployment setting confirms the chosen edges, see profile.LayerBench)
SWEEP_OPTIONS = {
    "cuda": {"cudnn_conv_algo_search": "HEURISTIC"},
    "tensorrt": {"trt_builder_optimization_level": "1"},
}


class Local:
    """Measures on this machine with one runtime configuration. The last few models built are
    kept warm (keyed by content), so a baseline compared against many candidates is built once.
    Picklable: what it sends is the configuration, never a built model.

    ``rounds``: at most this many interleaved rounds per layer batch (:func:`bench.best_of`),
    each about ``round_ms``. ``builds``: sessions built and their seconds (engine builds on
    TensorRT, algorithm search on CUDA happen there), reported apart from latency."""

    workers = 1
    keep = 3
    batch = 64  # sessions alive at once in a layer batch
    batch_bytes = 256 << 20  # and their inputs (outputs and workspaces come on top)

    def __init__(self, config: runtime.RuntimeConfig | None = None, rounds: int = 5,
                 round_ms: float = 0.5):
        self.config = config or runtime.RuntimeConfig()
        self.rounds, self.round_ms = rounds, round_ms
        self.builds = {"count": 0, "seconds": 0.0}
        self._runners: OrderedDict[str, BaseRunner] = OrderedDict()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_runners": OrderedDict()}

    def key(self) -> str:
        """Computed where the source runs (a pickled source names its new machine)."""
        return f"{self.config.key()}|{device_name(self.config)}|{runtime_version(self.config)}"

    def sweeper(self) -> Local:
        """This source with the cheap algorithm search of :data:`SWEEP_OPTIONS` for layer
        sweeps (a different cache key), or itself where there is none or the user chose one."""
        cheap = SWEEP_OPTIONS.get(self.config.provider, {}) if self.config.runtime == "ort" else {}
        if not cheap or set(cheap) & set(self.config.provider_options):
            return self
        config = dataclasses.replace(self.config,
                                     provider_options={**self.config.provider_options, **cheap})
        other = Local(config, self.rounds, self.round_ms)
        other.builds = self.builds
        return other

    def _build(self, items: list[tuple[bytes, Feeds]]) -> list[BaseRunner]:
        """Runners for ``items``, built in parallel on the host's cores (counted in ``builds``)."""
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(len(items), os.cpu_count() or 1)) as pool:
            runners = list(pool.map(lambda mf: build(mf[0], mf[1], self.config), items))
        self.builds["count"] += len(items)
        self.builds["seconds"] += time.perf_counter() - start
        return runners

    def runner(self, model: bytes, feeds: Feeds) -> BaseRunner:
        """A warm runner for ``model`` (built once while among the last :attr:`keep` used)."""
        digest = hashlib.sha256(model).hexdigest()
        if digest not in self._runners:
            self._runners[digest] = self._build([(model, feeds)])[0]
            while len(self._runners) > self.keep:
                self._runners.popitem(last=False)
        self._runners.move_to_end(digest)
        return self._runners[digest]

    def layer(self, model: bytes, feeds: Feeds, count: int) -> float:
        return self.layers([(model, feeds)], count)[0]

    def layers(self, items: list[tuple[bytes, Feeds]], count: int = 1) -> list[float]:
        """Best time (ms) of each small model (a layer sweep's batch), ``count`` independent
        measurements each: all sessions are built first (in parallel on the host's cores, so
        building never overlaps a timing), then timed in interleaved rounds
        (:func:`bench.best_of`). A subclass that overrides only :meth:`layer` is asked one
        model at a time."""
        if type(self).layer is not Local.layer:
            return [self.layer(m, f, count) for m, f in items]
        best = [float("inf")] * len(items)
        for _ in range(count):
            for lo, hi in self._chunks(items):
                got = bench.best_of(self._build(items[lo:hi]), max_rounds=self.rounds,
                                    round_ms=self.round_ms)
                best[lo:hi] = [min(a, b) for a, b in zip(best[lo:hi], got)]
        return best

    def _chunks(self, items: list[tuple[bytes, Feeds]]) -> list[tuple[int, int]]:
        """``[lo, hi)`` ranges of at most :attr:`batch` sessions and about :attr:`batch_bytes`
        of inputs alive at once (large batches of large layers)."""
        out, lo, size = [], 0, 0
        for k, (_, feeds) in enumerate(items):
            size += sum(v.nbytes for v in feeds.values())
            if k > lo and (k - lo >= self.batch or size > self.batch_bytes):
                out.append((lo, k))
                lo, size = k, sum(v.nbytes for v in feeds.values())
        return [*out, (lo, len(items))] if items else out

    def measure(self, model: bytes, feeds: Feeds, rounds: int = 30,
                warmup: int = 5) -> bench.Timing:
        return bench.measure(self.runner(model, feeds), rounds=rounds, warmup=warmup)

    def compare(self, a: bytes, b: bytes, feeds: Feeds, rounds: int = 30,
                warmup: int = 5) -> bench.Comparison:
        return bench.compare(self.runner(a, feeds), self.runner(b, feeds), rounds=rounds,
                             warmup=warmup)


def source_for(what: runtime.RuntimeConfig | LatencySource | None) -> LatencySource:
    """A latency source: ``what`` itself, or :class:`Local` for a runtime configuration."""
    if what is None or isinstance(what, runtime.RuntimeConfig):
        return Local(what)
    return what

