"""The measuring seam: every figure the tool quotes comes from a :class:`LatencySource`.

A *runner* is a model built for one runtime configuration with its feeds bound, timed by
:meth:`~onnxprune.runtimes.BaseRunner.time_once`; :func:`onnxprune.runtimes.runner` makes one
from model bytes on the registered runtime family the configuration names. A *latency source* turns model bytes
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
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from . import bench, runtimes
from .runtimes import BaseRunner, Feeds, RuntimeConfig


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

    def __init__(self, config: RuntimeConfig | None = None, rounds: int = 5,
                 round_ms: float = 0.5):
        self.config = config or RuntimeConfig()
        self.rounds, self.round_ms = rounds, round_ms
        self.builds = {"count": 0, "seconds": 0.0}
        self._runners: OrderedDict[str, BaseRunner] = OrderedDict()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_runners": OrderedDict()}

    def key(self) -> str:
        """Computed where the source runs (a pickled source names its new machine)."""
        return f"{self.config.key()}|{runtimes.device_name(self.config)}|{runtimes.version(self.config)}"

    def sweeper(self) -> Local:
        """This source with its family's cheap setting for layer sweeps (a quick algorithm
        search on device providers: a different cache key), or itself where there is none or
        the user chose one."""
        cheap = runtimes.family(self.config).sweep_options(self.config)
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
            runners = list(pool.map(lambda mf: runtimes.runner(mf[0], mf[1], self.config), items))
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


def source_for(what: RuntimeConfig | LatencySource | None) -> LatencySource:
    """A latency source: ``what`` itself, or :class:`Local` for a runtime configuration."""
    if what is None or isinstance(what, RuntimeConfig):
        return Local(what)
    return what

