"""Benchmark statistics on any runner: warm-up until settled, repeated rounds, robust statistics.

Speedups are quoted from *interleaved* rounds (A B A B ...): each round's ratio B/A is taken
under the same machine conditions, and the median of those ratios is the figure reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np


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


class Runner(Protocol):
    """A built model with its feeds bound (see :mod:`onnxprune.backends`)."""

    def time_once(self, repeat: int = 1) -> float:
        """Run ``repeat`` times; milliseconds per run."""

    def calibrate(self, budget_ms: float = 10.0) -> int:
        """Runs per round so that one round lasts about ``budget_ms``."""


def warm_up(runner: Runner, runs: int = 5, max_runs: int = 100, tol: float = 0.03) -> list[float]:
    """Run until timings settle: the median of the last ``runs`` runs is within ``tol`` of the
    ``runs`` before (first runs are slow: allocations, cuDNN algorithm search, TensorRT engine
    builds, GPU clocks), at most ``max_runs`` runs. Returns the times of the runs (ms)."""
    times: list[float] = []
    while len(times) < max_runs:
        times.append(runner.time_once())
        if len(times) >= 2 * runs:
            last, before = np.median(times[-runs:]), np.median(times[-2 * runs:-runs])
            if last >= before * (1 - tol):
                break
    return times


def best_of(runners: list[Runner], min_rounds: int = 2, max_rounds: int = 5,
            round_ms: float = 0.5, settle: float = 0.02, unsettled: float = 0.1,
            warmup: int = 2) -> list[float]:
    """Best time per run (ms) of each runner from interleaved rounds (a layer sweep's batch).

    Each runner is warmed up until settled (:func:`warm_up`), which also sizes its rounds to
    about ``round_ms``; then every round runs each runner once, the order rotating, so a burst
    of load on the machine falls on all of them alike. Rounds stop after ``min_rounds`` once a
    round improved the best of at most an ``unsettled`` share of the runners by more than
    ``settle`` (relative), at most ``max_rounds``: a quiet machine pays for few rounds, a busy
    one gets more."""
    repeats = [max(1, int(round_ms / max(min(warm_up(r, warmup)), 1e-4))) for r in runners]
    best = [float("inf")] * len(runners)
    for k in range(max_rounds):
        moved = 0
        for i in np.roll(np.arange(len(runners)), -k):
            t = runners[i].time_once(repeats[i])
            moved += t < best[i] * (1 - settle)
            best[i] = min(best[i], t)
        if k + 1 >= min_rounds and moved <= unsettled * len(runners):
            break
    return best


def measure(runner: Runner, rounds: int = 30, warmup: int = 5, repeat: int | None = None) -> Timing:
    """Median/p90 over ``rounds`` rounds after warm-up (at least ``2 * warmup`` runs)."""
    warm_up(runner, warmup)
    repeat = repeat or runner.calibrate()
    return Timing.of([runner.time_once(repeat) for _ in range(rounds)])


def compare(a: Runner, b: Runner, rounds: int = 30, warmup: int = 5) -> Comparison:
    """Interleave rounds A B A B (order alternating) and report the median per-round ratio."""
    warm_up(a, warmup)
    warm_up(b, warmup)
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
