"""Recover: bring a pruned model's outputs back towards the original's, without training.

Three steps, each switchable, applied in this order to the consumers of removed channels (the
nodes whose input-channel slices were cut and whose op spec gives a linear map: group=1 2-D
Conv, Gemm, MatMul; the others, e.g. ConvTranspose, are listed in ``RecoveryReport.skipped``).
Each op's linear map -- weight rows, input features, bias -- lives in its spec
(:class:`onnxprune.ops.LinearSpec`); the helpers below delegate to it.

1. ``bias`` -- bias compensation: the removed input channels' mean contribution
   ``sum_c mean(x_c) * sum_k W[o, c, k]`` is folded into the consumer's bias (exact for the
   mean of a linear consumer; ignores zero-padding at borders for k x k convs).
2. ``lsq`` -- least-squares refit of each consumer's kept input weights (and bias) so that its
   output on the pruned model's calibration activations matches the original layer's output
   (channel-pruning / ThiNet reconstruction). Solved in float64 with ridge regularisation
   towards the layer's current weights (calibration sets are small: stay close to the trained
   weights); a layer keeps its refit only if its reconstruction error drops.
3. ``bn`` -- BatchNormalization refit: each BN's per-channel affine is refitted so that its
   output on the pruned model is the least-squares fit of the original's on the calibration
   data (per channel, the original BN input regressed on the pruned one: a scale and an offset).

Each step is kept only if held-out fidelity does not get worse (checked after the step).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from . import calib, ops
from .distill import DEFAULT_SECONDS, Match, distill, selection_split
from .fidelity import Fidelity, fidelity
from .graph import ChannelGraph
from .linear import (
    _rows_to_weight,
    _targets,
    _weight_rows,
    design_rows,
    fold_error,
    linear,
    ridge_cv,
)
from .ops.base import attr
from .rewrite import PrunePlan, channel_masks

STEPS = ("bias", "lsq", "bn")  # the default steps
ALL_STEPS = (*STEPS, "distill")  # distill needs torch (the torch extra) and time
DISTILL_SECONDS = DEFAULT_SECONDS  # the distill step's default budget
BN_SAMPLES = 64  # the BN statistics step measures moments on this many fit samples


@dataclass
class Consumer:
    """A node whose input channels were cut: masks of its kept inputs and outputs."""

    index: int
    op: str
    keep_in: np.ndarray
    keep_out: np.ndarray
    x_axis: int = 1  # the channel axis of the node's input 0


@dataclass
class RecoveryReport:
    """Held-out fidelity after each step (and whether it was kept), per-layer refit errors,
    and the fidelity of the returned model."""

    steps: list[dict] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    final: Fidelity | None = None
    skipped: list[dict] = field(default_factory=list)  # consumers left alone, with why
    warnings: list[str] = field(default_factory=list)  # steps that failed, one line each


@dataclass(frozen=True)
class Cut:
    """What a plan cuts in a graph, computed once per recovery: ``mask(tensor)`` is the bool
    mask of the channels ``plan`` keeps on that tensor, and ``candidates`` lists, in graph
    order and each node once, ``(node index, kept input mask, skip reason)`` for every node
    whose input channels the plan cuts (reason '' when its spec can refit it)."""

    g: ChannelGraph
    mask: Callable[[str], np.ndarray]
    candidates: tuple[tuple[int, np.ndarray, str], ...]

    @classmethod
    def of(cls, g: ChannelGraph, plan: PrunePlan) -> Cut:
        mask = channel_masks(g, plan)
        found: dict[int, tuple[np.ndarray, str]] = {}
        index_of = {n.name: k for k, n in enumerate(g.model.graph.node)}
        for p in g.params:
            if p.role != "in" or p.node not in index_of:
                continue
            keep = mask(p.tensor)
            if keep.all():
                continue
            node = g.model.graph.node[index_of[p.node]]
            spec = linear(node)
            reason = f"no linear map for {node.op_type}" if spec is None else spec.refit_skip(
                node, g.consts[node.input[1]].shape)
            found.setdefault(index_of[p.node], (keep, reason))
        return cls(g, mask, tuple((k, *found[k]) for k in sorted(found)))


def consumers(cut: Cut) -> list[Consumer]:
    """The refittable nodes whose input channels the plan cuts, in graph order."""
    g, out = cut.g, []
    for index, keep, reason in cut.candidates:
        if reason:
            continue
        node = g.model.graph.node[index]
        y = node.output[0]
        lay = linear(node).layout(node, g.consts[node.input[1]].shape, len(g.shapes[y]))
        keep_out = cut.mask(y) if y in g.channels else np.ones(g.shapes[y][lay.y_axis], bool)
        out.append(Consumer(index, node.op_type, keep, keep_out, lay.x_axis))
    return out


def skipped(cut: Cut) -> list[dict]:
    """The nodes whose input channels the plan cuts but recovery leaves alone, with why."""
    return [{"node": cut.g.model.graph.node[index].name, "skipped": reason}
            for index, _, reason in cut.candidates if reason]


def _init(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name))


def _set(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    init = next((i for i in model.graph.initializer if i.name == name), None)
    new = numpy_helper.from_array(np.asarray(value), name)
    if init is None:
        model.graph.initializer.append(new)
    else:
        init.CopyFrom(new)


def _bias_name(model: onnx.ModelProto, index: int) -> str | None:
    """The consumer's bias initializer, created (zeros) when its op takes one but has none;
    None when its op has no bias (MatMul)."""
    node = model.graph.node[index]
    spec = linear(node)
    name = spec.bias_name(node)
    if name is None or name:
        return name
    w = _init(model, node.input[1])
    name = f"{node.name or node.output[0]}__recovered_bias"
    _set(model, name, np.zeros(spec.out_size(node, w.shape), dtype=w.dtype))
    while len(node.input) <= spec.bias_input:
        node.input.append("")
    node.input[spec.bias_input] = name
    return name


def bias_compensation(g: ChannelGraph, pruned: onnx.ModelProto, samples: calib.Samples, cons: list[Consumer]) -> onnx.ModelProto:
    """Fold the removed input channels' mean contribution into each consumer's bias."""
    model = copy.deepcopy(pruned)
    nodes = g.model.graph.node
    names = [nodes[c.index].input[0] for c in cons]
    sums = {n: 0.0 for n in names}
    counts = 0
    for out in calib.Tap(g.model, names).run(samples):
        counts += 1
        for c in cons:
            x = out[nodes[c.index].input[0]].astype(np.float64)
            axes = tuple(a for a in range(x.ndim) if a != c.x_axis)
            sums[nodes[c.index].input[0]] = sums[nodes[c.index].input[0]] + x.mean(axis=axes)
    for c in cons:
        node = nodes[c.index]
        name = _bias_name(model, c.index)
        if name is None:
            continue
        mean = sums[node.input[0]] / counts
        w = _weight_rows(node, g.consts[node.input[1]])  # original [out, fan_in]
        w = w.reshape(w.shape[0], len(c.keep_in), -1).sum(2)  # summed over kernel taps
        delta = w[:, ~c.keep_in] @ mean[~c.keep_in]
        bias = _init(model, name).astype(np.float64) + delta[c.keep_out]
        _set(model, name, bias.astype(_init(model, name).dtype))
    return model


def lsq_refit(g: ChannelGraph, pruned: onnx.ModelProto, samples: calib.Samples,
              cons: list[Consumer], seed: int = 0) -> tuple[onnx.ModelProto, list[dict]]:
    """Refit each consumer's kept weights (and bias) to the original layer's outputs, in graph
    order, each on the inputs the already-refitted model produces (so errors do not compound).
    The ridge strength (pull towards the current weights) is cross-validated per layer on the
    two halves of the samples."""
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(pruned)
    layers = []
    for c in cons:
        node = model.graph.node[c.index]
        y_name = g.model.graph.node[c.index].output[0]
        folds = []
        picks = None
        original = calib.Tap(g.model, [y_name], prefix=True)
        tap = calib.Tap(model, [node.input[0]], prefix=True)  # the model changes after every refit
        for part in calib.halves(samples):
            a = b = None
            tt = 0.0
            for (feed, got), ref in zip(tap.run_fed(part), original.run(part)):
                f, picks, rows = design_rows(node, got[node.input[0]], feed, rng, picks)
                t = _targets(node, ref[y_name].astype(np.float32), picks)[:, c.keep_out]
                t = t if rows is None else t[rows]
                fa, fb = (f.T @ f).astype(np.float64), (f.T @ t).astype(np.float64)
                a = fa if a is None else a + fa
                b = fb if b is None else b + fb
                tt += float((t.astype(np.float64) ** 2).sum())
            folds.append((a, b, tt))
        layers.append(_solve_layer(model, c.index, folds))
    return model, layers


def _solve_layer(model: onnx.ModelProto, index: int, folds: list) -> dict:
    """Cross-validated ridge least squares for one consumer (pulled towards its current
    weights); written back only if the error on all samples drops."""
    node = model.graph.node[index]
    w = _init(model, node.input[1])
    bias_name = _bias_name(model, index)
    rows = _weight_rows(node, w).astype(np.float64)
    bias = _init(model, bias_name).astype(np.float64) if bias_name else np.zeros(len(rows))
    old = np.hstack([rows, bias[:, None]])
    dim = old.shape[1] - (0 if bias_name else 1)
    folds = [(a[:dim, :dim], b[:dim], tt) for a, b, tt in folds]
    solved = np.zeros_like(old)
    solved[:, :dim], rel = ridge_cv(folds, old[:, :dim])
    a, b, tt = (sum(f[k] for f in folds) for k in range(3))
    before, after = fold_error(old[:, :dim], a, b, tt), fold_error(solved[:, :dim], a, b, tt)
    kept = after < before
    if kept:
        _set(model, node.input[1], _rows_to_weight(node, solved[:, :-1], w))
        if bias_name:
            _set(model, bias_name, solved[:, -1].astype(w.dtype))
    return {"node": node.name, "error_before": before, "error_after": after, "ridge": rel, "kept": kept}


def bn_recalibration(cut: Cut, pruned: onnx.ModelProto, samples: calib.Samples,
                     limit: int = BN_SAMPLES) -> onnx.ModelProto:
    """Refit each BatchNormalization's per-channel affine so that its output on the pruned
    model is the least-squares fit of the original model's (same samples, paired), in graph
    order, on up to ``limit`` of the samples: each BN is fitted on the model with every earlier
    BN already refitted (no drift is removed twice).

    Per kept channel, the original BN input is regressed on the pruned one, ``x_o ~ a x_p +
    b`` (``a = cov(x_o, x_p) / var(x_p)``), and the fit is folded into the BN's scale and bias
    (``BN(a x + b)``; running statistics unchanged). Matching moments instead (shifting the
    running mean by the mean drift and scaling the variance by the variance ratio, the step
    this replaces) is not a fit: pruning error inflates the pruned input's variance, and
    rescaling to the original variance shrinks the signal with the error. On MobileNetV2 cut
    10% uniformly, after ``lsq`` (held-out top-1 47.2%, distortion 0.871) moment matching gave
    44.9% / 0.869 and this refit 48.3% / 0.858. The fit's shrinkage ``a`` is the
    MSE-optimal one, so a channel's squared error at the BN never grows on the samples."""
    g, mask, model = cut.g, cut.mask, copy.deepcopy(pruned)
    opsets = ops.opset_versions(model)
    bns = [(k, spec, stats) for k, n in enumerate(model.graph.node)
           if (spec := ops.spec_for(n, opsets)) is not None and (stats := spec.running_stats(n))]
    samples = calib.spread(samples, limit)
    for index, spec, (mean_name, var_name) in bns:
        node = model.graph.node[index]
        scale_name, bias_name = (node.input[i] for i in spec.trainable_inputs)  # the spec's layout
        x = node.input[0]
        a, b = _paired_affine(g.model, model, x, samples, mask(x) if x in g.channels else None)
        if a is None:
            continue
        gamma, beta = _init(model, scale_name), _init(model, bias_name)
        mean, var = _init(model, mean_name).astype(np.float64), _init(model, var_name).astype(np.float64)
        eps = attr(node, "epsilon", 1e-5)
        scaled = gamma.astype(np.float64) / np.sqrt(var + eps)
        _set(model, scale_name, (gamma * a).astype(gamma.dtype))
        _set(model, bias_name, (beta + scaled * (b + (a - 1.0) * mean)).astype(beta.dtype))
    return model


