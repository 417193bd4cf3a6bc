"""The pipeline the CLI and the Python API share: load -> normalise -> graph -> importance ->
plan -> rewrite -> verify -> write."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from . import backends, bench, calib, load, profile, recover, runtime, search, verify
from .calib import from_feeds
from .errors import OnnxPruneError
from .graph import ChannelGraph, build_graph, matches, trace
from .importance import KINDS, activation_importance, weight_importance
from .report import conv_flops, param_count
from .rewrite import PrunePlan, apply_plan, ratio_plan


@dataclass
class Prepared:
    """A loaded model, its canonical form and channel graph, and the feeds used to check it."""

    original: onnx.ModelProto
    model: onnx.ModelProto
    graph: ChannelGraph
    feeds: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    calib: calib.Samples | None = None
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

    def baseline_metric(self, evaluate: Callable[[str], float]) -> float:
        """The user's metric on the unpruned model (computed once per callable)."""
        key = ("metric", id(evaluate))
        if key not in self._cache:
            self._cache[key] = verify.evaluate_model(self.model, evaluate)
        return self._cache[key]


@dataclass
class Quality:
    """Fidelity of the final model on held-out calibration data, and what recovery did."""

    fidelity: verify.Fidelity | None = None
    baseline_metric: float | None = None
    drop: float | None = None
    recovery: recover.RecoveryReport | None = None


@dataclass
class PruneResult:
    """What a pruning run produced and measured."""

    model: onnx.ModelProto
    plan: PrunePlan
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    zero_filter_error: float
    channels_removed: int
    quality: Quality = field(default_factory=Quality)


def prepare(model: onnx.ModelProto | str, shapes: dict[str, tuple[int, ...]] | None = None,
            importance: str = "l1", exclude: list[str] | None = None,
            calib_data: calib.Samples | str | None = None) -> Prepared:
    """Load (from a path) and normalise a model, build its channel graph and score channels
    (``importance``: l1, l2, or activation, which needs calibration data). Groups whose name or
    member nodes match an ``exclude`` pattern are frozen."""
    if importance not in KINDS:
        raise OnnxPruneError(f"--importance must be one of {', '.join(KINDS)}")
    original = load.load_model(model) if isinstance(model, str) else model
    samples = calib.load_npz(calib_data, original) if isinstance(calib_data, str) else calib_data
    if importance == "activation" and samples is None:
        raise OnnxPruneError("--importance activation needs calibration data (--calib data.npz)")
    normalised = load.normalise(original, shapes)
    graph = build_graph(normalised, shapes)
    if importance == "activation":
        activation_importance(graph, calib.split(samples)[0])
    else:
        weight_importance(graph, importance)
    for group in graph.groups:
        names = [s.node for s in group.sources] + [p.node for p in group.members]
        if exclude and any(matches(n, exclude) for n in names):
            group.frozen = [r or "excluded by --exclude" for r in group.frozen]
    return Prepared(original, normalised, graph, runtime.random_feeds(normalised, shapes),
                    shapes or {}, samples)


def finish(prep: Prepared, plan: PrunePlan, steps: tuple[str, ...] = recover.STEPS,
           evaluate: Callable[[str], float] | None = None) -> PruneResult:
    """Apply ``plan``, prove its index maps (zero-filter check), run the recovery ``steps`` when
    calibration data is present, verify the result (checker, onnxruntime, output shapes) and
    measure fidelity and statistics."""
    pruned = apply_plan(prep.graph, plan)
    err = verify.zero_filter_error(prep.graph, plan, prep.feeds, pruned) if plan.removed(prep.graph) else 0.0
    if err > 1e-4:
        raise OnnxPruneError(f"internal: pruned outputs differ from the zero-filter model ({err:.1e})")
    pruned, quality = _polish(prep, plan, pruned, steps, evaluate)
    verify.check_model(pruned, prep.feeds, prep.reference())
    after_graph_shapes = trace(pruned, prep.shapes)[0]
    return PruneResult(
        pruned, plan, param_count(prep.model), param_count(pruned),
        conv_flops(prep.model, prep.graph.shapes), conv_flops(pruned, after_graph_shapes),
        err, sum(len(v) for v in plan.removed(prep.graph).values()), quality,
    )


def _polish(prep: Prepared, plan: PrunePlan, pruned: onnx.ModelProto, steps: tuple[str, ...],
            evaluate: Callable[[str], float] | None) -> tuple[onnx.ModelProto, Quality]:
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
        pruned, quality.recovery = recover.recover(prep.graph, plan, pruned, fit, held, reference, steps)
    done = quality.recovery.final if quality.recovery is not None and evaluate is None else None
    quality.fidelity = done or verify.fidelity(reference, pruned, held, evaluate)
    quality.drop = quality.fidelity.drop(quality.baseline_metric)
    return pruned, quality


