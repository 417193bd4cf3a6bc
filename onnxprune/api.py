"""The front door the command line and the Python API share: one request per job, checked in
one place, run through the pipeline.

* :class:`PruneRequest` -> :func:`run` -> :class:`PruneRun` (``onnxprune prune`` and
  :func:`prune`): :meth:`PruneRequest.validate` holds every check of what was asked (modes,
  ranges, ``--shape``, ``--recover``, output paths), one line each, before any work is done;
  then preparation (:mod:`onnxprune.preparation`) and the search drivers
  (:mod:`onnxprune.pipeline`).
* :class:`FrontierRequest` -> :func:`frontier` (several operating points in one run),
  :class:`BenchRequest` -> :func:`bench` (one model's timing, or an interleaved A/B comparison
  and fidelity), :func:`profile_groups` (the groups ``onnxprune profile`` measures).

Nothing here prints or writes a file: callers hand the results to :mod:`onnxprune.report` and
:mod:`onnxprune.output`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import onnx

from . import backends, calib, fidelity, guard, load, profile, recover, runtimes
from .bench import Comparison, Timing
from .errors import OnnxPruneError
from .graph import Group
from .inputs import random_feeds
from .output import check_output_dir, check_output_path
from .pipeline import frontier as frontier_search
from .pipeline import prune_ratio, prune_to_target, prune_within_drop, quick_latency
from .preparation import Prepared, prepare
from .results import Outcome, PruneResult, TargetResult
from .sources import Options as DataOptions
from .sources import load_samples


def parse_recovery(text: str) -> tuple[str, ...]:
    """The recovery steps of ``--recover`` text (a comma list, or none)."""
    steps = tuple(s.strip() for s in text.split(",") if s.strip() and s.strip() != "none")
    unknown = set(steps) - set(recover.ALL_STEPS)
    if unknown:
        raise OnnxPruneError(f"--recover: unknown step(s) {sorted(unknown)}; use {', '.join(recover.ALL_STEPS)} or none")
    return steps


@dataclass
class PruneRequest:
    """One prune run as asked, by the command line or by :func:`prune`. :meth:`validate` holds
    every check of what was asked (one line each, before any work is done).

    ``calib_data`` / ``val_data``: anything :func:`onnxprune.sources.load_samples` reads (read
    as ``data_options`` says, each read announced to ``announce``). ``shapes``: a dict, or
    ``--shape NAME:DxD`` texts; ``recovery``: steps, or ``--recover`` text. ``connect``: makes
    the latency source (once preparation succeeded), instead of ``config``. ``outputs``: paths
    the caller will write, checked up front. ``latency``: ratio mode also times the model."""

    model: onnx.ModelProto | str
    target_ms: float | None = None
    speedup: float | None = None
    ratio: float | None = None
    max_drop: float | None = None
    calib_data: Any = None
    val_data: Any = None
    evaluate: Callable[[str], float] | None = None
    recovery: tuple[str, ...] | str = recover.STEPS
    importance: str = "auto"
    config: runtimes.RuntimeConfig | backends.LatencySource | None = None
    connect: Callable[[], backends.LatencySource] | None = None
    shapes: dict[str, tuple[int, ...]] | tuple[str, ...] | None = None
    floor: float = 0.25
    method: str = "knapsack"
    exclude: list[str] | tuple[str, ...] | None = None
    cache_path: str | None = None
    value: str = "sensitivity"
    distill_seconds: float = recover.DISTILL_SECONDS
    stages: int = 1
    data_options: DataOptions | None = None
    outputs: tuple[str, ...] = ()
    latency: bool = False
    progress: bool = False
    announce: Callable[[str], None] | None = None

    def validate(self) -> PruneRequest:
        """The request checked, with ``shapes`` and ``recovery`` parsed; the first problem
        raises OnnxPruneError with its one line."""
        modes = [v for v in (self.target_ms, self.speedup, self.ratio) if v is not None]
        if len(modes) > 1 or not modes and self.max_drop is None:
            raise OnnxPruneError("say how much to prune: exactly one of --target-ms, --speedup, --ratio "
                                 "(or --max-drop alone for the fastest model within it)")
        if self.ratio is not None and not 0.0 <= self.ratio < 1.0:
            raise OnnxPruneError(f"--ratio must be in [0, 1), got {self.ratio}")
        if self.speedup is not None and self.speedup <= 0:
            raise OnnxPruneError(f"--speedup must be positive, got {self.speedup}")
        if self.target_ms is not None and self.target_ms <= 0:
            raise OnnxPruneError(f"--target-ms must be positive, got {self.target_ms}")
        shapes = _shapes(self.shapes)
        for path in self.outputs:
            check_output_path(path, self.model if isinstance(self.model, str) else None)
        steps = parse_recovery(self.recovery) if isinstance(self.recovery, str) else self.recovery
        if self.max_drop is not None and self.calib_data is None and self.evaluate is None:
            raise OnnxPruneError("--max-drop needs calibration data (--calib data.npz)")
        if self.stages < 1:
            raise OnnxPruneError(f"--stages must be at least 1, got {self.stages}")
        if self.ratio is None:
            _check_floor(self.floor)
        return replace(self, shapes=shapes, recovery=steps)

    def source(self) -> backends.LatencySource | None:
        """The latency source; None in ratio mode without ``latency``."""
        if self.ratio is not None and not self.latency:
            return None
        return self.connect() if self.connect is not None else backends.source_for(self.config)


@dataclass
class PruneRun:
    """What :func:`run` made of a request: the preparation, the latency source, the result
    (a :class:`PruneResult` by ratio, else a :class:`TargetResult`) and, once :meth:`time`
    ran, the ratio mode's interleaved timing against the original."""

    request: PruneRequest
    prep: Prepared
    source: backends.LatencySource | None
    result: PruneResult | TargetResult
    latency: Comparison | None = None

    @property
    def already_met(self) -> bool:
        return isinstance(self.result, TargetResult) and self.result.already_met

    @property
    def model(self) -> onnx.ModelProto:
        """The model to write: the pruned one, or the original when it already met the target."""
        if isinstance(self.result, TargetResult):
            return self.prep.original if self.result.already_met else self.result.result.model
        return self.result.model

    def time(self) -> None:
        """Ratio mode with a latency source: time the pruned model against the original."""
        if self.request.ratio is not None and self.source is not None:
            self.latency = quick_latency(self.prep, self.result.model, self.source)

    def outcome(self) -> Outcome:
        if self.request.ratio is not None:
            return Outcome(self.model, {"ratio": self.request.ratio, **self.result.to_dict()}, self.result)
        return Outcome(self.model, self.result.to_dict(self.prep.graph), self.result)


