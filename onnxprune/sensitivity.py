"""Sensitivity: which channels to cut and what cutting them does to the outputs, measured on
calibration data (the *value* side of the search; latency is the cost side, see profile).

Three measured quantities, all on the *unpruned* model's calibration activations:

* **Consumer statistics.** For every linear consumer of tracked channels (Conv with group 1,
  Gemm, MatMul: the ``in`` member slices of the channel graph), the second-moment matrix
  ``H = E[f f^T]`` of its fan-in features ``f`` (for a k x k conv: every input channel times
  every kernel tap, sampled output positions; for Gemm/MatMul: the input vector), plus a
  constant feature for the bias. Input position ``c`` of a consumer owns the feature block
  ``[c K, (c + 1) K)`` (``K`` = kernel taps, 1 for Gemm/MatMul): the consumer weight
  ``W[out, fan_in]`` columns of that block are its input slice.
* **Reconstruction selection.** Removing a set ``S`` of input features and refitting the kept
  weights by least squares costs ``tr(W_S (H^-1)_SS^-1 W_S^T)`` of output error (optimal brain
  surgeon, block form). Per group, channels are removed greedily (a few at a time) by that cost
  summed over the group's consumers, each divided by its output energy ``tr(W H W^T)``, with the
  OBS update of ``H^-1`` after every removal: ``Group.order`` is the resulting removal order
  (first removed first). Channels whose consumers have no statistics keep their importance
  order (see :meth:`onnxprune.graph.Group.removal_order`).
* **Sensitivity table.** For each group and candidate width: the distortion of the model's
  outputs on calibration samples when only that group is cut to that width, after the local
  refit that recovery applies (kept consumer weights solved by ridge regression towards their
  original values, bias included). Distortion per output: KL divergence of the softmax for
  classifier-like outputs ``[N, K]``, else squared relative L2 error; summed over outputs
  (:func:`onnxprune.fidelity.distortion`).
  Cutting is emulated exactly by zeroing the removed input slices (the zero-filter proof shows
  this equals the pruned model), with the consumer weights fed as graph inputs so one session
  per group serves every width; only the graph from the group's first consumer on runs, on
  the unpruned activations there, collected for many groups in one run (:class:`Boundaries`).
  A group with many candidate widths (a wide FFN's noisy staircase) is measured at
  ``TABLE_POINTS`` of them spread over its range, the narrowest included; the others are
  interpolated linearly in the removed count between measured neighbours (distortion grows
  smoothly as the fixed removal order goes on). The table's cost is bounded by the model's
  (:func:`plan_table`): a costly model is measured at fewer widths, then on fewer samples.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from . import cachefile, calib, load, progress, runtime, runtimes
from .fidelity import distortion, outputs_on
from .graph import ChannelGraph, Group
from .linear import _rows_to_weight, _weight_rows, design_rows, linear, ridge_solve, ridge_strength
from .stats import node_macs

TABLE_POINTS = 8  # widths measured per group; the rest of its candidates are interpolated
MIN_POINTS = 4  # ... when the model is too costly for TABLE_POINTS (see plan_table)
MIN_SAMPLES = 8  # the fewest samples a costly model's table is measured on
TABLE_MACS = 4e12  # multiply-accumulates a table may take before it measures less
ELEMENT_MACS = 50  # what writing one tensor element costs, counted in multiply-accumulates
ACTIVATION_BUDGET = 1 << 30  # bytes of probe inputs the table collects in one run
MAX_FAN_IN = 4608  # larger consumers (e.g. a Gemm after Flatten) get no statistics
_DAMP = 0.01  # H is damped by this share of its mean diagonal (rank-deficient activations)


@dataclass
class ConsumerStats:
    """Fan-in second moments of one linear consumer on the unpruned model.

    ``folds``: two ``[F + 1, F + 1]`` mean Gram matrices (constant bias feature last), of the
    first and the second half of the samples; ``h`` is their mean. ``taps``: features per input
    position (kernel taps); ``weight``: ``W[out, F]`` rows (see linear._weight_rows); ``bias``:
    ``[out]`` (zeros when the node has none); ``energy``: ``tr(W~ H W~^T)``."""

    node: str
    param: str
    tensor: str
    taps: int
    folds: tuple[np.ndarray, np.ndarray]
    weight: np.ndarray
    bias: np.ndarray
    energy: float

    @property
    def h(self) -> np.ndarray:
        return (self.folds[0] + self.folds[1]) / 2

    def wfull(self) -> np.ndarray:
        return np.hstack([self.weight, self.bias[:, None]])

    def features_of(self, positions: np.ndarray) -> np.ndarray:
        return (positions[:, None] * self.taps + np.arange(self.taps)[None, :]).ravel()

    def refit(self, removed_positions: np.ndarray, first_fold_only: bool = False,
              rel: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Weights ``[out, F]`` (removed columns zero), bias and ridge strength after the
        least-squares refit of the kept features to the original output, pulled towards the
        original weights with a cross-validated strength
        (:func:`onnxprune.linear.ridge_strength`) unless ``rel`` gives it. ``first_fold_only``:
        solve on the first half of the samples only, so the second half can score it honestly."""
        full = self.wfull()
        keep = np.ones(len(full[0]), dtype=bool)
        keep[self.features_of(removed_positions)] = False
        folds = [(h[np.ix_(keep, keep)], h[keep] @ full.T, float(np.sum((full @ h) * full)))
                 for h in self.folds]
        if rel is None:
            rel = ridge_strength(folds, full[:, keep])
        a, b = (folds[0][:2] if first_fold_only
                else (folds[0][0] + folds[1][0], folds[0][1] + folds[1][1]))
        solved = ridge_solve(a, b, full[:, keep], rel)
        out = np.zeros_like(full)
        out[:, keep] = solved
        return out[:, :-1], out[:, -1], rel


