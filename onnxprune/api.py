"""The front door the command line and the Python API share: one typed job
(:class:`onnxprune.job.Job`, checked in one place) per run, run through the pipeline. Every
command goes through here.

* :func:`run_prune` -> :class:`PruneRun` (``onnxprune prune`` and :func:`prune`, whose
  keywords :meth:`Job.of <onnxprune.job.Job.of>` maps onto the job): :meth:`Job.validate`
  holds every check of what was asked, one line each, before any work is done; then
  preparation (:mod:`onnxprune.preparation`) and the search drivers (:mod:`onnxprune.pipeline`).
* :func:`run_frontier` (several operating points in one run), :func:`analyze` (the channel
  groups), :func:`profile` (the groups' latency staircases), :class:`BenchRequest` ->
  :func:`bench` (one model's timing, or an interleaved A/B comparison and fidelity).
* :func:`read_data`: the one door through which calibration, validation and bench data are read.

Nothing here prints or writes a file: callers hand the results to :mod:`onnxprune.report` and
:mod:`onnxprune.output`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import onnx

from . import backends, calib, fidelity, guard, load, ops, quantize, sensitivity
from . import profile as profiling
from .bench import Comparison, Timing
from .errors import OnnxPruneError
from .graph import Group
from .inputs import random_feeds
from .job import Job, parse_shapes
from .pipeline import (
    prune_ratio,
    prune_to_target,
    prune_within_drop,
    quick_latency,
    search_frontier,
    sensitivity_grid,
)
from .preparation import Prepared, prepare
from .results import Outcome, PruneResult, TargetResult
from .sources import Options as DataOptions
from .sources import load_samples


@dataclass
class PruneRun:
    """What :func:`run_prune` made of a job: the preparation, the latency source, the result
    (a :class:`PruneResult` by ratio, else a :class:`TargetResult`) and, once :meth:`time`
    ran, the ratio mode's interleaved timing against the original."""

    job: Job
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
        if self.job.target.ratio is not None and self.source is not None:
            self.latency = quick_latency(self.prep, self.result.model, self.source)

    def outcome(self) -> Outcome:
        if self.job.target.ratio is not None:
            return Outcome(self.model, {"ratio": self.job.target.ratio, **self.result.to_dict()}, self.result)
        return Outcome(self.model, self.result.to_dict(self.prep.graph), self.result)


def read_data(spec: Any, model: onnx.ModelProto, options: DataOptions | None = None,
              shapes: dict[str, tuple[int, ...]] | None = None, what: str = "--calib",
              announce: Callable[[str], None] | None = None) -> calib.Samples | None:
    """The one door for data: samples from ``spec`` (anything
    :func:`onnxprune.sources.load_samples` reads) for ``model``, read as ``options`` says and
    announced to ``announce``; None without a spec."""
    if spec is None:
        return None
    return load_samples(spec, model, options, shapes, what, announce)


def _prepare(job: Job, importance: str = "auto", exclude=None, val: bool = False) -> Prepared:
    """Load the job's model, read its data through :func:`read_data` and prepare."""
    data = job.data
    loaded = load.load_model(job.model) if isinstance(job.model, str) else job.model
    samples = read_data(data.calib, loaded, data.options, data.shapes, "--calib", data.announce)
    held = read_data(data.val, loaded, data.options, data.shapes, "--val", data.announce) if val else None
    return prepare(loaded, data.shapes, importance, exclude, samples, held, job.deployment.precision)


def _source(job: Job) -> backends.LatencySource | None:
    """The latency source; None in ratio mode without ``search.latency``."""
    if job.target.ratio is not None and not job.search.latency:
        return None
    return job.deployment.source()


def _cached(job: Job) -> Job:
    """The job with its profile cache path filled in (the default one)."""
    return replace(job, search=replace(job.search,
                                       cache_path=job.search.cache_path or profiling.default_cache_path()))


def run_prune(job: Job) -> PruneRun:
    """Validate ``job``, prepare its model and data, then prune by ratio, to a target, or
    to the fastest measured model within ``max_drop``."""
    job = job.validate()
    prep = _prepare(job, job.goal.importance, list(job.goal.exclude) or None, val=True)
    source = _source(job)
    if job.target.ratio is not None:
        return PruneRun(job, prep, source, prune_ratio(prep, job))
    job = _cached(job)
    if not job.target.latency:
        return PruneRun(job, prep, source, prune_within_drop(prep, source, job))
    return PruneRun(job, prep, source, prune_to_target(prep, source, job))


