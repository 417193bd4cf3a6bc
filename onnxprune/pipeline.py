"""The search drivers: from a preparation (:mod:`onnxprune.preparation`) to a pruned, recovered
and verified model -- by ratio (:func:`prune_ratio`), to a latency target (:func:`prune_to_target`,
progressive with ``stages``), to the fastest model within a fidelity drop
(:func:`prune_within_drop`) or at several targets (:func:`search_frontier`): plan -> rewrite -> recover ->
verify. Each driver takes the preparation, the latency source and the run's
:class:`onnxprune.job.Job` (checked by :meth:`~onnxprune.job.Job.validate`, in
:mod:`onnxprune.api` with the public :func:`onnxprune.prune`).

Latency story (one baseline per run): every figure derives from ``CandidateStore.baseline_ms``, the
unpruned model measured once at the start, and from interleaved A/B *ratios* against it, taken
in the same process: a candidate's latency is ``baseline_ms / speedup``, the target latency is
``baseline_ms / target speedup``, so a printed target, after-latency and speedup can never
contradict each other, and a machine whose speed drifts during the run moves no decision.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable

import onnx

from . import (
    backends,
    bench,
    fidelity,
    load,
    mixed,
    profile,
    quantize,
    recover,
    runtimes,
    search,
    sensitivity,
    verify,
)
from .errors import OnnxPruneError, first_line
from .graph import trace
from .job import Job, Target
from .preparation import Prepared, restage
from .progress import timed
from .results import PruneResult, Quality, TargetResult
from .rewrite import PrunePlan, ratio_plan
from .search.store import Candidate, CandidateStore
from .stats import macs, param_count


@timed("verify")
def finish(prep: Prepared, plan: PrunePlan, steps: tuple[str, ...] = recover.STEPS,
           evaluate: Callable[[str], float] | None = None,
           distill_seconds: float = recover.DISTILL_SECONDS,
           keep_float: tuple[str, ...] = ()) -> PruneResult:
    """Apply ``plan``, prove its index maps (zero-filter check), run the recovery ``steps`` when
    calibration data is present, verify the result (checker, onnxruntime, output shapes) and
    measure fidelity and statistics. Groups whose rewrite cannot be proven are left unpruned
    (found by :func:`onnxprune.verify.prove`, remembered in ``prep.unproven``) and listed in
    ``PruneResult.frozen``; recovery that breaks the proven model is dropped (its reason in the
    recovery report) and the proven model goes on. ``keep_float``: nodes the shipped model
    keeps in float (a quantized precision)."""
    unproven = prep.unproven
    plan = PrunePlan({k: v for k, v in plan.keep.items() if k not in unproven})
    proof = verify.check_plan(prep.graph, plan, prep.feeds)
    if proof.why:  # never fail whole: leave the groups that break the proof unpruned, list them
        plan, failures = verify.prove(prep.graph, plan, prep.feeds)
        unproven.update(failures)
        proof = verify.check_plan(prep.graph, plan, prep.feeds)
    proven, err = proof.model, proof.error
    try:
        pruned, quality = _checked(prep, plan, proven, steps, evaluate, distill_seconds)
    except OnnxPruneError as exc:  # recovery broke the proven model: keep that one, say why
        if not steps or prep.split is None or not plan.removed(prep.graph):
            raise
        pruned, quality = _checked(prep, plan, proven, (), evaluate, distill_seconds)
        quality.recovery = recover.RecoveryReport(
            steps=[{"step": ",".join(steps), "kept": False, "why": str(exc)}])
    shipped = _ship(prep, pruned, quality, evaluate, keep_float)
    after_graph_shapes = trace(pruned, prep.shapes)[0]
    teacher_shapes = trace(prep.teacher, prep.shapes)[0] if prep.teacher is not prep.model else prep.graph.shapes
    return PruneResult(
        shipped, plan, param_count(prep.teacher), param_count(pruned),
        macs(prep.teacher, teacher_shapes), macs(pruned, after_graph_shapes),
        err, sum(len(v) for v in plan.removed(prep.graph).values()), quality,
        sorted(unproven.items()),
    )


def _checked(prep: Prepared, plan: PrunePlan, proven: onnx.ModelProto, steps: tuple[str, ...],
             evaluate: Callable[[str], float] | None,
             distill_seconds: float) -> tuple[onnx.ModelProto, Quality]:
    """:func:`_polish` the proven model, then check what recovery made of it (checker,
    onnxruntime, output shapes)."""
    pruned, quality = _polish(prep, plan, proven, steps, evaluate, distill_seconds)
    load.export_form(pruned)  # recovery may have added initializers (biases)
    verify.check_model(pruned, prep.feeds, prep.reference())
    return pruned, quality


@timed("recovery")
def _polish(prep: Prepared, plan: PrunePlan, pruned: onnx.ModelProto, steps: tuple[str, ...],
            evaluate: Callable[[str], float] | None,
            distill_seconds: float) -> tuple[onnx.ModelProto, Quality]:
    """Recovery and fidelity on the held-out samples (whole near-duplicate clusters of the
    calibration data, or the --val samples)."""
    quality = Quality()
    if evaluate is not None:
        quality.baseline_metric = prep.baseline_metric(evaluate)
    split = prep.split
    if split is not None:
        quality.data = "val" if split.source == "val" else "held-out"
        if steps and plan.removed(prep.graph):
            pruned, quality.recovery = recover.recover(prep.graph, plan, pruned, split.fit, split.held,
                                                       prep.held_reference(), steps, distill_seconds)
            prep.warnings.extend(quality.recovery.warnings)
    if prep.precision == "fp32":  # otherwise the shipped (quantized) model is judged, once (_ship)
        _judge(prep, pruned, quality, evaluate)
    return pruned, quality


def _judge(prep: Prepared, model: onnx.ModelProto, quality: Quality,
           evaluate: Callable[[str], float] | None) -> None:
    """``quality``'s fidelity and drop: ``model`` against the teacher on the held-out samples
    (and the user's metric), or the metric alone without calibration data."""
    if prep.split is None:
        if evaluate is not None:
            quality.fidelity = fidelity.Fidelity(None, {}, {}, fidelity.evaluate_model(model, evaluate))
            quality.drop = quality.baseline_metric - quality.fidelity.metric
        return
    split = prep.split
    quality.fidelity = fidelity.fidelity(prep.held_reference(), model, split.held, evaluate,
                                         split.held_groups)
    quality.drop = quality.fidelity.drop(quality.baseline_metric)


def _ship(prep: Prepared, pruned: onnx.ModelProto, quality: Quality,
          evaluate: Callable[[str], float] | None, keep_float: tuple[str, ...] = ()) -> onnx.ModelProto:
    """The recovered float model in the precision the run ships (``prep.precision``,
    :meth:`~onnxprune.preparation.Prepared.deployable`), checked like it (checker,
    onnxruntime, output shapes) and judged into ``quality`` (what the user gets is what is
    judged; the float model when the quantizer refuses it), the nodes named in ``keep_float``
    left float. fp32: ``pruned``, judged already."""
    if prep.precision == "fp32":
        return pruned
    shipped = _quantized(prep, pruned, keep_float)
    quality.precision, quality.float_nodes = shipped.label, list(shipped.kept_float)
    if shipped.quantized:
        verify.check_model(shipped.model, prep.feeds, prep.reference())
    _judge(prep, shipped.model, quality, evaluate)
    return shipped.model


@timed("quantize")
def _quantized(prep: Prepared, model: onnx.ModelProto, keep_float: tuple[str, ...]) -> quantize.Quantized:
    return prep.deployable(model, keep_float=keep_float)


def prune_ratio(prep: Prepared, job: Job) -> PruneResult:
    """Remove the ``job.target.ratio`` (in [0, 1), checked by :meth:`onnxprune.job.Job.validate`)
    first-to-go channels of every prunable group; recovered as ``job.recovery`` says, the drop
    bounded by ``job.goal.max_drop``."""
    ratio, max_drop = job.target.ratio, job.goal.max_drop
    result = finish(prep, ratio_plan(prep.graph, ratio), job.recovery.steps, job.data.evaluate,
                    job.recovery.distill_seconds)
    if max_drop is not None and result.quality.drop is not None and result.quality.drop > max_drop:
        raise OnnxPruneError(f"fidelity drop {result.quality.drop:.4f} exceeds --max-drop {max_drop}")
    return result


def start_search(prep: Prepared, config: runtimes.RuntimeConfig | backends.LatencySource, job: Job,
                 baseline: tuple[bytes, float] | None = None,
                 quantizer: list[dict] | None = None) -> CandidateStore:
    """Measure the baseline, profile every prunable group (latency staircases, cached) and,
    with ``value="sensitivity"``, measure the distortion of every candidate width (cached);
    in int8, then each group's precision option (:mod:`onnxprune.mixed`: kept float or not,
    on the same distortion scale; cached), searched together with the widths.
    ``config``: the runtime configuration measured here, or any latency source (Ray actors on
    the deployment machines, a fake in tests); every timing goes through it. ``baseline``:
    ``(model bytes, ms)`` to compare against instead of ``prep.model`` measured now (the
    unpruned model, for the later stages of progressive pruning). ``quantizer``: the runtime
    quantizer's rows when measured already (:func:`runtime_quantizer`). ``job``: the floor, the
    value, the cache and progress lines (``goal``, ``search``), and the recovery and metric of
    every finished candidate."""
    floor, cache_path, value = job.goal.floor, job.search.cache_path, job.goal.value
    source = backends.source_for(config)
    if baseline is None:
        base = prep.model.SerializeToString()
        baseline = (base, source.measure(base, prep.feeds, rounds=40).median_ms)
    prep.int8_cache = _beside(cache_path, "int8")
    rows = quantizer if quantizer is not None else (
        runtime_quantizer(prep, source, baseline[0]) if prep.teacher is prep.model else [])
    layer_cache = profile.Cache(cache_path, source.key())
    run = profile.profile_model(prep.graph, source, layer_cache, min_fraction=floor,
                                progress=job.search.progress, precision=prep.precision)
    choices = _proven(prep, search.latency_choices(prep.graph, run.groups, floor))

    def judge(plan: PrunePlan, keep_float: tuple[str, ...] = ()) -> PruneResult:
        return finish(prep, plan, job.recovery.steps, job.data.evaluate, job.recovery.distill_seconds,
                      keep_float)

    ctx = CandidateStore(prep, source, baseline[0], baseline[1], choices, None, False, run.seconds,
                         judge, cache_path, quantizer=rows)
    notice = search.cannot_help(prep.graph, run.groups, floor, ctx.start_ms(), ctx.measure,
                                choices=choices)
    if notice:  # flat staircases (a launch-bound GPU): say so instead of searching
        raise OnnxPruneError(notice)
    if value == "sensitivity" and choices:
        try:
            ctx.table, ctx.synthetic = sensitivity_table(prep, choices, cache_path)
            ctx.choices = search.with_values(choices, ctx.table.values)
        except Exception as exc:  # noqa: BLE001 -- an optional stage degrades, never ends the run
            prep.warnings.append(f"the sensitivity table failed ({type(exc).__name__}: "
                                 f"{first_line(exc)}); widths were chosen by channel "
                                 "importance instead")
    if not ctx.choices:
        raise OnnxPruneError("nothing prunable found: every channel group is frozen (see analyze)")
    if prep.precision == "int8" and ctx.table is not None:  # values on the table's scale
        items, prep.float_items = _precision_items(prep, run, source, layer_cache, cache_path)
        if items:  # a candidate measured before (the floor check) lacks them: measured anew
            ctx.choices, ctx.candidates = ctx.choices + items, {}
    return ctx


@timed("precision table")
def _precision_items(prep: Prepared, run: profile.ProfileRun, source: backends.LatencySource,
                     layer_cache: profile.Cache, cache_path: str | None
                     ) -> tuple[list[search.Choice], list[tuple[str, ...]]]:
    """The int8 run's per-node precision options (:func:`onnxprune.mixed.precision_choices`);
    none, with a warning, when measuring them fails (the run goes on all-int8)."""
    try:
        return mixed.precision_choices(prep, run.groups, source, layer_cache,
                                       _beside(cache_path, "sensitivity"))
    except Exception as exc:  # noqa: BLE001 -- an optional stage degrades, never ends the run
        prep.warnings.append(f"the precision table failed ({type(exc).__name__}: {first_line(exc)}); "
                             "every quantizable node stays int8")
        return [], []


def _beside(cache_path: str | None, folder: str) -> str | None:
    """The cache folder ``folder`` beside the profile cache ``cache_path`` (None: no cache)."""
    return os.path.join(os.path.dirname(os.path.abspath(cache_path)), folder) if cache_path else None


QUANTIZER_METHODS = ("minmax", "percentile")  # the runtime quantizer's rows beside every run


@timed("runtime quantizer")
def runtime_quantizer(prep: Prepared, source: backends.LatencySource, base: bytes) -> list[dict]:
    """What the user would do instead, measured in the same run: the unpruned model through
    onnxruntime's own static quantizer (:mod:`onnxprune.quantize`: QDQ, per-channel int8
    weights, uint8 activations, :data:`~onnxprune.quantize.CALIB_SAMPLES` of the fit samples,
    each of :data:`QUANTIZER_METHODS`; kept in ``prep.int8_cache``, so a later run of the same
    model and data only times and judges them), timed by interleaved A/B against ``base`` and judged
    on the held-out samples like every candidate. A row each (method, speedup, fidelity,
    seconds); none without calibration data (the quantizer needs it) or when it refuses the
    model (its warning joins the run's)."""
    if prep.split is None:
        return []
    rows = []
    for method in QUANTIZER_METHODS:
        start = time.perf_counter()
        q = quantize.quantize(prep.teacher, prep.split.fit, quantize.Quantization(method), prep.int8_cache)
        if not q.quantized:
            prep.warnings.extend(q.warnings)
            return rows
        cmp = source.compare(base, q.model.SerializeToString(), prep.feeds, rounds=30)
        fid = fidelity.fidelity(prep.held_reference(), q.model, prep.split.held, None,
                                prep.split.held_groups)
        rows.append({"method": method, "speedup": cmp.speedup, "ratio_p10": cmp.ratio_p10,
                     "ratio_p90": cmp.ratio_p90, "fidelity": fid.as_dict(), "drop": fid.drop(),
                     "seconds": time.perf_counter() - start})
    return rows


def _loop(ctx: CandidateStore, target: Target, method: str,
          choices: list[search.Choice] | None = None) -> search.SearchResult:
    """The hardware loop for one target over ``choices`` (default: the run's; measured
    candidates join ``ctx``)."""
    target_ms, target_speedup = target.ms(ctx.baseline_ms), target.speedup(ctx.baseline_ms)
    try:
        found = search.hilp(choices or ctx.choices, ctx.top_ms(), target_ms, ctx.measure)
    except ValueError as exc:
        raise OnnxPruneError(
            f"target {target_ms:.3f} ms ({target_speedup:.3f}x) is below the reachable floor: with "
            f"every group at its floor the model measured {exc} ms (baseline "
            f"{ctx.baseline_ms:.3f} ms)") from exc
    if method == "evolve" and not found.at_floor:
        widths, ms, steps = search.evolve(ctx.choices, found.widths, found.measured_ms, target_ms, ctx.measure)
        found.widths, found.measured_ms, found.evolved = widths, ms, steps
    return found


def _proven(prep: Prepared, choices: list[search.Choice]) -> list[search.Choice]:
    """The choices whose groups prove with every group at its floor width; the groups that
    break the proof are frozen with the reason (as in :func:`finish`), so no candidate the
    search builds and times carries a rewrite that does not check."""
    unproven = prep.unproven
    plan = search.plan_for(prep.graph, {ch.group: ch.widths[0] for ch in choices})
    if verify.check_plan(prep.graph, plan, prep.feeds).why:
        unproven.update(verify.prove(prep.graph, plan, prep.feeds)[1])
    return [ch for ch in choices if ch.group not in unproven]


def prune_to_target(prep: Prepared, config: runtimes.RuntimeConfig | backends.LatencySource,
                    job: Job, shared: CandidateStore | None = None) -> TargetResult:
    """Latency-targeted pruning with the runtime in the loop (see :mod:`onnxprune.search`), then
    fidelity in the loop. The target (``job.target``) is a speedup over the baseline (the
    speedup asked, or ``baseline / target_ms``), judged by interleaved ratios; among the measured
    candidates that meet it, the most faithful wins (a faster one only when it is also more
    faithful). With ``job.goal.max_drop``: the most faithful measured candidate within the target
    whose drop is within it, else an error that shows the measured frontier.

    ``job.goal.value``: what the knapsack keeps: ``sensitivity`` (least measured output
    distortion; on synthetic images without calibration data) or ``importance`` (summed channel
    importance). ``shared``: a :class:`~onnxprune.search.CandidateStore` from :func:`start_search` to reuse (several
    targets). ``job.search.stages``: progressive pruning (:func:`prune_progressive`) when above 1.
    Raises OnnxPruneError when the target is below the measured all-floor latency."""
    if job.search.stages > 1:
        return prune_progressive(prep, config, job)
    if prep.precision == "auto":
        return _auto(prep, config, job)
    ctx = shared or start_search(prep, config, job)
    target = job.target
    if prep.precision == "fp32" and target.met_by(ctx.baseline_ms):
        return TargetResult(None, ctx.baseline_ms, target.ms(ctx.baseline_ms), None, None,
                            already_met=True)
    alone = _quantized_alone(ctx, target)
    if alone is not None:
        return alone
    found = _loop(ctx, target, job.search.method)
    return _conclude(ctx, target, found, job.goal.max_drop)


def _quantized_alone(ctx: CandidateStore, target: Target) -> TargetResult | None:
    """In a quantized precision, when the unpruned quantized model meets ``target`` on its
    own: that model (nothing cut), or, when it lands past the band and the run has precision
    items, the more faithful of two searched models for the target -- nodes bought back in
    float with every channel kept (:func:`_floats_only`), and the full search's (channels cut
    where that is cheaper) -- unless the quantized model alone is more faithful than it by
    more than the held-out noise (:func:`_more_faithful`, the frontier's rule: a model better
    only within the noise is no reason to land past the band); else (and in fp32) None."""
    if ctx.prep.precision == "fp32":
        return None
    widths = ctx.unpruned()
    speedup, wanted = ctx.speedup_of(widths), target.speedup(ctx.baseline_ms)
    if speedup < search.WINDOW[0] * wanted:
        return None
    alone = _final(ctx, ctx.finish(widths), target, None, widths)
    if speedup <= search.BAND[1] * wanted or not any(ch.group < 0 for ch in ctx.choices):
        return alone
    floats = _loop(ctx, target, "knapsack", _floats_only(ctx.choices))
    in_float = _final(ctx, ctx.finish(floats.widths), target, floats, floats.widths)
    mixed = _conclude(ctx, target, _loop(ctx, target, "knapsack"), None)
    searched = min((in_float, mixed), key=_drop)  # the first of the least drop
    return alone if _more_faithful(alone, searched) else searched


def _floats_only(choices: list[search.Choice]) -> list[search.Choice]:
    """``choices`` with every channel group held at its full width: only the precision
    items (int8 or float) are left to choose."""
    return [ch if ch.group < 0 else search.Choice(ch.group, ch.widths[-1:], ch.cost[-1:], ch.value[-1:])
            for ch in choices]


def _auto(prep: Prepared, config: runtimes.RuntimeConfig | backends.LatencySource,
          job: Job) -> TargetResult:
    """``--precision auto``: the target searched in each of
    :data:`~onnxprune.quantize.MODEL_PRECISIONS` (one baseline, the same preparation and
    calibration split), the :func:`pick_precision` result kept; a target the float model
    already meets ends it there."""
    source = backends.source_for(config)
    base = prep.model.SerializeToString()
    baseline = (base, source.measure(base, prep.feeds, rounds=40).median_ms)
    results, rows = [], None
    for precision in quantize.MODEL_PRECISIONS:
        ctx = start_search(dataclasses.replace(prep, precision=precision), source, job, baseline, rows)
        rows = ctx.quantizer
        results.append(prune_to_target(ctx.prep, source, job, ctx))
        if results[-1].already_met:
            return results[-1]
    return pick_precision(results)


def pick_precision(results: list[TargetResult]) -> TargetResult:
    """Of one target's results in several precisions, the one with the least fidelity drop
    among those that meet it (ties: the faster); when none meets it, the fastest. (Unlike
    :func:`_more_faithful`, no noise margin: the candidates are alternatives, not a frontier.)"""
    met = [r for r in results if r.speedup is not None and r.speedup >= search.BAND[0] * r.target_speedup]
    if not met:
        return max(results, key=lambda r: r.speedup or 0.0)
    return min(met, key=lambda r: (_drop(r), -r.speedup))


def _conclude(ctx: CandidateStore, target: Target, found: search.SearchResult,
              max_drop: float | None) -> TargetResult:
    """Choose among the measured candidates for ``target``, build, recover and judge it."""
    speedup = target.speedup(ctx.baseline_ms)
    widths = ctx.pick(speedup) or found.widths
    result = ctx.finish(widths)
    if max_drop is not None and result.quality.drop is not None and result.quality.drop > max_drop:
        widths, result = _within_drop(ctx, speedup, max_drop, widths)
    return _final(ctx, result, target, found, widths)


def prune_progressive(prep: Prepared, config: runtimes.RuntimeConfig | backends.LatencySource,
                      job: Job) -> TargetResult:
    """Progressive pruning (HILP): reach the target speedup ``T`` in ``job.search.stages``
    steps of ``T ** (k / stages)``, each pruned, recovered and written as a model, whose channel
    graph, consumer statistics and sensitivity table are measured again for the next step.
    Every stage's speedup is an interleaved ratio against the *unpruned* model, and every
    fidelity figure compares with it."""
    stages, method = job.search.stages, job.search.method
    first = start_search(prep, config, job)
    baseline = (first.base, first.baseline_ms)
    target = job.target
    if target.met_by(first.baseline_ms):
        return TargetResult(None, first.baseline_ms, target.ms(first.baseline_ms), None, None,
                            already_met=True)
    current, ctx, done = prep, first, None
    for k in range(1, stages + 1):
        if k > 1:
            current = restage(current, done.result.model)
            ctx = start_search(current, config, job, baseline=baseline)
        stage_target = target.power(first.baseline_ms, k / stages)
        done = _conclude(ctx, stage_target, _loop(ctx, stage_target, method),
                         job.goal.max_drop if k == stages else None)
    done.stages = stages
    return done


def _final(ctx: CandidateStore, result: PruneResult, target: Target, found: search.SearchResult | None,
           widths: dict[int, int]) -> TargetResult:
    """Time the chosen model once more (interleaved with the baseline) and pool it with the
    loop's comparisons of the same model; mark it among the measured points."""
    final = ctx.source.compare(ctx.base, result.model.SerializeToString(), ctx.prep.feeds, rounds=40)
    cand = ctx._candidate(widths)
    pooled = final.speedup
    if cand is not None:  # the recovered model times like the built one (same shapes)
        runs = [*cand.runs[:cand.used], (final.speedup, final.ratio_p10, final.ratio_p90, final.rounds)]
        pooled = Candidate(widths, cand.value, runs).pooled(len(runs))[0]
    return TargetResult(result, ctx.baseline_ms, target.ms(ctx.baseline_ms), final, found,
                        found.evolved if found is not None else [], widths,
                        profile_seconds=ctx.profile_seconds, table=ctx.table,
                        synthetic=ctx.synthetic, points=ctx.points_choosing(result), speedup=pooled,
                        warnings=list(dict.fromkeys(ctx.prep.warnings)), quantizer=ctx.quantizer)


def prune_within_drop(prep: Prepared, config: runtimes.RuntimeConfig | backends.LatencySource,
                      job: Job, rounds: int = 6) -> TargetResult:
    """The fastest measured model whose fidelity drop stays within ``job.goal.max_drop``:
    bisection on the latency savings asked of the knapsack, each candidate built, recovered and
    judged on held-out calibration data and timed on the runtime."""
    max_drop = job.goal.max_drop
    ctx = start_search(prep, config, job)
    hi = search.predicted_savings(ctx.choices, {ch.group: ch.widths[0] for ch in ctx.choices})
    lo, best = 0.0, None
    for _ in range(rounds):
        ask = (lo + hi) / 2
        widths = search.solve(ctx.choices, ask)
        if widths is None:
            break
        speedup = ctx.speedup_of(widths)
        result = ctx.finish(widths)
        if result.quality.drop is not None and result.quality.drop <= max_drop:
            lo = ask
            if best is None or speedup > best[1]:
                best = (widths, speedup, result)
        else:
            hi = ask
    if best is None:
        raise OnnxPruneError(f"no measured candidate keeps the fidelity drop within {max_drop}: "
                             f"{_frontier_text(ctx)}")
    widths, speedup, result = best
    return _final(ctx, result, Target(target_speedup=speedup), None, widths)


def sensitivity_table(prep: Prepared, choices: list[search.Choice],
                      cache_path: str | None) -> tuple[sensitivity.Table, bool]:
    """The measured sensitivity of every candidate width (cached next to the profile cache),
    and whether it was measured on synthetic images (no calibration data)."""
    samples, synthetic = prep.value_samples()
    cache_dir = _beside(cache_path, "sensitivity")
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


def _within_drop(ctx: CandidateStore, target: float, max_drop: float, tried: dict[int, int]):
    """Fidelity in the loop with a target: the other measured candidates that meet the target,
    most faithful predicted first, each built, recovered and judged; the first within
    ``max_drop`` wins. Otherwise fail and show the measured frontier."""
    candidates = sorted((c for c in ctx.candidates.values()
                         if c.used and c.widths != tried and c.speedup >= target),
                        key=lambda c: (-c.value, c.speedup))
    for cand in candidates[:3]:
        result = ctx.finish(cand.widths)
        if result.quality.drop <= max_drop:
            return cand.widths, result
    raise OnnxPruneError(
        f"cannot hold both the target ({ctx.baseline_ms / target:.3f} ms, {target:.3f}x) and "
        f"--max-drop {max_drop}: {_frontier_text(ctx)}")


def _frontier_text(ctx: CandidateStore) -> str:
    """The measured points as one line: latency and fidelity drop of each."""
    pts = sorted(ctx.points, key=lambda p: p["ms"])
    return "measured frontier " + ", ".join(
        f"{p['ms']:.2f} ms ({p['speedup']:.2f}x) drop {p['drop']:.3f}" for p in pts
        if p["drop"] is not None) + f" (baseline {ctx.baseline_ms:.2f} ms)"


def search_frontier(prep: Prepared, config: runtimes.RuntimeConfig | backends.LatencySource,
                    job: Job) -> list[TargetResult]:
    """Several operating points in one run, sharing the baseline, the profiles and the
    sensitivity table. Every target's loop runs first, so each target then chooses among all
    measured candidates; the frontier is monotone beyond the noise of the held-out figure:
    when a higher target's model is more faithful than a lower target's (:func:`_more_faithful`),
    it is the lower target's model too (it meets that target as well). The targets:
    ``job.goal.speedups``."""
    ctx = start_search(prep, config, job)
    targets = [Target(target_speedup=s) for s in sorted(job.goal.speedups)]
    alone = [_quantized_alone(ctx, t) for t in targets]
    found = [_loop(ctx, t, "knapsack") if a is None else None for t, a in zip(targets, alone)]
    results = [a or _conclude(ctx, t, f, None) for t, f, a in zip(targets, found, alone)]
    for k in range(len(results) - 2, -1, -1):  # from the top down: carry better models down
        better = results[k + 1]
        if _more_faithful(better, results[k]):
            results[k] = TargetResult(**{**better.__dict__, "target_ms": targets[k].ms(ctx.baseline_ms)})
    return results


def _more_faithful(a: TargetResult, b: TargetResult) -> bool:
    """Whether ``a`` is more faithful than ``b`` by more than the held-out noise: a lower drop
    and, where ``a``'s agreement has a 95% interval (clusters known), its lower end above
    ``b``'s agreement. A faster model that is better only within the noise is no reason to
    land past a target (a few held-out samples decide such differences)."""
    if _drop(a) >= _drop(b):
        return False
    fa, fb = a.result.quality.fidelity, b.result.quality.fidelity
    if fa is None or fb is None or fa.interval is None:
        return True
    theirs = fb.agreement if fb.agreement is not None else fb.neighbours
    return theirs is None or fa.interval[0] > theirs


def _drop(tr: TargetResult) -> float:
    drop = tr.result.quality.drop if tr.result is not None else None
    return math.inf if drop is None else drop


def quick_latency(prep: Prepared, pruned: onnx.ModelProto,
                  config: runtimes.RuntimeConfig | backends.LatencySource | None = None,
                  rounds: int = 20) -> bench.Comparison:
    """Interleaved A/B timing of the original and the pruned model on ``config`` (default: ORT
    CPU, 1 thread) or a latency source."""
    source = backends.source_for(config)
    return source.compare(prep.original.SerializeToString(), pruned.SerializeToString(),
                          prep.feeds, rounds=rounds)