def run(request: PruneRequest) -> PruneRun:
    """Validate ``request``, prepare its model and data, then prune by ratio, to a target, or
    to the fastest measured model within ``max_drop``."""
    req = request.validate()
    loaded = load.load_model(req.model) if isinstance(req.model, str) else req.model
    prep = prepare(loaded, req.shapes, req.importance, req.exclude,
                   _read(req.calib_data, loaded, req, "--calib"), _read(req.val_data, loaded, req, "--val"))
    source = req.source()
    if req.ratio is not None:
        result = prune_ratio(prep, req.ratio, req.recovery, req.evaluate, req.max_drop,
                             req.distill_seconds)
        return PruneRun(req, prep, source, result)
    settings = {"steps": req.recovery, "evaluate": req.evaluate, "distill_seconds": req.distill_seconds,
                "floor": req.floor, "value": req.value, "progress": req.progress,
                "cache_path": req.cache_path or profile.default_cache_path()}
    if req.target_ms is None and req.speedup is None:
        return PruneRun(req, prep, source, prune_within_drop(prep, source, req.max_drop, **settings))
    return PruneRun(req, prep, source, prune_to_target(prep, source, req.target_ms, req.speedup,
                                                       method=req.method, max_drop=req.max_drop,
                                                       stages=req.stages, **settings))


