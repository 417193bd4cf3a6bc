"""Benchmark models on an onnxruntime provider: warm-up, repeated rounds, robust statistics.

Speedups are quoted from *interleaved* rounds (A B A B ...): each round's ratio B/A is taken
under the same machine conditions, and the median of those ratios is the figure reported.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import onnx
import onnxruntime as ort

from . import runtime


@dataclass
class Timing:
    """Per-run latency statistics in milliseconds."""

    median_ms: float
    p90_ms: float
    min_ms: float
    spread: float  # (p90 - p10) / median
    runs: int

    @classmethod
    def of(cls, samples_ms: list[float]) -> Timing:
        a = np.asarray(samples_ms)
        med = float(np.median(a))
        p10, p90 = np.percentile(a, [10, 90])
        return cls(med, float(p90), float(a.min()), float((p90 - p10) / med) if med else 0.0, len(a))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Comparison:
    """A vs B from interleaved rounds; ``speedup`` = median over rounds of A/B."""

    a: Timing
    b: Timing
    speedup: float
    ratio_p10: float
    ratio_p90: float
    rounds: int


class Runner:
    """A reusable session plus feeds; :meth:`time_once` runs ``repeat`` times, returns ms/run.

    On device providers (CUDA, TensorRT) inputs and outputs are bound on the device with IO
    binding (onnxruntime OrtValues), so host<->device copies are not part of the figure."""

    def __init__(self, model: onnx.ModelProto | bytes | str | ort.InferenceSession,
                 feeds: dict[str, np.ndarray], config: runtime.RuntimeConfig | None = None):
        config = config or runtime.RuntimeConfig()
        self.session = model if isinstance(model, ort.InferenceSession) else runtime.session(model, config)
        self.feeds = feeds
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.binding = None
        if config.provider != "cpu":
            device_id = int(config.provider_options.get("device_id", 0))
            self.binding = self.session.io_binding()
            self._keep = []
            for name, value in feeds.items():
                ort_value = ort.OrtValue.ortvalue_from_numpy(value, "cuda", device_id)
                self._keep.append(ort_value)
                self.binding.bind_ortvalue_input(name, ort_value)
            for name in self.outputs:
                self.binding.bind_output(name, "cuda", device_id)

    def _run(self) -> None:
        if self.binding is None:
            self.session.run(self.outputs, self.feeds)
        else:
            self.session.run_with_iobinding(self.binding)
            self.binding.synchronize_outputs()

    def time_once(self, repeat: int = 1) -> float:
        start = time.perf_counter()
        for _ in range(repeat):
            self._run()
        return (time.perf_counter() - start) * 1e3 / repeat

    def calibrate(self, budget_ms: float = 10.0) -> int:
        """Runs per round so that one round lasts about ``budget_ms`` (at least 1)."""
        self.time_once()
        one = min(self.time_once() for _ in range(3))
        return max(1, int(budget_ms / max(one, 1e-3)))


def measure(runner: Runner, rounds: int = 30, warmup: int = 5, repeat: int | None = None) -> Timing:
    """Median/p90 over ``rounds`` rounds after ``warmup`` discarded runs."""
    for _ in range(warmup):
        runner.time_once()
    repeat = repeat or runner.calibrate()
    return Timing.of([runner.time_once(repeat) for _ in range(rounds)])


def compare(a: Runner, b: Runner, rounds: int = 30, warmup: int = 5) -> Comparison:
    """Interleave rounds A B A B (order alternating) and report the median per-round ratio."""
    for _ in range(warmup):
        a.time_once()
        b.time_once()
    repeat = max(1, min(a.calibrate(), b.calibrate()))
    ta, tb = [], []
    for k in range(rounds):
        pair = (a, b) if k % 2 == 0 else (b, a)
        got = [r.time_once(repeat) for r in pair]
        ta.append(got[0] if k % 2 == 0 else got[1])
        tb.append(got[1] if k % 2 == 0 else got[0])
    ratios = np.asarray(ta) / np.asarray(tb)
    p10, p90 = np.percentile(ratios, [10, 90])
    return Comparison(Timing.of(ta), Timing.of(tb), float(np.median(ratios)), float(p10), float(p90), rounds)