def linear_consumers(g: ChannelGraph) -> list[tuple[onnx.NodeProto, object]]:
    """``(node, member slice)`` for every ``in`` member slice of a node whose spec gives a
    refittable linear map (see :class:`onnxprune.ops.LinearSpec`), when the slice follows the
    node's real first input and the input's channels are on the spec's input axis."""
    nodes = {n.name: n for n in g.model.graph.node}
    out = []
    for p in g.params:
        node = nodes.get(p.node)
        if p.role != "in" or node is None or p.param != node.input[1] or p.tensor != node.input[0]:
            continue
        spec = linear(node)
        w_shape = g.consts[p.param].shape
        if spec is None or spec.refit_skip(node, w_shape):
            continue
        lay = spec.layout(node, w_shape, len(g.shapes[node.output[0]]))
        if g.channels[p.tensor].axis % len(g.shapes[p.tensor]) == lay.x_axis % len(g.shapes[p.tensor]):
            out.append((node, p))
    return out


def consumer_stats(g: ChannelGraph, samples: calib.Samples, max_fan_in: int = MAX_FAN_IN,
                   seed: int = 0) -> dict[str, ConsumerStats]:
    """Second moments of every linear consumer's fan-in on ``samples`` (keyed by weight name)."""
    rng = np.random.default_rng(seed)
    picked = []
    for node, p in linear_consumers(g):
        rows = _weight_rows(node, g.consts[p.param])
        taps = rows.shape[1] // len(g.channels[p.tensor].labels)  # fan-in per input position
        if rows.shape[1] <= max_fan_in:
            picked.append((node, p, taps, rows))
    if not picked:
        return {}
    acc: dict[tuple[str, int], np.ndarray] = {}
    count: dict[tuple[str, int], int] = {}
    picks: dict[str, np.ndarray | None] = {}
    tap = calib.Tap(g.model, sorted({p.tensor for _, p, _, _ in picked}))
    for k, part in enumerate(calib.halves(samples)):
        for feed, out in tap.run_fed(part):
            for node, p, _, _ in picked:
                f, picks[p.param], _ = design_rows(node, out[p.tensor], feed, rng, picks.get(p.param))
                acc[p.param, k] = acc.get((p.param, k), 0) + (f.T @ f).astype(np.float64)
                count[p.param, k] = count.get((p.param, k), 0) + len(f)
    stats = {}
    for node, p, taps, rows in picked:
        folds = tuple(acc[p.param, k] / count[p.param, k] for k in (0, 1))
        h = (folds[0] + folds[1]) / 2
        bias_name = linear(node).bias_name(node)
        bias = (g.consts[bias_name].astype(np.float64).reshape(-1) if bias_name in g.consts
                else np.zeros(len(rows)))
        if bias_name is None:  # the op takes no bias: the constant feature must not be used
            for f in folds:
                f[-1, :-1] = f[:-1, -1] = 0.0
        full = np.hstack([rows.astype(np.float64), bias[:, None]])
        energy = float(np.sum((full @ h) * full))
        stats[p.param] = ConsumerStats(node.name, p.param, p.tensor, taps, folds,
                                       rows.astype(np.float64), bias, max(energy, 1e-30))
    return stats