def prune(model: onnx.ModelProto | str, *, target_ms: float | None = None,
          speedup: float | None = None, ratio: float | None = None,
          calib: Any = None, evaluate: Callable[[str], float] | None = None,
          max_drop: float | None = None, recovery: tuple[str, ...] = recover.STEPS,
          importance: str = "auto",
          config: runtimes.RuntimeConfig | backends.LatencySource | None = None,
          shapes: dict[str, tuple[int, ...]] | None = None, floor: float = 0.25,
          method: str = "knapsack", exclude: list[str] | None = None,
          cache_path: str | None = None, value: str = "sensitivity",
          distill_seconds: float = recover.DISTILL_SECONDS, val: Any = None, stages: int = 1,
          data_options: DataOptions | None = None) -> Outcome:
    """Prune ``model`` (proto or path) to a latency target, a speedup or a ratio; or, with
    ``max_drop`` alone, to the fastest measured model within that fidelity drop (a
    :class:`PruneRequest` run by :func:`run`).

    ``calib``: anything :func:`onnxprune.sources.load_samples` reads: a path (.npz, image
    folder / glob / list, sentences with ``data_options.tokenizer``; images preprocessed as
    ``data_options`` says), an onnxruntime ``CalibrationDataReader`` (``get_next()``), an
    iterable of feed dicts (each with a batch axis) or a dict of arrays; it enables
    reconstruction selection, measured sensitivity, recovery and fidelity (without it, cuts are
    ranked on synthetic images and accuracy is not checked). ``val``: the same kinds of data,
    disjoint from ``calib``: fidelity (and ``max_drop``) are then judged on it. ``evaluate(model_path) -> float`` is
    the pipeline's own metric (higher is better); ``max_drop`` bounds its drop (or, without it,
    the loss of top-1 agreement). ``config``: the deployment runtime measured here (default ORT
    CPU, 1 thread) or a latency source (:class:`onnxprune.remote.RaySource` to measure on other
    machines). ``stages``: progressive pruning in that many steps. Raises OnnxPruneError with
    a one-line reason on failure."""
    return run(PruneRequest(model, target_ms=target_ms, speedup=speedup, ratio=ratio,
                            max_drop=max_drop, calib_data=calib, val_data=val, evaluate=evaluate,
                            recovery=recovery, importance=importance, config=config, shapes=shapes,
                            floor=floor, method=method, exclude=exclude, cache_path=cache_path,
                            value=value, distill_seconds=distill_seconds, stages=stages,
                            data_options=data_options)).outcome()


def _check_floor(floor: float) -> None:
    """The share of a group's width a search may go down to: in (0, 1]."""
    if not 0.0 < floor <= 1.0:
        raise OnnxPruneError(f"--floor must be in (0, 1], got {floor}")


def _shapes(shapes: dict[str, tuple[int, ...]] | tuple[str, ...] | list[str] | None):
    """``--shape NAME:DxD`` texts parsed; a dict (or None) as given."""
    return load.parse_shape_overrides(shapes) if isinstance(shapes, (tuple, list)) else shapes


def _read(data: Any, model: onnx.ModelProto, req, what: str) -> calib.Samples | None:
    """Samples from ``data`` for ``model`` as ``req.data_options`` says (None without data)."""
    if data is None:
        return None
    return load_samples(data, model, req.data_options, req.shapes, what, req.announce)


@dataclass
class FrontierRequest:
    """Several operating points in one run (``onnxprune frontier``). ``speedups``: numbers, or
    the ``--speedups`` comma text; ``output_dir``: where the caller writes one model per point;
    other fields as in :class:`PruneRequest`."""

    model: onnx.ModelProto | str
    speedups: str | list[float]
    calib_data: Any = None
    recovery: tuple[str, ...] | str = recover.STEPS
    floor: float = 0.25
    output_dir: str | None = None
    outputs: tuple[str, ...] = ()
    cache_path: str | None = None
    connect: Callable[[], backends.LatencySource] | None = None
    shapes: dict[str, tuple[int, ...]] | tuple[str, ...] | None = None
    data_options: DataOptions | None = None
    announce: Callable[[str], None] | None = None

    def validate(self) -> FrontierRequest:
        """The request checked, speedups sorted, ``shapes`` and ``recovery`` parsed."""
        wanted = self.speedups
        if isinstance(wanted, str):
            try:
                wanted = [float(v) for v in wanted.split(",") if v.strip()]
            except ValueError:
                wanted = []
        if not wanted or min(wanted) <= 1.0:
            raise OnnxPruneError(f"--speedups must be a comma list of numbers above 1, got {self.speedups!r}")
        if self.output_dir:
            check_output_dir(self.output_dir)
        for path in self.outputs:
            check_output_path(path, self.model if isinstance(self.model, str) else None)
        _check_floor(self.floor)
        steps = parse_recovery(self.recovery) if isinstance(self.recovery, str) else self.recovery
        return replace(self, speedups=sorted(wanted), recovery=steps, shapes=_shapes(self.shapes))