def prune(model: onnx.ModelProto | str, **kw) -> Outcome:
    """Prune ``model`` (proto or path) to a latency target, a speedup or a ratio; or, with
    ``max_drop`` alone, to the fastest measured model within that fidelity drop (the
    :class:`onnxprune.job.Job` of :meth:`Job.of <onnxprune.job.Job.of>` run by
    :func:`run_prune`). Keywords: ``target_ms``, ``speedup``, ``ratio``, ``calib``,
    ``evaluate``, ``max_drop``, ``recovery``, ``importance``, ``config``, ``shapes``,
    ``floor``, ``method``, ``exclude``, ``cache_path``, ``value``, ``distill_seconds``,
    ``val``, ``stages``, ``data_options``.

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
    unknown = sorted(set(kw) - PRUNE_KEYWORDS)
    if unknown:
        raise TypeError(f"prune() got unexpected keyword argument(s) {', '.join(unknown)}")
    return run_prune(Job.of(model, **kw)).outcome()


PRUNE_KEYWORDS = {"target_ms", "speedup", "ratio", "calib", "evaluate", "max_drop", "recovery",
                  "importance", "config", "shapes", "floor", "method", "exclude", "cache_path",
                  "value", "distill_seconds", "val", "stages", "data_options"}


@dataclass
class FrontierRun:
    """What :func:`run_frontier` made: one :class:`TargetResult` per speedup (ascending)."""

    job: Job
    prep: Prepared
    source: backends.LatencySource
    results: list[TargetResult]


def run_frontier(job: Job) -> FrontierRun:
    """Validate ``job`` (its ``goal.speedups``), prepare once, then search every operating
    point."""
    job = _cached(job.validate_frontier())
    prep = _prepare(job)
    source = job.deployment.source()
    return FrontierRun(job, prep, source, search_frontier(prep, source, job))


@dataclass
class AnalyzeRun:
    """What :func:`analyze` made: the preparation, and for a QDQ model the precision of each
    weight-bearing node (``precisions``, :func:`onnxprune.quantize.dequantized`; empty for a
    float model); :meth:`grid` measures the sensitivity table ``analyze --plot`` draws."""

    prep: Prepared
    precisions: dict[str, str] = field(default_factory=dict)

    def grid(self) -> tuple[sensitivity.Table, bool]:
        return sensitivity_grid(self.prep)


def analyze(job: Job) -> AnalyzeRun:
    """Prepare ``job``'s model (its importance, calibration data and shapes) for the analysis
    table; a QDQ model is analysed as the float model it stands for, its nodes' precisions
    kept."""
    job = replace(job, data=replace(job.data, shapes=parse_shapes(job.data.shapes)))
    model = load.load_model(job.model) if isinstance(job.model, str) else job.model
    precisions: dict[str, str] = {}
    if set(ops.quantized_ops(model.graph)) & set(quantize.QDQ_OPS):
        model, precisions = quantize.dequantized(model)
    return AnalyzeRun(_prepare(replace(job, model=model), job.goal.importance), precisions)


@dataclass
class ProfileRun:
    """What :func:`profile` measured: the preparation, the latency source, the curves."""

    prep: Prepared
    source: backends.LatencySource
    run: profiling.ProfileRun


def profile(job: Job, group_ids: tuple[int, ...] = (), no_cache: bool = False,
                rel_tol: float = 0.05) -> ProfileRun:
    """Each prunable group's latency staircase (all groups, or ``group_ids``) on the job's
    deployment; ``no_cache``: measure everything again, store nothing."""
    job.deployment.check(auto=False)
    prep = prepare(job.model, parse_shapes(job.data.shapes))
    groups = profile_groups(prep, group_ids)
    source = job.deployment.source()
    cache = profiling.Cache(None if no_cache else (job.search.cache_path or profiling.default_cache_path()),
                          source.key())
    run = profiling.profile_model(prep.graph, source, cache, groups, rel_tol=rel_tol,
                                progress=job.search.progress, precision=job.deployment.precision)
    return ProfileRun(prep, source, run)


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
    precisions: tuple[str, str] = ("fp32", "fp32")  # what A and B compute their weights in


def bench(req: BenchRequest) -> BenchRun:
    """Check ``req`` (rounds, the model, ``--shape``, the data and the memory it needs), then
    time: one model's rounds, or the two models interleaved on the same feeds."""
    if req.rounds < 3:
        raise OnnxPruneError("--rounds must be at least 3")
    first = load.load_model(req.model_a)
    req = replace(req, shapes=parse_shapes(req.shapes))
    samples = read_data(req.data, first, req.data_options, req.shapes, "--data", req.announce)
    shapes = calib.shapes_from(first, samples, req.shapes)
    guard.check(first, shapes, samples, req.shapes)
    feeds = random_feeds(first, shapes)
    source = req.connect() if req.connect is not None else backends.source_for(None)
    if req.model_b is None:
        return BenchRun(timing=source.measure(first.SerializeToString(), feeds, req.rounds, req.warmup))
    second = load.load_model(req.model_b)
    cmp = source.compare(first.SerializeToString(), second.SerializeToString(), feeds, req.rounds,
                         req.warmup)
    kinds = (quantize.weight_precision(first), quantize.weight_precision(second))
    if samples is None:
        return BenchRun(comparison=cmp, precisions=kinds)
    fid = fidelity.fidelity(fidelity.outputs_on(first, samples), second, samples)
    return BenchRun(comparison=cmp, fid=fid, samples=calib.count(samples), precisions=kinds)


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