def _paired_affine(original: onnx.ModelProto, pruned: onnx.ModelProto, name: str,
                   samples: calib.Samples, keep: np.ndarray | None
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per channel (axis 1) least-squares ``a, b`` of ``original[name] ~ a * pruned[name] + b``
    on the same samples, the original restricted to the ``keep`` channels; ``(None, None)``
    when the channel counts differ. A channel that does not vary keeps ``a = 1``."""
    sums = 0.0
    n = 0
    for o, p in zip(calib.Tap(original, [name], prefix=True).run(samples),
                    calib.Tap(pruned, [name], prefix=True).run(samples)):
        xo, xp = o[name].astype(np.float64), p[name].astype(np.float64)
        xo = xo if keep is None else xo[:, keep]
        if xo.shape != xp.shape:
            return None, None
        axes = (0, *range(2, xp.ndim))
        part = np.stack([xp.sum(axes), xo.sum(axes), (xp * xp).sum(axes), (xp * xo).sum(axes)])
        sums = sums + part
        n += xp.size // xp.shape[1]
    mp, mo, pp, po = sums / n
    var, cov = pp - mp * mp, po - mp * mo
    a = np.ones_like(var)
    varies = var > 1e-12 * np.maximum(pp, 1e-30)
    a[varies] = cov[varies] / var[varies]
    return a, mo - a * mp


def _score(f: Fidelity) -> float:
    """Higher is closer to the original (top-1 or nearest-neighbour agreement first, then
    output cosine)."""
    first = f.agreement if f.agreement is not None else f.neighbours
    return (first or 0.0) + min(f.cosine.values())


def block_ends(cut: Cut, pruned: onnx.ModelProto) -> list[Match]:
    """The intermediate tensors distillation matches (:class:`onnxprune.distill.Match`): the
    outputs of the nodes whose input channels the cut removes (the ends of the pruned blocks,
    the tensors the least-squares refits aim at), each carried through a per-channel affine
    node that alone reads it (a BatchNormalization, see :func:`_channel_affine`: its output
    is the block's normalised end). Graph outputs (matched anyway), tensors without a
    tracked channel axis or whose channel axis a reshape split, and tensors the pruned model
    lacks are left out. The student keeps the channels the cut keeps."""
    g, mask = cut.g, cut.mask
    outputs = {o.name for o in g.model.graph.output}
    have = {o for n in pruned.graph.node for o in n.output}
    found: dict[str, Match] = {}
    for index, _, _ in cut.candidates:
        y = g.model.graph.node[index].output[0]
        affine = g.affine_reader(y)
        if affine is not None:
            y = affine[0].output[0]
        ch = g.channels.get(y)
        if ch is None or y in outputs or y not in have or y in found or ch.block:
            continue
        keep = mask(y)
        found[y] = Match(y, y, ch.axis, None if keep.all() else keep)
    return list(found.values())


def _step(step: str, cut: Cut, current: onnx.ModelProto,
          fit: calib.Samples, cons: list[Consumer],
          report: RecoveryReport, distill_seconds: float) -> tuple[onnx.ModelProto, dict]:
    """One recovery step on ``current``: ``(candidate model, report extras)``."""
    if step == "bias":
        return bias_compensation(cut.g, current, fit, cons), {}
    if step == "lsq":
        candidate, report.layers = lsq_refit(cut.g, current, fit, cons)
        return candidate, {}
    if step == "bn":
        return bn_recalibration(cut, current, fit), {}
    train, select = selection_split(fit)  # the held-out samples judge the result, once
    candidate, extra = distill(cut.g.model, current, train, select, distill_seconds,
                               match=block_ends(cut, current))
    return candidate, {"distill": extra}


def recover(g: ChannelGraph, plan: PrunePlan, pruned: onnx.ModelProto, fit: calib.Samples,
            held_out: calib.Samples, reference: dict[str, np.ndarray],
            steps: tuple[str, ...] = STEPS, distill_seconds: float = DISTILL_SECONDS
            ) -> tuple[onnx.ModelProto, RecoveryReport]:
    """Apply the chosen recovery steps; each is kept only if held-out fidelity does not drop.
    ``distill`` (gradient-based, :mod:`onnxprune.distill`) runs last, for ``distill_seconds``."""
    report = RecoveryReport()
    cut = Cut.of(g, plan)
    cons = consumers(cut)
    current = pruned
    best = fidelity(reference, current, held_out)
    report.steps.append({"step": "none", **best.as_dict(), "kept": True})
    for step in ALL_STEPS:
        if step not in steps:
            continue
        try:
            candidate, extra = _step(step, cut, current, fit, cons, report, distill_seconds)
        except Exception as exc:  # noqa: BLE001 -- an optional stage degrades, never ends the run
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            report.steps.append({"step": step, **best.as_dict(), "kept": False, "failed": why})
            report.warnings.append(f"recovery step {step!r} failed ({why}); it was skipped")
            continue
        if not extra.get("distill", {"kept": True}).get("kept"):  # distill skipped or no gain
            report.steps.append({"step": step, **best.as_dict(), "kept": False, **extra})
            continue
        got = fidelity(reference, candidate, held_out)
        kept = _score(got) >= _score(best)
        report.steps.append({"step": step, **got.as_dict(), "kept": kept, **extra})
        if kept:
            current, best = candidate, got
    report.final = best
    report.skipped = skipped(cut)
    return current, report