def prune_ratio(prep: Prepared, ratio: float, steps: tuple[str, ...] = recover.STEPS,
                evaluate: Callable[[str], float] | None = None,
                max_drop: float | None = None) -> PruneResult:
    """Remove the ``ratio`` least important channels of every prunable group."""
    if not 0.0 <= ratio < 1.0:
        raise OnnxPruneError(f"--ratio must be in [0, 1), got {ratio}")
    result = finish(prep, ratio_plan(prep.graph, ratio), steps, evaluate)
    if max_drop is not None and result.quality.drop is not None and result.quality.drop > max_drop:
        raise OnnxPruneError(f"fidelity drop {result.quality.drop:.4f} exceeds --max-drop {max_drop}")
    return result


@dataclass
class TargetResult:
    """What the latency-targeted search produced: the pruned model and its evidence."""

    result: PruneResult | None
    baseline_ms: float
    target_ms: float
    final: bench.Comparison | None
    loop: search.SearchResult | None
    evolve_steps: list = field(default_factory=list)
    widths: dict[int, int] = field(default_factory=dict)
    already_met: bool = False
    profile_seconds: float = 0.0


def prune_to_target(prep: Prepared, config: runtime.RuntimeConfig | backends.LatencySource,
                    target_ms: float | None = None,
                    speedup: float | None = None, floor: float = 0.25, method: str = "knapsack",
                    cache_path: str | None = None, band: float = 0.93,
                    progress: bool = True, steps: tuple[str, ...] = recover.STEPS,
                    evaluate: Callable[[str], float] | None = None,
                    max_drop: float | None = None) -> TargetResult:
    """Latency-targeted pruning with the runtime in the loop (see :mod:`onnxprune.search`).
    ``config``: the runtime configuration measured here, or any latency source (Ray actors on
    the deployment machines, a fake in tests); every timing goes through it.

    Raises OnnxPruneError when the target is below the measured all-floor latency."""
    if not 0.0 < floor <= 1.0:
        raise OnnxPruneError(f"--floor must be in (0, 1], got {floor}")
    source = backends.source_for(config)
    base = prep.model.SerializeToString()
    baseline = source.measure(base, prep.feeds, rounds=40).median_ms
    if speedup is not None:
        if speedup <= 0:
            raise OnnxPruneError(f"--speedup must be positive, got {speedup}")
        target_ms = baseline / speedup
    if target_ms is None or target_ms <= 0:
        raise OnnxPruneError("the latency target must be positive")
    if baseline <= target_ms:
        return TargetResult(None, baseline, target_ms, None, None, already_met=True)
    run = profile.profile_model(prep.graph, source, profile.Cache(cache_path, source.key()),
                                min_fraction=floor, progress=progress)
    choices = search.latency_choices(prep.graph, run.groups, floor)
    if not choices:
        raise OnnxPruneError("nothing prunable found: every channel group is frozen (see analyze)")

    def measure(widths: dict[int, int]) -> float:
        model = apply_plan(prep.graph, search.plan_for(prep.graph, widths))
        cmp = source.compare(base, model.SerializeToString(), prep.feeds, rounds=30)
        return baseline / cmp.speedup

    try:
        found = search.hilp(choices, baseline, target_ms, measure, band)
    except ValueError as exc:
        raise OnnxPruneError(
            f"target {target_ms:.3f} ms is below the reachable floor: with every group at its "
            f"floor the model measured {exc} ms (baseline {baseline:.3f} ms)") from exc
    widths, evolve_steps = found.widths, []
    if method == "evolve" and not found.at_floor:
        widths, _, evolve_steps = search.evolve(choices, widths, found.measured_ms, target_ms, measure)
    result = finish(prep, search.plan_for(prep.graph, widths), steps, evaluate)
    if max_drop is not None and result.quality.drop is not None and result.quality.drop > max_drop:
        widths, result = _within_drop(prep, found, target_ms, max_drop, steps, evaluate, result)
    final = source.compare(base, result.model.SerializeToString(), prep.feeds, rounds=40)
    return TargetResult(result, baseline, target_ms, final, found, evolve_steps, widths,
                        profile_seconds=run.seconds)


def _within_drop(prep: Prepared, found: search.SearchResult, target_ms: float, max_drop: float,
                 steps: tuple[str, ...], evaluate, first: PruneResult):
    """The most important measured loop candidate meeting both the target and ``max_drop``;
    otherwise fail naming the best trade-off seen (lowest drop, with its measured latency)."""
    tried = [(first.quality.drop, found.measured_ms)]
    candidates = sorted((s for s in found.steps if s.widths != found.widths), key=lambda s: -s.importance)
    for step in candidates:
        result = finish(prep, search.plan_for(prep.graph, step.widths), steps, evaluate)
        tried.append((result.quality.drop, step.measured_ms))
        if step.measured_ms <= target_ms and result.quality.drop <= max_drop:
            return step.widths, result
    drop, ms = min(tried)
    raise OnnxPruneError(
        f"cannot hold both the target ({target_ms:.3f} ms) and --max-drop {max_drop}: best "
        f"trade-off found is {ms:.3f} ms with fidelity drop {drop:.4f}")