def _positions(g: ChannelGraph, group: Group, tensor: str) -> list[np.ndarray]:
    """For each channel of ``group``: its positions along ``tensor``'s channel axis."""
    roots = g.roots(g.channels[tensor].labels)
    index = {int(r): i for i, r in enumerate(group.classes)}
    out: list[list[int]] = [[] for _ in range(group.width)]
    for pos, r in enumerate(roots.tolist()):
        if r in index:
            out[index[r]].append(pos)
    return [np.asarray(v, dtype=np.int64) for v in out]


def group_consumers(g: ChannelGraph, group: Group, stats: dict[str, ConsumerStats]) -> list[ConsumerStats]:
    names = {p.param for p in group.members if p.role == "in"}
    return [stats[n] for n in sorted(names) if n in stats]


def reconstruction_order(g: ChannelGraph, group: Group, stats: dict[str, ConsumerStats],
                         stop: int = 1) -> np.ndarray | None:
    """Greedy OBS removal order of ``group``'s prunable channels (first removed first), or None
    when none of its consumers has statistics. Channels are removed ``~n/12`` at a time (one at
    a time for the last 24) until ``stop`` remain (the rest follow by their last cost). The
    removed features leave ``H^-1`` and the weights after each update, so steps get cheaper."""
    cons = group_consumers(g, group, stats)
    prunable = group.prunable
    if not cons or len(prunable) == 0:
        return None
    state = _obs_state(g, group, cons)
    if state is None:
        return None
    alive = np.ones(len(prunable), dtype=bool)
    order: list[int] = []
    cost = np.zeros(len(prunable))
    while alive.sum() > stop:
        idx = np.flatnonzero(alive)
        cost = _removal_costs(state, idx, len(prunable))
        chunk = max(1, int(alive.sum() - stop) // 12 if alive.sum() - stop > 24 else 1)
        pick = idx[np.argsort(cost[idx], kind="stable")[:chunk]]
        for st in state:
            _eliminate(st, pick)
        alive[pick] = False
        order.extend(int(prunable[k]) for k in pick)
    rest = np.flatnonzero(alive)
    order.extend(int(prunable[k]) for k in rest[np.argsort(cost[rest], kind="stable")])
    return np.asarray(order, dtype=np.int64)


def _obs_state(g: ChannelGraph, group: Group, cons: list[ConsumerStats]) -> list[list] | None:
    """One ``[blocks, H^-1, weights, energy]`` per consumer in ``cons``: ``blocks[k]`` the
    feature indices of ``group``'s k-th prunable channel (the same count for every channel),
    ``H^-1`` the inverse of its damped Gram matrix, ``weights`` its full weight matrix (bias
    column last). None when some consumer's channels differ in feature count or have none."""
    state = []
    for c in cons:
        pos = _positions(g, group, c.tensor)
        blocks = [c.features_of(pos[i]) for i in group.prunable]
        if len({len(b) for b in blocks}) != 1 or len(blocks[0]) == 0:
            return None
        d = np.diag(c.h)
        hinv = np.linalg.inv(c.h + _DAMP * float(d[:-1].mean() or 1.0) * np.eye(len(c.h)))
        state.append([np.asarray(blocks), hinv, c.wfull(), c.energy])
    return state


def _removal_costs(state: list[list], idx: np.ndarray, n: int) -> np.ndarray:
    """OBS cost of removing each channel in ``idx`` alone (the output energy its consumers lose
    after the best update of their other weights, each relative to the consumer's energy,
    summed over consumers in order); 0 for the other of the ``n`` channels."""
    cost = np.zeros(n)
    for blocks, hinv, w, energy in state:
        b = blocks[idx]  # [n, K]
        sub = hinv[b[:, :, None], b[:, None, :]]
        inv = np.linalg.inv(sub + 1e-12 * np.eye(b.shape[1]))
        wb = w[:, b]  # [out, n, K]
        cost[idx] += np.einsum("oik,ikl,oil->i", wb, inv, wb) / energy
    return cost


def _eliminate(st: list, pick: np.ndarray) -> None:
    """Remove channels ``pick``'s features from one consumer's ``[blocks, H^-1, weights, _]``
    (in place): the OBS update of the weights and ``H^-1``, then the removed features dropped
    from both and ``blocks`` renumbered (-1 for a removed feature)."""
    blocks, hinv, w, _ = st
    feats = blocks[pick].ravel()
    m = np.linalg.inv(hinv[np.ix_(feats, feats)] + 1e-12 * np.eye(len(feats)))
    w = w - (w[:, feats] @ m) @ hinv[feats]
    hinv = hinv - (hinv[:, feats] @ m) @ hinv[feats]
    live = np.ones(len(hinv), dtype=bool)  # removed features are eliminated: drop them
    live[feats] = False
    new_index = np.cumsum(live) - 1
    st[0] = np.where(live[blocks], new_index[blocks], -1)
    st[1], st[2] = hinv[np.ix_(live, live)], w[:, live]


def select_by_reconstruction(g: ChannelGraph, stats: dict[str, ConsumerStats],
                             floor: float = 0.0) -> int:
    """Set ``group.order`` of every prunable group that has consumer statistics; returns how
    many groups got one. The greedy stops at the floor width (narrower widths are never used)."""
    done = 0
    for group in g.prunable_groups():
        frozen = group.width - len(group.prunable)
        stop = max(1, int(np.ceil(floor * group.width)) - frozen)
        order = reconstruction_order(g, group, stats, stop)
        if order is not None:
            group.order = order
            done += 1
    return done


def first_reader(nodes: list[onnx.NodeProto], fed: set[str]) -> int:
    """Index of the first of ``nodes`` reading one of the tensors ``fed``."""
    return min(k for k, n in enumerate(nodes) if fed & set(n.input))


def _needed(model: onnx.ModelProto, nodes: list, keep: set[int], inits: set[str]) -> list[str]:
    """What the ``keep`` nodes read that they do not make themselves: graph outputs made
    elsewhere and activations (graph inputs included), in first-use order."""
    kept = [n for k, n in enumerate(nodes) if k in keep]
    made = {o for n in kept for o in n.output}
    needed = [o.name for o in model.graph.output if o.name not in made]
    needed += [i for n in kept for i in n.input if i and i not in made and i not in inits]
    return list(dict.fromkeys(needed))


class Boundaries:
    """The unpruned model's values on ``samples`` at the tensors where probes start (their
    graph inputs), shared by the probes of one table. ``coming`` lists, in order, what the
    probes still to be built will read; :meth:`get` collects what is missing in one prefix run
    together with what the next probes read, as long as that fits ``budget`` bytes, and
    :meth:`advance` forgets what no coming probe reads. A value is the same as one run per
    probe gives (the same prefix computation on the same batches); ``major[name]``: whether it
    has the samples on its first axis (see :func:`onnxprune.calib.batch_major`), else it is
    stacked per batch (a scalar, a computed shape).

    With a ``folder`` (a temporary one the caller removes), the model's big weights are written
    there once and ``light`` is the model referring to them (:func:`onnxprune.load.offloaded`):
    :meth:`place` turns a probe made from ``light`` into a file there, so each probe session
    reads the shared weights instead of a serialized copy. Without one, ``light`` is the model."""

    def __init__(self, model: onnx.ModelProto, samples: calib.Samples,
                 coming: list[list[str]] | None = None, sizes: dict[str, int] | None = None,
                 budget: int = ACTIVATION_BUDGET, folder: str | None = None,
                 arrays: dict[str, np.ndarray] | None = None):
        self.model, self.samples, self.budget, self.folder = model, samples, budget, folder
        self.light = load.offloaded(model, folder, arrays or {}) if folder else model
        self.placed = 0
        self.coming = [list(c) for c in coming or []]
        self.sizes = sizes or {}  # bytes per sample, where known
        self.values: dict[str, np.ndarray] = {}
        self.major: dict[str, bool] = dict.fromkeys(samples, True)
        self.passes = 0

    def get(self, names: list[str]) -> dict[str, np.ndarray]:
        missing = [n for n in dict.fromkeys(names) if n not in self.samples and n not in self.values]
        if missing:
            room = self.budget - self._bytes(missing)
            for later in self.coming:
                extra = [n for n in dict.fromkeys(later)
                         if n not in self.samples and n not in self.values and n not in missing]
                if self._bytes(extra) > room:
                    break
                room -= self._bytes(extra)
                missing += extra
            got = calib.Tap(self.model, missing, prefix=True).collect(self.samples, missing)
            n = calib.count(self.samples)
            self.values.update(got)
            self.major.update({k: calib.batch_major(v, n) for k, v in got.items()})
            self.passes += 1
        return {n: self.samples[n] if n in self.samples else self.values[n] for n in names}

    def place(self, probe: onnx.ModelProto) -> onnx.ModelProto | str:
        """What a session loads for ``probe`` (made from ``light``): a file in the folder, else
        the model itself."""
        if not self.folder:
            return probe
        self.placed += 1
        path = os.path.join(self.folder, f"probe-{self.placed}.onnx")
        with open(path, "wb") as f:
            f.write(probe.SerializeToString())
        return path

    def advance(self) -> None:
        """The next coming probe is built: keep only what the later ones read."""
        if self.coming:
            self.coming.pop(0)
        still = {n for c in self.coming for n in c}
        for name in [n for n in self.values if n not in still]:
            del self.values[name]

    def _bytes(self, names: list[str]) -> int:
        return calib.count(self.samples) * sum(self.sizes.get(n, 0) for n in names)


class GroupProbe:
    """The unpruned model with one group's consumer weights (and biases) as graph inputs: runs
    the model with any cut of that group (zeroed input slices, refitted kept weights). Only the
    part of the graph from the group's first consumer on is run, on cached activations. Each
    consumer's ridge strength is cross-validated at the first cut asked for and reused for
    the others (the table asks for its middle width first). The activations it starts from
    come from ``boundaries`` (one shared by the probes of a table), else from a run of its own."""

    def __init__(self, g: ChannelGraph, group: Group, stats: dict[str, ConsumerStats],
                 samples: calib.Samples, boundaries: Boundaries | None = None):
        self.g, self.group, self.samples = g, group, samples
        self.nodes = {n.name: n for n in g.model.graph.node}
        self._positions: dict[str, list[np.ndarray]] = {}
        self.slices = [p for p in group.members if p.role == "in"]
        self.stats = group_consumers(g, group, stats)
        self.strength: dict[str, float] = {}
        boundaries = boundaries or Boundaries(g.model, samples)
        model = onnx.ModelProto()
        model.CopyFrom(boundaries.light)
        fed = {p.param for p in self.slices}
        nodes = {n.name: n for n in model.graph.node}
        self.bias_names: dict[str, str] = {}
        for c in self.stats:
            node = nodes[c.node]
            spec = linear(node)
            name = spec.bias_name(node)
            if name is None:
                continue
            if not name:
                name = f"{c.param}__probe_bias"
                model.graph.initializer.append(numpy_helper.from_array(
                    np.zeros(len(c.bias), dtype=g.consts[c.param].dtype), name))
                while len(node.input) <= spec.bias_input:
                    node.input.append("")
                node.input[spec.bias_input] = name
            self.bias_names[c.param] = name
            fed.add(name)
        self.base = {i.name: g.consts[i.name] if i.name in g.consts else numpy_helper.to_array(i)
                     for i in model.graph.initializer if i.name in fed}
        self.inputs = self._cut(model, fed, boundaries)
        for name, value in self.base.items():
            model.graph.input.append(onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(value.dtype), value.shape))
        load.derived(model)
        self.session = runtimes.session(boundaries.place(model),
                                        runtimes.RuntimeConfig(threads=os.cpu_count() or 1))
        self.batch, self.static = calib.batch_size(g.model)

    def _cut(self, model: onnx.ModelProto, fed: set[str], boundaries: Boundaries) -> calib.Samples:
        """Keep only the nodes from the first one reading a fed weight on (the cut changes
        nothing before it); the activations they read from earlier nodes become graph inputs,
        fed from one run of the unpruned model (``boundaries``). Tensors without a batch axis
        (scalars, computed shapes: they may depend on the batch size) are recomputed instead:
        their producers join the kept nodes. Returns the fed inputs over the samples."""
        nodes = list(model.graph.node)
        producer = {o: k for k, n in enumerate(nodes) for o in n.output}
        inits = {i.name for i in model.graph.initializer}
        keep = set(range(first_reader(nodes, fed), len(nodes)))
        while True:
            needed = _needed(model, nodes, keep, inits)
            feeds = boundaries.get(needed)
            loose = {producer[n] for n in needed if n in producer and not boundaries.major[n]}
            if not loose:
                break
            keep |= loose
        kept = [n for k, n in enumerate(nodes) if k in keep]
        del model.graph.node[:]
        model.graph.node.extend(kept)
        used = {i for n in kept for i in n.input} | {o.name for o in model.graph.output}
        inits_kept = [i for i in model.graph.initializer if i.name in used and i.name not in fed]
        del model.graph.initializer[:]
        model.graph.initializer.extend(inits_kept)
        del model.graph.input[:]
        for name in needed:
            value = feeds[name]
            model.graph.input.append(onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(value.dtype), ["N", *value.shape[1:]]))
        return feeds

    def weights(self, removed: np.ndarray, refit: bool = True) -> dict[str, np.ndarray]:
        """Feeds for the cut removing channel indices ``removed`` of the group."""
        feeds = {k: v.copy() for k, v in self.base.items()}
        for p in self.slices:
            index = [slice(None)] * feeds[p.param].ndim
            index[p.axis] = self.removed_positions(p.tensor, removed)
            feeds[p.param][tuple(index)] = 0
        if refit:
            for c in self.stats:
                rows, bias, self.strength[c.param] = c.refit(
                    self.removed_positions(c.tensor, removed), True, self.strength.get(c.param))
                feeds[c.param] = _rows_to_weight(self.nodes[c.node], rows, self.base[c.param])
                if c.param in self.bias_names:
                    name = self.bias_names[c.param]
                    feeds[name] = bias.astype(self.base[name].dtype).reshape(self.base[name].shape)
        return feeds

    def removed_positions(self, tensor: str, removed: np.ndarray) -> np.ndarray:
        """Positions along ``tensor``'s channel axis of the group channels ``removed``."""
        if tensor not in self._positions:
            self._positions[tensor] = _positions(self.g, self.group, tensor)
        per = self._positions[tensor]
        return np.concatenate([per[i] for i in removed]) if len(removed) else np.zeros(0, np.int64)

    def outputs(self, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs over the samples with the consumer weights ``weights``."""
        names = [o.name for o in self.session.get_outputs()]
        got = [runtime.run_outputs(self.session, {**feed, **weights})
               for feed in calib.batches(self.inputs, self.batch, self.static)]
        return {n: np.concatenate([part[n] for part in got]) for n in names}


@dataclass
class Table:
    """``values[group id][width]``: measured distortion when only that group is cut to that
    width (0 at full width), and how it was measured."""

    values: dict[int, dict[int, float]] = field(default_factory=dict)
    samples: int = 0
    seconds: float = 0.0
    cached: bool = False
    points: int = TABLE_POINTS

    def to_dict(self) -> dict:
        return {"samples": self.samples, "points": self.points, "seconds": self.seconds,
                "cached": self.cached,
                "values": {str(g): {str(w): v for w, v in row.items()} for g, row in self.values.items()}}


def sensitivity_table(g: ChannelGraph, widths: dict[int, list[int]], samples: calib.Samples,
                      stats: dict[str, ConsumerStats], refit: bool = True,
                      cache_dir: str | None = None, budget: float = TABLE_MACS) -> Table:
    """Distortion per group and width (see the module docstring), on as many of ``samples``
    and at as many widths per group as ``budget`` allows (:func:`plan_table`); cached on disk
    under ``cache_dir``, one file per model, samples and settings, one entry per group (keyed
    by its widths, channel order and consumer statistics), each written as soon as it is
    measured (:func:`measure_rows`): an interrupted table resumes at the group it stopped in,
    and runs sharing the cache keep each other's groups. The probes' starting activations are
    collected for several groups per run (:class:`Boundaries`)."""
    start = time.perf_counter()
    plan = plan_table(g, widths, samples, stats, budget)
    samples = plan.samples
    path = (os.path.join(cache_dir, f"{_table_key(g, samples, refit, plan.points)}.json")
            if cache_dir else None)
    keys = {gid: _group_key(g, g.groups[gid], ws, stats) for gid, ws in widths.items()}
    table = Table(samples=calib.count(samples), points=plan.points)
    state: dict[str, object] = {}

    def row(gid: int) -> dict[int, float]:
        if not state:
            todo = [gid2 for gid2 in widths if keys[gid2] not in cachefile.read(path)] or [gid]
            state["reference"] = outputs_on(g.model, samples)
            state["boundaries"] = Boundaries(g.model, samples, [plan.reads[k] for k in todo],
                                             plan.sizes, folder=folder, arrays=g.consts)
        boundaries = state["boundaries"]
        probe = GroupProbe(g, g.groups[gid], stats, samples, boundaries)
        boundaries.advance()
        return _row(probe, widths[gid], state["reference"], refit, plan.points)

    with tempfile.TemporaryDirectory(prefix="onnxprune-probes-") as folder:
        table.values, found = measure_rows("sensitivity table", keys, row, path,
                                           lambda gid: progress.short(g.groups[gid].name))
    table.cached = found == len(widths)
    table.seconds = time.perf_counter() - start
    return table


def measure_rows(title: str, keys: dict[int, str], row: Callable[[int], dict[Hashable, float]],
                 path: str | None, label: Callable[[int], str],
                 column: Callable[[str], Hashable] = int) -> tuple[dict[int, dict[Hashable, float]], int]:
    """A table measured a row at a time (any kind: a group's widths, its precisions):
    ``row(item)`` for every item of ``keys`` whose key the cache file ``path`` lacks, each row
    stored there as soon as it is measured (a stopped run keeps every row it finished; runs
    sharing the file keep each other's rows), one progress item per row; ``column`` reads a
    stored column name back. Returns the rows and how many came from the cache."""
    stored = cachefile.read(path)
    rows: dict[int, dict[Hashable, float]] = {}
    found = 0
    with progress.stage(title, len(keys), "group") as stage:
        for item, key in keys.items():
            if key in stored:
                rows[item] = {column(w): v for w, v in stored[key].items()}
                found += 1
            else:
                rows[item] = row(item)
                if path:
                    stored = cachefile.update(path, {key: {str(w): v for w, v in rows[item].items()}})
            stage.advance(f"{item} {label(item)}")
        stage.summary = f"{len(keys) - found} groups measured, {found} from cache"
    return rows, found


@dataclass
class TablePlan:
    """What a table measures: ``samples`` (spread over the given ones), ``points`` widths per
    group at most, ``reads[group id]``: the activations its probe starts from; ``sizes``: bytes
    per sample of each; ``cost``: the multiply-accumulates all probe runs take."""

    samples: calib.Samples
    points: int
    reads: dict[int, list[str]]
    sizes: dict[str, int]
    cost: float


def plan_table(g: ChannelGraph, widths: dict[int, list[int]], samples: calib.Samples,
               stats: dict[str, ConsumerStats], budget: float = TABLE_MACS) -> TablePlan:
    """The most thorough table that costs at most ``budget`` multiply-accumulates: a group's
    probe runs the graph from its first consumer on once per sample and measured width, so the
    cost is the sum over groups of that suffix's MACs times samples times widths. The measured
    widths per group go down from ``TABLE_POINTS`` to ``MIN_POINTS`` first, then the samples
    (evenly spread over the given ones) to ``MIN_SAMPLES``; a model cheap enough keeps every
    sample and ``TABLE_POINTS`` (below that floor the cost may exceed the budget)."""
    nodes = list(g.model.graph.node)
    inits = {i.name for i in g.model.graph.initializer}
    per_node = node_costs(g)
    batch = max(1, int((g.shapes.get(next(iter(samples))) or (1,))[0] or 1))
    tail = np.cumsum(per_node[::-1])[::-1].tolist() + [0]  # MACs from node k on, per batch
    reads, suffix = {}, {}
    for gid in widths:
        first = first_reader(nodes, probe_fed(g, g.groups[gid], stats))
        reads[gid] = _needed(g.model, nodes, set(range(first, len(nodes))), inits)
        suffix[gid] = tail[first] / batch
    sizes = {n: _sample_bytes(g, n) for names in reads.values() for n in names}
    total = calib.count(samples)

    def cost(points: int, n: int) -> float:
        return n * sum(suffix[gid] * len(measured_widths(
            [w for w in ws if w < g.groups[gid].width], points)) for gid, ws in widths.items())

    points, n = TABLE_POINTS, total
    while points > MIN_POINTS and cost(points, n) > budget:
        points -= 1
    while n > min(MIN_SAMPLES, total) and cost(points, n) > budget:
        n = max(min(MIN_SAMPLES, total), int(n * budget / cost(points, n)))
    picked = np.linspace(0, total - 1, n).round().astype(int) if n < total else np.arange(total)
    return TablePlan(calib.take(samples, picked), points, reads, sizes, cost(points, n))


def node_costs(g: ChannelGraph) -> list[float]:
    """Each node's cost in multiply-accumulates: its MACs (:func:`onnxprune.stats.node_macs`)
    plus ``ELEMENT_MACS`` per element it writes (at high resolution the memory-bound ops, the
    upsamplings, activations and adds of a detector's neck and head, cost as much as the
    convolutions), at the traced shapes."""
    out = []
    for node, m in zip(g.model.graph.node, node_macs(g.model, g.shapes)):
        written = sum(int(np.prod(g.shapes[o], dtype=np.int64)) for o in node.output
                      if _sample_bytes(g, o) or g.shapes.get(o) == ())
        out.append(m + ELEMENT_MACS * written)
    return out


def probe_fed(g: ChannelGraph, group: Group, stats: dict[str, ConsumerStats]) -> set[str]:
    """The weights (and existing biases) a probe of ``group`` feeds: its consumers' ``in``
    slices' weights and the biases of those it refits."""
    nodes = {n.name: n for n in g.model.graph.node}
    fed = {p.param for p in group.members if p.role == "in"}
    for c in group_consumers(g, group, stats):
        name = linear(nodes[c.node]).bias_name(nodes[c.node])
        if name:
            fed.add(name)
    return fed


def _sample_bytes(g: ChannelGraph, name: str) -> int:
    """Bytes per sample of tensor ``name`` from its traced shape (4 per element; 0 unknown)."""
    shape = g.shapes.get(name)
    if not shape or any(not isinstance(d, int) or d <= 0 for d in shape):
        return 0
    return 4 * int(np.prod(shape[1:], dtype=np.int64))


def _row(probe: GroupProbe, ws: list[int], reference: dict[str, np.ndarray], refit: bool,
         points: int) -> dict[int, float]:
    """One group's row of the table: measured at :func:`measured_widths`, the middle one
    first, the other widths interpolated."""
    group = probe.group
    keep = group.keep_order()
    row = {group.width: 0.0}
    measure = measured_widths([w for w in ws if w < group.width], points)
    for w in sorted(measure, key=lambda w: abs(w - measure[len(measure) // 2])):
        removed = np.sort(keep[w:])
        row[w] = distortion(reference, probe.outputs(probe.weights(removed, refit)), probe.samples)
    known = sorted(row)
    for w in ws:
        row.setdefault(w, float(np.interp(w, known, [row[k] for k in known])))
    return row


def measured_widths(widths: list[int], points: int = TABLE_POINTS) -> list[int]:
    """At most ``points`` of ``widths``, evenly spread over their sorted order, the narrowest
    always among them."""
    ws = sorted(set(widths))
    if len(ws) <= points:
        return ws
    return sorted({ws[round(k)] for k in np.linspace(0, len(ws) - 1, points)})


def _table_key(g: ChannelGraph, samples: calib.Samples, refit: bool, points: int) -> str:
    """The table file: model, samples and settings."""
    h = hashlib.sha256()
    h.update(g.model.SerializeToString(deterministic=True))
    calib.digest(h, samples)
    h.update(f"v6|{refit}|{points}".encode())
    return h.hexdigest()[:32]


def _group_key(g: ChannelGraph, group: Group, widths: list[int],
               stats: dict[str, ConsumerStats]) -> str:
    """A group's entry in its table file: the group, its widths, its channel order and a
    fingerprint of its consumers' statistics (what the local refit is solved from)."""
    h = hashlib.sha256()
    h.update(json.dumps([group.id, sorted(widths)]).encode())
    h.update(group.keep_order().tobytes())
    for c in group_consumers(g, group, stats):
        h.update(c.param.encode())
        for fold in c.folds:
            h.update(np.ascontiguousarray(np.diagonal(fold)).tobytes())
        h.update(np.float64(c.energy).tobytes())
    return h.hexdigest()[:32]