@dataclass
class FrontierRun:
    """What :func:`frontier` made: one :class:`TargetResult` per speedup (ascending)."""

    request: FrontierRequest
    prep: Prepared
    source: backends.LatencySource
    results: list[TargetResult]


def frontier(request: FrontierRequest) -> FrontierRun:
    """Validate ``request``, prepare once, then search every operating point."""
    req = request.validate()
    loaded = load.load_model(req.model) if isinstance(req.model, str) else req.model
    prep = prepare(loaded, req.shapes, calib_data=_read(req.calib_data, loaded, req, "--calib"))
    source = req.connect() if req.connect is not None else backends.source_for(None)
    results = frontier_search(prep, source, req.speedups, floor=req.floor, steps=req.recovery,
                              cache_path=req.cache_path or profile.default_cache_path())
    return FrontierRun(req, prep, source, results)


@dataclass
class BenchRequest:
    """Time ``model_a``, or compare it with ``model_b`` in interleaved rounds (``onnxprune
    bench``); with ``data``, also B's fidelity to A on those inputs."""

    model_a: str
    model_b: str | None = None
    rounds: int = 30
    warmup: int = 5
    data: Any = None
    shapes: tuple[str, ...] | dict[str, tuple[int, ...]] | None = None
    data_options: DataOptions | None = None
    connect: Callable[[], backends.LatencySource] | None = None
    announce: Callable[[str], None] | None = None


@dataclass
class BenchRun:
    """``timing`` (one model), or ``comparison`` and, with data, ``fidelity`` of B to A on
    ``samples`` inputs."""

    timing: Timing | None = None
    comparison: Comparison | None = None
    fid: fidelity.Fidelity | None = None
    samples: int = 0


def bench(req: BenchRequest) -> BenchRun:
    """Check ``req`` (rounds, the model, ``--shape``, the data and the memory it needs), then
    time: one model's rounds, or the two models interleaved on the same feeds."""
    if req.rounds < 3:
        raise OnnxPruneError("--rounds must be at least 3")
    first = load.load_model(req.model_a)
    req = replace(req, shapes=_shapes(req.shapes))
    samples = _read(req.data, first, req, "--data")
    shapes = calib.shapes_from(first, samples, req.shapes)
    guard.check(first, shapes, samples, req.shapes)
    feeds = random_feeds(first, shapes)
    source = req.connect() if req.connect is not None else backends.source_for(None)
    if req.model_b is None:
        return BenchRun(timing=source.measure(first.SerializeToString(), feeds, req.rounds, req.warmup))
    second = load.load_model(req.model_b)
    cmp = source.compare(first.SerializeToString(), second.SerializeToString(), feeds, req.rounds,
                         req.warmup)
    if samples is None:
        return BenchRun(comparison=cmp)
    fid = fidelity.fidelity(fidelity.outputs_on(first, samples), second, samples)
    return BenchRun(comparison=cmp, fid=fid, samples=calib.count(samples))


def profile_groups(prep: Prepared, group_ids: tuple[int, ...] = ()) -> list[Group]:
    """The prunable groups ``onnxprune profile`` measures: all, or those of ``group_ids`` (an
    id that is not a prunable group is refused)."""
    groups = prep.graph.prunable_groups()
    if group_ids:
        unknown = set(group_ids) - {g.id for g in groups}
        if unknown:
            raise OnnxPruneError(f"--group {sorted(unknown)}: not prunable group ids")
        groups = [g for g in groups if g.id in group_ids]
    return groups