def quick_latency(prep: Prepared, pruned: onnx.ModelProto,
                  config: runtime.RuntimeConfig | backends.LatencySource | None = None,
                  rounds: int = 20) -> bench.Comparison:
    """Interleaved A/B timing of the original and the pruned model on ``config`` (default: ORT
    CPU, 1 thread) or a latency source."""
    source = backends.source_for(config)
    return source.compare(prep.original.SerializeToString(), pruned.SerializeToString(),
                          prep.feeds, rounds=rounds)


def check_output_path(out: str, inp: str | None = None) -> None:
    """Fail early (before any work) when ``out`` cannot be written or would overwrite ``inp``."""
    if inp is not None:
        load.check_readable(inp)
    if inp is not None and os.path.exists(out) and os.path.exists(inp) and os.path.samefile(out, inp):
        raise OnnxPruneError(f"{out}: refusing to overwrite the input model")
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise OnnxPruneError(f"{out}: is a directory")
    if not os.path.isdir(parent):
        raise OnnxPruneError(f"{out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OnnxPruneError(f"{out}: directory {parent} is not writable")


def write_model(model: onnx.ModelProto, out: str, feeds: dict[str, np.ndarray]) -> None:
    """Atomically write ``model`` (already verified): temp file in the target directory, load and
    run it once more in onnxruntime from disk, then rename over ``out``."""
    check_output_path(out)
    parent = os.path.dirname(os.path.abspath(out))
    large = model.ByteSize() > 1_900_000_000
    fd, tmp = tempfile.mkstemp(prefix=".onnxprune-", suffix=".onnx", dir=parent)
    os.close(fd)
    try:
        if large:
            location = os.path.basename(out) + ".data"
            onnx.save(model, tmp, save_as_external_data=True, location=location)
        else:
            onnx.save(model, tmp)
        runtime.run(runtime.session(tmp), feeds)
        os.replace(tmp, out)
    except OSError as exc:
        raise OnnxPruneError(f"{out}: cannot write ({exc.strerror})") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(text: str, out: str) -> None:
    """Atomically write a text file (reports)."""
    parent = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".onnxprune-", suffix=".json", dir=parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, out)


@dataclass
class Outcome:
    """What :func:`prune` returns: the pruned (and recovered) model and a JSON-able report."""

    model: onnx.ModelProto
    report: dict


def prune(model: onnx.ModelProto | str, *, target_ms: float | None = None,
          speedup: float | None = None, ratio: float | None = None,
          calib=None, evaluate: Callable[[str], float] | None = None,
          max_drop: float | None = None, recovery: tuple[str, ...] = recover.STEPS,
          importance: str = "l1",
          config: runtime.RuntimeConfig | backends.LatencySource | None = None,
          shapes: dict[str, tuple[int, ...]] | None = None, floor: float = 0.25,
          method: str = "knapsack", exclude: list[str] | None = None,
          cache_path: str | None = None) -> Outcome:
    """Prune ``model`` (proto or path) to a latency target, a speedup or a ratio.

    ``calib``: an iterable of feed dicts (each with a batch axis) or a .npz path; it enables
    recovery, fidelity and activation importance. ``evaluate(model_path) -> float`` is the
    pipeline's own metric (higher is better); ``max_drop`` bounds its drop (or, without it, the
    loss of top-1 agreement). ``config``: the deployment runtime measured here (default ORT CPU,
    1 thread) or a latency source (:class:`onnxprune.remote.RaySource` to measure on other
    machines). Raises OnnxPruneError with a one-line reason on failure."""
    from .report import target_report

    if sum(v is not None for v in (target_ms, speedup, ratio)) != 1:
        raise OnnxPruneError("give exactly one of target_ms, speedup, ratio")
    loaded = load.load_model(model) if isinstance(model, str) else model
    samples = calib if calib is None or isinstance(calib, str) else from_feeds(calib, loaded)
    prep = prepare(loaded, shapes, importance, exclude, samples)
    config = config or runtime.RuntimeConfig()
    if ratio is not None:
        result = prune_ratio(prep, ratio, recovery, evaluate, max_drop)
        return Outcome(result.model, {"ratio": ratio, **quality_report(result)})
    tr = prune_to_target(prep, config, target_ms, speedup, floor, method,
                         cache_path or profile.default_cache_path(), progress=False,
                         steps=recovery, evaluate=evaluate, max_drop=max_drop)
    return Outcome(prep.original if tr.already_met else tr.result.model, target_report(prep.graph, tr))


def quality_report(result: PruneResult) -> dict:
    """Fidelity and recovery figures of a result, as plain data."""
    q = result.quality
    out: dict = {"params_before": result.params_before, "params_after": result.params_after,
                 "zero_filter_error": result.zero_filter_error}
    if q.fidelity is not None:
        out["fidelity"] = {**q.fidelity.as_dict(), "drop": q.drop, "baseline_metric": q.baseline_metric}
    if q.recovery is not None:
        out["recovery"] = {"steps": q.recovery.steps, "layers": q.recovery.layers}
    return out
