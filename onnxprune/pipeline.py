"""The pipeline the CLI and the Python API share: load -> normalise -> graph -> importance ->
plan -> rewrite -> verify -> write."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import onnx

from . import bench, load, profile, runtime, search, verify
from .errors import OnnxPruneError
from .graph import ChannelGraph, build_graph, matches, trace
from .importance import weight_importance
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


def prepare(model: onnx.ModelProto | str, shapes: dict[str, tuple[int, ...]] | None = None,
            norm: str = "l1", exclude: list[str] | None = None) -> Prepared:
    """Load (from a path) and normalise a model, build its channel graph and score channels.
    Groups whose name or member nodes match an ``exclude`` pattern are frozen."""
    original = load.load_model(model) if isinstance(model, str) else model
    normalised = load.normalise(original, shapes)
    graph = build_graph(normalised, shapes)
    weight_importance(graph, norm)
    for group in graph.groups:
        names = [s.node for s in group.sources] + [p.node for p in group.members]
        if exclude and any(matches(n, exclude) for n in names):
            group.frozen = [r or "excluded by --exclude" for r in group.frozen]
    return Prepared(original, normalised, graph, runtime.random_feeds(normalised, shapes), shapes or {})


def finish(prep: Prepared, plan: PrunePlan) -> PruneResult:
    """Apply ``plan``, verify the result (checker, onnxruntime, output shapes, zero-filter
    proof) and gather statistics."""
    pruned = apply_plan(prep.graph, plan)
    verify.check_model(pruned, prep.feeds, prep.model)
    err = verify.zero_filter_error(prep.graph, plan, prep.feeds) if plan.removed(prep.graph) else 0.0
    if err > 1e-4:
        raise OnnxPruneError(f"internal: pruned outputs differ from the zero-filter model ({err:.1e})")
    after_graph_shapes = trace(pruned, prep.shapes)[0]
    return PruneResult(
        pruned, plan, param_count(prep.model), param_count(pruned),
        conv_flops(prep.model, prep.graph.shapes), conv_flops(pruned, after_graph_shapes),
        err, sum(len(v) for v in plan.removed(prep.graph).values()),
    )


def prune_ratio(prep: Prepared, ratio: float) -> PruneResult:
    """Remove the ``ratio`` least important channels of every prunable group."""
    if not 0.0 <= ratio < 1.0:
        raise OnnxPruneError(f"--ratio must be in [0, 1), got {ratio}")
    return finish(prep, ratio_plan(prep.graph, ratio))


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


def prune_to_target(prep: Prepared, config: runtime.RuntimeConfig, target_ms: float | None = None,
                    speedup: float | None = None, floor: float = 0.25, method: str = "knapsack",
                    cache_path: str | None = None, band: float = 0.93,
                    progress: bool = True) -> TargetResult:
    """Latency-targeted pruning with the runtime in the loop (see :mod:`onnxprune.search`).

    Raises OnnxPruneError when the target is below the measured all-floor latency."""
    if not 0.0 < floor <= 1.0:
        raise OnnxPruneError(f"--floor must be in (0, 1], got {floor}")
    base_runner = bench.Runner(prep.model, prep.feeds, config)
    baseline = bench.measure(base_runner, rounds=40).median_ms
    if speedup is not None:
        if speedup <= 0:
            raise OnnxPruneError(f"--speedup must be positive, got {speedup}")
        target_ms = baseline / speedup
    if target_ms is None or target_ms <= 0:
        raise OnnxPruneError("the latency target must be positive")
    if baseline <= target_ms:
        return TargetResult(None, baseline, target_ms, None, None, already_met=True)
    run = profile.profile_model(prep.graph, config, profile.Cache(cache_path, config),
                                min_fraction=floor, progress=progress)
    choices = search.latency_choices(prep.graph, run.groups, floor)
    if not choices:
        raise OnnxPruneError("nothing prunable found: every channel group is frozen (see analyze)")

    def measure(widths: dict[int, int]) -> float:
        model = apply_plan(prep.graph, search.plan_for(prep.graph, widths))
        cmp = bench.compare(base_runner, bench.Runner(model, prep.feeds, config), rounds=20)
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
    result = finish(prep, search.plan_for(prep.graph, widths))
    final = bench.compare(base_runner, bench.Runner(result.model, prep.feeds, config), rounds=40)
    return TargetResult(result, baseline, target_ms, final, found, evolve_steps, widths,
                        profile_seconds=run.seconds)


def quick_latency(prep: Prepared, pruned: onnx.ModelProto, rounds: int = 20) -> bench.Comparison:
    """Interleaved A/B timing of the original and the pruned model (1 thread, CPU)."""
    a = bench.Runner(prep.original, prep.feeds)
    b = bench.Runner(pruned, prep.feeds)
    return bench.compare(a, b, rounds=rounds)


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
