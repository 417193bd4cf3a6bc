"""The pipeline the CLI and the Python API share: load -> normalise -> graph -> importance ->
plan -> rewrite -> verify -> write."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from . import (
    backends,
    bench,
    calib,
    guard,
    load,
    profile,
    recover,
    runtime,
    search,
    sensitivity,
    verify,
)
from .calib import from_feeds
from .errors import OnnxPruneError
from .graph import ChannelGraph, build_graph, matches, trace
from .importance import KINDS, activation_importance, weight_importance
from .results import Outcome, PruneResult, Quality, TargetResult
from .rewrite import PrunePlan, apply_plan, ratio_plan
from .stats import macs, param_count


@dataclass
class Prepared:
    """A loaded model, its canonical form and channel graph, and the feeds used to check it."""

    original: onnx.ModelProto
    model: onnx.ModelProto
    graph: ChannelGraph
    feeds: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    calib: calib.Samples | None = None
    stats: dict[str, sensitivity.ConsumerStats] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    def reference(self) -> dict[str, np.ndarray]:
        """The unpruned model's outputs on ``feeds`` (computed once)."""
        if "ref" not in self._cache:
            self._cache["ref"] = runtime.run(self.model, self.feeds)
        return self._cache["ref"]

    def held_out(self) -> tuple[calib.Samples, calib.Samples, dict[str, np.ndarray]]:
        """(fit samples, held-out samples, unpruned outputs on the held-out ones), computed once."""
        if "held" not in self._cache:
            fit, held = calib.split(self.calib)
            self._cache["held"] = (fit, held, verify.outputs_on(self.model, held))
        return self._cache["held"]

    def value_samples(self, limit: int = 48) -> tuple[calib.Samples, bool]:
        """Samples the sensitivity table is measured on, and whether they are synthetic: up to
        ``limit`` samples of the second half of the fit part (the table's local refits are
        solved on the first half), or smooth random images without calibration data."""
        if self.calib is not None:
            second = calib.halves(calib.split(self.calib)[0])[1]
            step = max(1, calib.count(second) // limit)  # spread over the half, not its edge
            return {k: v[::step][:limit] for k, v in second.items()}, False
        if "synthetic" not in self._cache:
            self._cache["synthetic"] = calib.synthetic(self.model, min(limit, 32), self.shapes)
        return self._cache["synthetic"], True

    def baseline_metric(self, evaluate: Callable[[str], float]) -> float:
        """The user's metric on the unpruned model (computed once per callable)."""
        key = ("metric", id(evaluate))
        if key not in self._cache:
            self._cache[key] = verify.evaluate_model(self.model, evaluate)
        return self._cache[key]


def prepare(model: onnx.ModelProto | str, shapes: dict[str, tuple[int, ...]] | None = None,
            importance: str = "auto", exclude: list[str] | None = None,
            calib_data: calib.Samples | str | None = None) -> Prepared:
    """Load (from a path) and normalise a model, build its channel graph and choose which
    channels go first (``importance``: l1 / l2 weight norms; activation; reconstruction, the
    least-squares refit cost on calibration data; auto = reconstruction with calibration data,
    else l1). Groups whose name or member nodes match an ``exclude`` pattern are frozen.
    Dynamic input axes take the calibration samples' sizes unless ``shapes`` sets them
    (:func:`onnxprune.calib.shapes_from`): latency is measured at the calibrated length."""
    if importance not in KINDS:
        raise OnnxPruneError(f"--importance must be one of {', '.join(KINDS)}")
    original = load.load_model(model) if isinstance(model, str) else model
    if isinstance(calib_data, str):  # the cost guard comes before anything is loaded or run
        guard.check_npz(calib_data)
    samples = calib.load_npz(calib_data, original) if isinstance(calib_data, str) else calib_data
    user_shapes, shapes = shapes, calib.shapes_from(original, samples, shapes) or None
    guard.check(original, shapes, samples, user_shapes)
    if samples is not None:  # fit part ordered by content: its two halves differ in content
        fit, held = calib.split(samples)
        fit = calib.by_content(fit, verify.outputs_on(original, fit))
        samples = {k: np.concatenate([fit[k], held[k]]) for k in samples}
    if importance == "auto":
        importance = "reconstruction" if samples is not None else "l1"
    if importance in ("activation", "reconstruction") and samples is None:
        raise OnnxPruneError(f"--importance {importance} needs calibration data (--calib data.npz)")
    normalised = load.normalise(original, shapes)
    graph = build_graph(normalised, shapes)
    for group in graph.groups:
        names = [s.node for s in group.sources] + [p.node for p in group.members]
        if exclude and any(matches(n, exclude) for n in names):
            group.frozen = [r or "excluded by --exclude" for r in group.frozen]
    stats: dict[str, sensitivity.ConsumerStats] = {}
    if importance == "activation":
        activation_importance(graph, calib.split(samples)[0])
    else:
        weight_importance(graph, "l1" if importance == "reconstruction" else importance)
    if importance == "reconstruction":
        stats = sensitivity.consumer_stats(graph, calib.split(samples)[0])
        sensitivity.select_by_reconstruction(graph, stats)
    return Prepared(original, normalised, graph, runtime.random_feeds(normalised, shapes),
                    shapes or {}, samples, stats)


def finish(prep: Prepared, plan: PrunePlan, steps: tuple[str, ...] = recover.STEPS,
           evaluate: Callable[[str], float] | None = None,
           distill_seconds: float = 60.0) -> PruneResult:
    """Apply ``plan``, prove its index maps (zero-filter check), run the recovery ``steps`` when
    calibration data is present, verify the result (checker, onnxruntime, output shapes) and
    measure fidelity and statistics. Groups whose rewrite cannot be proven are left unpruned
    (found by :func:`onnxprune.verify.prove`, remembered on ``prep``) and listed in
    ``PruneResult.frozen``; recovery that breaks the proven model is dropped (its reason in the
    recovery report) and the proven model goes on."""
    unproven: dict[int, str] = prep._cache.setdefault("unproven", {})
    plan = PrunePlan({k: v for k, v in plan.keep.items() if k not in unproven})
    proof = verify.check_plan(prep.graph, plan, prep.feeds)
    if proof.why:  # never fail whole: leave the groups that break the proof unpruned, list them
        plan, failures = verify.prove(prep.graph, plan, prep.feeds)
        unproven.update(failures)
        proof = verify.check_plan(prep.graph, plan, prep.feeds)
    proven, err = proof.model, proof.error
    try:
        pruned, quality = _polish(prep, plan, proven, steps, evaluate, distill_seconds)
        load.export_form(pruned)  # recovery may have added initializers (biases)
        verify.check_model(pruned, prep.feeds, prep.reference())
    except OnnxPruneError as exc:  # recovery broke the proven model: keep that one, say why
        if not steps or prep.calib is None or not plan.removed(prep.graph):
            raise
        pruned, quality = _polish(prep, plan, proven, (), evaluate, distill_seconds)
        quality.recovery = recover.RecoveryReport(
            steps=[{"step": ",".join(steps), "kept": False, "why": str(exc)}])
        load.export_form(pruned)
        verify.check_model(pruned, prep.feeds, prep.reference())
    after_graph_shapes = trace(pruned, prep.shapes)[0]
    return PruneResult(
        pruned, plan, param_count(prep.model), param_count(pruned),
        macs(prep.model, prep.graph.shapes), macs(pruned, after_graph_shapes),
        err, sum(len(v) for v in plan.removed(prep.graph).values()), quality,
        sorted(unproven.items()),
    )


def _polish(prep: Prepared, plan: PrunePlan, pruned: onnx.ModelProto, steps: tuple[str, ...],
            evaluate: Callable[[str], float] | None,
            distill_seconds: float) -> tuple[onnx.ModelProto, Quality]:
    """Recovery and fidelity on held-out calibration data (the last quarter of it)."""
    quality = Quality()
    if evaluate is not None:
        quality.baseline_metric = prep.baseline_metric(evaluate)
    if prep.calib is None:
        if evaluate is not None:
            metric = verify.evaluate_model(pruned, evaluate)
            quality.fidelity = verify.Fidelity(None, {}, {}, metric)
            quality.drop = quality.baseline_metric - metric
        return pruned, quality
    fit, held, reference = prep.held_out()
    if steps and plan.removed(prep.graph):
        pruned, quality.recovery = recover.recover(prep.graph, plan, pruned, fit, held, reference,
                                                   steps, distill_seconds)
    done = quality.recovery.final if quality.recovery is not None and evaluate is None else None
    quality.fidelity = done or verify.fidelity(reference, pruned, held, evaluate)
    quality.drop = quality.fidelity.drop(quality.baseline_metric)
    return pruned, quality


def prune_ratio(prep: Prepared, ratio: float, steps: tuple[str, ...] = recover.STEPS,
                evaluate: Callable[[str], float] | None = None,
                max_drop: float | None = None, distill_seconds: float = 60.0) -> PruneResult:
    """Remove the ``ratio`` first-to-go channels of every prunable group."""
    if not 0.0 <= ratio < 1.0:
        raise OnnxPruneError(f"--ratio must be in [0, 1), got {ratio}")
    result = finish(prep, ratio_plan(prep.graph, ratio), steps, evaluate, distill_seconds)
    if max_drop is not None and result.quality.drop is not None and result.quality.drop > max_drop:
        raise OnnxPruneError(f"fidelity drop {result.quality.drop:.4f} exceeds --max-drop {max_drop}")
    return result


@dataclass
class Search:
    """What every latency-targeted run shares: the baseline, the measured options, and how to
    build, measure and judge a candidate (widths per group)."""

    prep: Prepared
    source: backends.LatencySource
    base: bytes  # the unpruned model, serialised once
    baseline_ms: float
    choices: list[search.Choice]
    table: sensitivity.Table | None
    synthetic: bool
    profile_seconds: float
    steps: tuple[str, ...] = recover.STEPS
    evaluate: Callable[[str], float] | None = None
    distill_seconds: float = 60.0
    points: list[dict] = field(default_factory=list)
    _point_of: dict[int, dict] = field(default_factory=dict, repr=False)

    def measure(self, widths: dict[int, int]) -> float:
        """Measured latency (ms) of the pruned model, interleaved with the original."""
        model = apply_plan(self.prep.graph, search.plan_for(self.prep.graph, widths))
        cmp = self.source.compare(self.base, model.SerializeToString(), self.prep.feeds, rounds=30)
        return self.baseline_ms / cmp.speedup

    def finish(self, widths: dict[int, int], ms: float) -> PruneResult:
        """Build, recover and judge a candidate; it joins the measured trade-off ``points``."""
        result = finish(self.prep, search.plan_for(self.prep.graph, widths), self.steps,
                        self.evaluate, self.distill_seconds)
        fid = result.quality.fidelity
        point = {
            "ms": ms, "speedup": self.baseline_ms / ms, "drop": result.quality.drop,
            "agreement": fid.agreement if fid else None, "top5": fid.top5 if fid else None,
            "distortion": fid.distortion if fid else None,
            "predicted_distortion": -search.total_value(self.choices, widths) if self.table else None,
            "chosen": False}
        self.points.append(point)
        self._point_of[id(result)] = point
        return result

    def choose(self, result: PruneResult) -> None:
        """Mark ``result``'s point as the chosen one (and no other)."""
        for point in self.points:
            point["chosen"] = point is self._point_of.get(id(result))


def start_search(prep: Prepared, config: runtime.RuntimeConfig | backends.LatencySource, floor: float = 0.25,
                 cache_path: str | None = None, progress: bool = True,
                 value: str = "sensitivity", **settings) -> Search:
    """Measure the baseline, profile every prunable group (latency staircases, cached) and,
    with ``value="sensitivity"``, measure the distortion of every candidate width (cached).
    ``config``: the runtime configuration measured here, or any latency source (Ray actors on
    the deployment machines, a fake in tests); every timing goes through it. ``settings``:
    ``steps``, ``evaluate``, ``distill_seconds`` for every finished candidate."""
    if not 0.0 < floor <= 1.0:
        raise OnnxPruneError(f"--floor must be in (0, 1], got {floor}")
    source = backends.source_for(config)
    base = prep.model.SerializeToString()
    baseline = source.measure(base, prep.feeds, rounds=40).median_ms
    run = profile.profile_model(prep.graph, source, profile.Cache(cache_path, source.key()),
                                min_fraction=floor, progress=progress)
    choices = _proven(prep, search.latency_choices(prep.graph, run.groups, floor))
    table, synthetic = None, False
    if value == "sensitivity" and choices:
        table, synthetic = sensitivity_table(prep, choices, cache_path)
        choices = search.with_values(choices, table.values)
    if not choices:
        raise OnnxPruneError("nothing prunable found: every channel group is frozen (see analyze)")
    return Search(prep, source, base, baseline, choices, table, synthetic, run.seconds, **settings)


def _proven(prep: Prepared, choices: list[search.Choice]) -> list[search.Choice]:
    """The choices whose groups prove with every group at its floor width; the groups that
    break the proof are frozen with the reason (as in :func:`finish`), so no candidate the
    search builds and times carries a rewrite that does not check."""
    unproven: dict[int, str] = prep._cache.setdefault("unproven", {})
    plan = search.plan_for(prep.graph, {ch.group: ch.widths[0] for ch in choices})
    if verify.check_plan(prep.graph, plan, prep.feeds).why:
        unproven.update(verify.prove(prep.graph, plan, prep.feeds)[1])
    return [ch for ch in choices if ch.group not in unproven]


def prune_to_target(prep: Prepared, config: runtime.RuntimeConfig | backends.LatencySource,
                    target_ms: float | None = None,
                    speedup: float | None = None, floor: float = 0.25, method: str = "knapsack",
                    cache_path: str | None = None, band: float = 0.93,
                    progress: bool = True, steps: tuple[str, ...] = recover.STEPS,
                    evaluate: Callable[[str], float] | None = None,
                    max_drop: float | None = None,
                    value: str = "sensitivity", distill_seconds: float = 60.0,
                    shared: Search | None = None) -> TargetResult:
    """Latency-targeted pruning with the runtime in the loop (see :mod:`onnxprune.search`), then
    fidelity in the loop: with ``max_drop``, the most faithful measured candidate within the
    target whose drop is within ``max_drop``, else an error that shows the measured frontier.

    ``value``: what the knapsack keeps: ``sensitivity`` (least measured output distortion; on
    synthetic images without calibration data) or ``importance`` (summed channel importance).
    ``shared``: a :class:`Search` from :func:`start_search` to reuse (several targets).
    Raises OnnxPruneError when the target is below the measured all-floor latency."""
    if speedup is not None and speedup <= 0:
        raise OnnxPruneError(f"--speedup must be positive, got {speedup}")
    if target_ms is not None and target_ms <= 0:
        raise OnnxPruneError("the latency target must be positive")
    ctx = shared or start_search(prep, config, floor, cache_path, progress, value,
                                 steps=steps, evaluate=evaluate, distill_seconds=distill_seconds)
    baseline = ctx.baseline_ms
    target_ms = baseline / speedup if speedup is not None else target_ms
    if target_ms is None:
        raise OnnxPruneError("the latency target must be positive")
    if baseline <= target_ms:
        return TargetResult(None, baseline, target_ms, None, None, already_met=True)
    try:
        found = search.hilp(ctx.choices, baseline, target_ms, ctx.measure, band)
    except ValueError as exc:
        raise OnnxPruneError(
            f"target {target_ms:.3f} ms is below the reachable floor: with every group at its "
            f"floor the model measured {exc} ms (baseline {baseline:.3f} ms)") from exc
    widths, ms, evolve_steps = found.widths, found.measured_ms, []
    if method == "evolve" and not found.at_floor:
        widths, ms, evolve_steps = search.evolve(ctx.choices, widths, found.measured_ms, target_ms, ctx.measure)
    result = ctx.finish(widths, ms)
    if max_drop is not None and result.quality.drop is not None and result.quality.drop > max_drop:
        widths, result = _within_drop(ctx, found, target_ms, max_drop)
    return _final(ctx, result, target_ms, found, evolve_steps, widths)


def _final(ctx: Search, result: PruneResult, target_ms: float, found: search.SearchResult | None,
           evolve_steps: list, widths: dict[int, int]) -> TargetResult:
    """Time the chosen model once more (interleaved) and mark it among the measured points."""
    final = ctx.source.compare(ctx.base, result.model.SerializeToString(), ctx.prep.feeds, rounds=40)
    ctx.choose(result)
    return TargetResult(result, ctx.baseline_ms, target_ms, final, found, evolve_steps, widths,
                        profile_seconds=ctx.profile_seconds, table=ctx.table,
                        synthetic=ctx.synthetic, points=list(ctx.points))


def prune_within_drop(prep: Prepared, config: runtime.RuntimeConfig, max_drop: float,
                      rounds: int = 6, **kwargs) -> TargetResult:
    """The fastest measured model whose fidelity drop stays within ``max_drop``: bisection on
    the latency savings asked of the knapsack, each candidate built, recovered and judged on
    held-out calibration data and timed on the runtime. ``kwargs`` go to :func:`start_search`."""
    ctx = start_search(prep, config, **kwargs)
    hi = search.predicted_savings(ctx.choices, {ch.group: ch.widths[0] for ch in ctx.choices})
    lo, best = 0.0, None
    for _ in range(rounds):
        ask = (lo + hi) / 2
        widths = search.solve(ctx.choices, ask)
        if widths is None:
            break
        ms = ctx.measure(widths)
        result = ctx.finish(widths, ms)
        if result.quality.drop is not None and result.quality.drop <= max_drop:
            lo = ask
            if best is None or ms < best[1]:
                best = (widths, ms, result)
        else:
            hi = ask
    if best is None:
        raise OnnxPruneError(f"no measured candidate keeps the fidelity drop within {max_drop}: "
                             f"{_frontier_text(ctx)}")
    widths, ms, result = best
    return _final(ctx, result, ms, None, [], widths)


def sensitivity_table(prep: Prepared, choices: list[search.Choice],
                      cache_path: str | None) -> tuple[sensitivity.Table, bool]:
    """The measured sensitivity of every candidate width (cached next to the profile cache),
    and whether it was measured on synthetic images (no calibration data)."""
    samples, synthetic = prep.value_samples()
    cache_dir = os.path.join(os.path.dirname(os.path.abspath(cache_path)), "sensitivity") if cache_path else None
    widths = {ch.group: ch.widths for ch in choices}
    stats = prep.stats if not synthetic else {}
    return sensitivity.sensitivity_table(prep.graph, widths, samples, stats, cache_dir=cache_dir), synthetic


def sensitivity_grid(prep: Prepared, shares: tuple[float, ...] = (0.25, 0.5, 0.75, 0.875)
                     ) -> tuple[sensitivity.Table, bool]:
    """The sensitivity table on a fixed grid of kept shares (multiples of 4 channels) for every
    prunable group: what ``analyze --plot`` draws."""
    widths = {}
    for group in prep.graph.prunable_groups():
        low = group.width - len(group.prunable)
        ws = {max(low, 4 * round(s * group.width / 4), 1) for s in shares}
        widths[group.id] = sorted(w for w in ws if w < group.width)
    samples, synthetic = prep.value_samples()
    stats = prep.stats if not synthetic else {}
    return sensitivity.sensitivity_table(prep.graph, widths, samples, stats), synthetic


def _within_drop(ctx: Search, found: search.SearchResult, target_ms: float, max_drop: float):
    """Fidelity in the loop with a target: the measured loop candidates within the target, most
    faithful predicted first, each built, recovered and judged; the first within ``max_drop``
    wins. Otherwise fail and show the measured frontier."""
    candidates = sorted((s for s in found.steps if s.widths != found.widths and s.measured_ms <= target_ms),
                        key=lambda s: -s.importance)
    for step in candidates[:3]:
        result = ctx.finish(step.widths, step.measured_ms)
        if result.quality.drop <= max_drop:
            return step.widths, result
    raise OnnxPruneError(
        f"cannot hold both the target ({target_ms:.3f} ms) and --max-drop {max_drop}: "
        f"{_frontier_text(ctx)}")


def _frontier_text(ctx: Search) -> str:
    """The measured points as one line: latency and fidelity drop of each."""
    pts = sorted(ctx.points, key=lambda p: p["ms"])
    return "measured frontier " + ", ".join(
        f"{p['ms']:.2f} ms ({p['speedup']:.2f}x) drop {p['drop']:.3f}" for p in pts
        if p["drop"] is not None) + f" (baseline {ctx.baseline_ms:.2f} ms)"


def frontier(prep: Prepared, config: runtime.RuntimeConfig, speedups: list[float],
             **kwargs) -> list[TargetResult]:
    """Several operating points in one run: one :func:`prune_to_target` per speedup, sharing
    the baseline, the profiles and the sensitivity table. ``kwargs`` go to
    :func:`start_search`."""
    ctx = start_search(prep, config, **kwargs)
    return [prune_to_target(prep, config, speedup=s, shared=ctx) for s in sorted(speedups)]


def quick_latency(prep: Prepared, pruned: onnx.ModelProto,
                  config: runtime.RuntimeConfig | backends.LatencySource | None = None,
                  rounds: int = 20) -> bench.Comparison:
    """Interleaved A/B timing of the original and the pruned model on ``config`` (default: ORT
    CPU, 1 thread) or a latency source."""
    source = backends.source_for(config)
    return source.compare(prep.original.SerializeToString(), pruned.SerializeToString(),
                          prep.feeds, rounds=rounds)


def prune(model: onnx.ModelProto | str, *, target_ms: float | None = None,
          speedup: float | None = None, ratio: float | None = None,
          calib=None, evaluate: Callable[[str], float] | None = None,
          max_drop: float | None = None, recovery: tuple[str, ...] = recover.STEPS,
          importance: str = "auto",
          config: runtime.RuntimeConfig | backends.LatencySource | None = None,
          shapes: dict[str, tuple[int, ...]] | None = None, floor: float = 0.25,
          method: str = "knapsack", exclude: list[str] | None = None,
          cache_path: str | None = None, value: str = "sensitivity",
          distill_seconds: float = 60.0) -> Outcome:
    """Prune ``model`` (proto or path) to a latency target, a speedup or a ratio; or, with
    ``max_drop`` alone, to the fastest measured model within that fidelity drop.

    ``calib``: an iterable of feed dicts (each with a batch axis) or a .npz path; it enables
    reconstruction selection, measured sensitivity, recovery and fidelity (without it, cuts are
    ranked on synthetic images and accuracy is not checked). ``evaluate(model_path) -> float`` is
    the pipeline's own metric (higher is better); ``max_drop`` bounds its drop (or, without it,
    the loss of top-1 agreement). ``config``: the deployment runtime measured here (default ORT
    CPU, 1 thread) or a latency source (:class:`onnxprune.remote.RaySource` to measure on other
    machines). Raises OnnxPruneError with a one-line reason on failure."""
    modes = sum(v is not None for v in (target_ms, speedup, ratio))
    if modes > 1 or modes == 0 and max_drop is None:
        raise OnnxPruneError("give exactly one of target_ms, speedup, ratio (or max_drop alone)")
    loaded = load.load_model(model) if isinstance(model, str) else model
    samples = calib if calib is None or isinstance(calib, str) else from_feeds(calib, loaded)
    prep = prepare(loaded, shapes, importance, exclude, samples)
    config = config or runtime.RuntimeConfig()
    if ratio is not None:
        result = prune_ratio(prep, ratio, recovery, evaluate, max_drop, distill_seconds)
        return Outcome(result.model, {"ratio": ratio, **result.to_dict()}, result)
    cache_path = cache_path or profile.default_cache_path()
    settings = {"steps": recovery, "evaluate": evaluate, "distill_seconds": distill_seconds}
    if modes == 0:
        tr = prune_within_drop(prep, config, max_drop, floor=floor, cache_path=cache_path,
                               progress=False, value=value, **settings)
    else:
        tr = prune_to_target(prep, config, target_ms, speedup, floor, method, cache_path,
                             progress=False, max_drop=max_drop, value=value, **settings)
    return Outcome(prep.original if tr.already_met else tr.result.model, tr.to_dict(prep.graph), tr)
