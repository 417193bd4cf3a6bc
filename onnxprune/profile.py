"""Profile: how the latency of the layers a group touches changes with the group's width.

Each layer a group touches is measured as an isolated one-node model with its real input shape
and attributes, on the chosen provider: producers over their output channels, consumers over
their input channels, depthwise convs over both. Latency is a staircase in the width, so the
sweep is a coarse grid plus bisection on every jump, not every width. The *candidate widths*
are the right edges of the measured steps: the widest width of each latency level.

Invariant: a layer's width along the swept axis is ``fixed + repeat * w`` for group width
``w`` (``fixed`` counts positions owned by other groups, e.g. other Concat operands; ``repeat``
is the Flatten block size), so measurements are cached per *layer dimension* and shared by every
model and group with the same layer signature.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import backends, cachefile, ops, quantize, runtimes
from .graph import ChannelGraph, Group
from .progress import short as progress_short
from .progress import stage as progress_stage


@dataclass(frozen=True)
class Layer:
    """One node of the model, swept along one axis of its input/weights.

    ``mode``: ``out`` (output channels), ``in`` (input channels), ``both`` (depthwise).
    The layer's swept dimension for group width ``w`` is ``fixed + repeat * w``."""

    node: str
    op: str
    mode: str
    fixed: int
    repeat: int
    signature: str

    def dim(self, width: int) -> int:
        return self.fixed + self.repeat * width


@dataclass
class LayerProfile:
    """Measured latency (ms) of a layer at each measured group width."""

    layer: Layer
    points: dict[int, float] = field(default_factory=dict)


@dataclass
class GroupProfile:
    """A group's layers, their curves, the summed curve, its steps and candidate widths."""

    group: int
    name: str
    width: int
    min_width: int
    layers: list[LayerProfile]
    curve: dict[int, float] = field(default_factory=dict)
    steps: list[tuple[int, int, float]] = field(default_factory=list)
    candidates: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "group": self.group, "name": self.name, "width": self.width,
            "min_width": self.min_width,
            "layers": [{**asdict(lp.layer), "points": {str(k): v for k, v in sorted(lp.points.items())}}
                       for lp in self.layers],
            "curve": {str(k): v for k, v in sorted(self.curve.items())},
            "steps": [list(s) for s in self.steps],
            "candidates": self.candidates,
        }


CACHE_VERSION = "v4"  # in every key: measurements taken another way are never misread


def _merge_entry(old: dict, new: dict) -> dict:
    """Merge two ``{dim: [value, count]}`` entries: per dim, the one with more measurements
    (equal counts: the lower latency; interference only adds)."""
    out = dict(old)
    for dim, got in new.items():
        have = out.get(dim)
        if have is None or got[1] > have[1] or (got[1] == have[1] and _lower(got[0], have[0])):
            out[dim] = got
    return out


def _lower(a, b) -> bool:
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and a < b


class Cache:
    """Layer measurements on disk: ``{key: {dim: [ms, count]}}`` in one JSON file (``count``
    measurements, the best kept), plus each swept group's points (``dim`` 0).

    A key names the layer signature, :data:`CACHE_VERSION` and the latency source's key: the
    runtime, its version and options, the thread count and optimisation level, and the device.
    :meth:`flush` merges what was measured since the last flush into the file under its lock
    (:mod:`onnxprune.cachefile`): the profiler flushes after every group, so an interrupted run
    loses at most the group in progress and runs sharing the file keep each other's entries.
    :meth:`under` views the same file with another source's key (a sweep setting)."""

    def __init__(self, path: str | None, source_key: str):
        self.path = path
        self.source_key, self.precision = source_key, ""
        self.prefix = f"{CACHE_VERSION}|{source_key}|"
        self.data: dict[str, dict[str, list]] = cachefile.read(path)
        self._new: dict[str, dict[str, list]] = {}
        self._lock = threading.Lock()

    def under(self, source_key: str) -> Cache:
        """The same cache (file, entries, pending writes) keyed by another source."""
        view = copy.copy(self)
        view.source_key = source_key
        view.prefix = f"{CACHE_VERSION}|{source_key}|" + (f"{view.precision}|" if view.precision else "")
        return view

    def at(self, precision: str) -> Cache:
        """The same cache keyed by the precision layers are measured in (fp32 keys stay
        those of earlier versions)."""
        view = copy.copy(self)
        view.precision = "" if precision == "fp32" else precision
        return view.under(self.source_key)

    def key(self, signature: str) -> str:
        return hashlib.sha256((self.prefix + signature).encode()).hexdigest()[:32]

    def get(self, signature: str, dim: int) -> tuple[float, int] | None:
        """``(best ms, number of measurements)`` or None."""
        got = self.data.get(self.key(signature), {}).get(str(dim))
        return tuple(got) if got is not None else None

    def put(self, signature: str, dim: int, ms, count: int) -> None:
        key = self.key(signature)
        with self._lock:
            self.data.setdefault(key, {})[str(dim)] = [ms, count]
            self._new.setdefault(key, {})[str(dim)] = [ms, count]

    def flush(self) -> None:
        """Merge the entries measured since the last flush into the file (and take in what
        other runs wrote meanwhile)."""
        with self._lock:
            if not self.path or not self._new:
                return
            self.data.update(cachefile.update(self.path, self._new, _merge_entry))
            self._new.clear()


def default_cache_path() -> str:
    return os.path.join(cachefile.cache_dir(), "profiles.json")


def sweeper(source: backends.LatencySource) -> backends.LatencySource:
    """The source layer sweeps are measured on: the source's own cheap setting when it has one
    (:meth:`onnxprune.backends.Local.sweeper`: heuristic algorithm search on device providers),
    else the source itself."""
    get = getattr(source, "sweeper", None)
    return get() if get is not None else source


class LayerBench:
    """Builds isolated one-node models of layers at given swept dimensions and has the latency
    source time them in batches (on this machine or elsewhere: models travel as bytes).

    Sweeps are measured on :func:`sweeper`'s setting, edge confirmations on the deployment
    setting; on runtimes without a cheaper setting (CPU) both are the same source and cache
    entry, so a confirmation is one more measurement of the same point (the best is kept)."""

    def __init__(self, g: ChannelGraph, source: backends.LatencySource, cache: Cache,
                 precision: str = "fp32"):
        self.g, self.source, self.precision = g, source, precision
        self.cache = cache = cache.at(precision)
        self.sweep = sweeper(source)
        self.separate = self.sweep is not source
        self.sweep_cache = cache.under(self.sweep.key()) if self.separate else cache
        self.nodes = {n.name: n for n in g.model.graph.node}
        self.measured = self.hits = 0
        self._count = threading.Lock()  # groups are swept from several threads
        self._random: dict[tuple[str, str], np.ndarray] = {}

    def time(self, layer: Layer, width: int, count: int = 1) -> float:
        """Latency (ms, best round) of ``layer`` at group width ``width`` (see :meth:`times`)."""
        return self.times([(layer, width)], count)[0]

    def times(self, requests: list[tuple[Layer, int]], count: int = 1,
              confirm: bool = False) -> list[float]:
        """Latency (ms) of each ``(layer, group width)``, measured until it has ``count``
        independent measurements; the best is kept (interference only adds). Requests with the
        same layer signature and swept dimension (repeated blocks) are measured once; what is
        missing is measured in one batch (interleaved rounds, see
        :meth:`onnxprune.backends.Local.layers`). ``confirm``: on the deployment setting."""
        source, cache = (self.source, self.cache) if confirm else (self.sweep, self.sweep_cache)
        need = count - 1 if confirm and self.separate else count
        keys = [(layer.signature, layer.dim(width)) for layer, width in requests]
        todo: dict[tuple[str, int], Layer] = {}
        for (sig, dim), (layer, _) in zip(keys, requests):
            got = cache.get(sig, dim)
            if (got is None or got[1] < need) and (sig, dim) not in todo:
                todo[sig, dim] = layer
        with self._count:
            self.hits += len(requests) - len(todo)
        while True:  # one batch per missing measurement of the most-needing point
            items = [k for k in todo if (cache.get(*k) or (0, 0))[1] < need]
            if not items:
                break
            got = _layers(source, [self.isolated(todo[k], k[1]) for k in items])
            for k, ms in zip(items, got):
                best, done = cache.get(*k) or (float("inf"), 0)
                cache.put(k[0], k[1], min(best, ms), done + 1)
            with self._count:
                self.measured += len(items)
        return [self.value(sig, dim, confirm) for sig, dim in keys]

    def value(self, signature: str, dim: int, confirmed: bool = False) -> float:
        """The cached latency of a layer dimension (the deployment setting's when ``confirmed``)."""
        got = (self.cache if confirmed else self.sweep_cache).get(signature, dim)
        return got[0]

    def isolated(self, layer: Layer, dim: int) -> tuple[bytes, backends.Feeds]:
        """The one-node model of ``layer`` at swept dimension ``dim`` (bytes) and its feeds."""
        model, feeds = isolate(self.g, self.nodes[layer.node], layer.mode, dim, self._rand,
                               self.precision)
        return model.SerializeToString(), feeds

    def _rand(self, name: str, full: list[int], shape: list[int], dtype) -> np.ndarray:
        """Random values of ``shape``: a slice of one draw per tensor at its full shape."""
        key = (name, str(dtype))
        if key not in self._random:
            rng = np.random.default_rng(len(self._random))
            self._random[key] = (rng.standard_normal(full, dtype=np.float32) * 0.1).astype(dtype)
        part = self._random[key][tuple(slice(0, s) for s in shape)]
        if list(part.shape) != list(shape):  # wider than the model's own tensor
            part = (np.random.default_rng(0).standard_normal(shape) * 0.1).astype(dtype)
        return np.ascontiguousarray(part)


def _layers(source: backends.LatencySource, models: list[tuple[bytes, backends.Feeds]]) -> list[float]:
    """One batch of layer timings: the source's batch method when it has one."""
    batch = getattr(source, "layers", None)
    if batch is not None:
        return batch(models, 1)
    return [source.layer(m, f, 1) for m, f in models]


def isolate(g: ChannelGraph, node: onnx.NodeProto, mode: str, dim: int, rand=None,
            precision: str = "fp32"):
    """The one-node model of ``node`` at swept dimension ``dim``, and its feeds: the original
    node and attributes, random weights resized on the swept axis, the real input shape, in
    ``precision`` (int8: the quantizer's QDQ pattern, :func:`onnxprune.quantize.qdq_layer`). Which
    axes are swept comes from the op spec's :class:`~onnxprune.ops.WeightLayout`; attributes
    that count channels follow the width through its :meth:`~onnxprune.ops.OpSpec.isolated`.
    ``rand(name, full shape, shape, dtype)`` draws the random values (default: a fresh draw)."""
    if rand is None:
        rand = _fresh_rand()
    x_name = node.input[0]
    x_shape = list(g.shapes[x_name])
    weights = {n: g.consts[n] for n in node.input[1:] if n in g.consts}
    w = weights[node.input[1]]
    spec = ops.linear_spec(node, g.opsets)
    lay = spec.layout(node, w.shape, len(x_shape))
    node = onnx.NodeProto.FromString(node.SerializeToString())
    spec.isolated(node, w.shape, mode, dim)
    x_shape, w_shape = _swept_shapes(lay, mode, dim, x_shape, list(w.shape))
    dtype = w.dtype
    inits = [numpy_helper.from_array(rand(node.input[1], w.shape, w_shape, dtype), node.input[1])]
    inits += _bias_inits(node, weights, mode, dim, rand, dtype)
    model = _one_node_model(g, node, x_name, x_shape, dtype, inits)
    if precision == "int8":
        model = quantize.qdq_layer(model, lay.w_out)
    feeds = {x_name: rand(x_name, g.shapes[x_name], x_shape, dtype)}
    return model, feeds


def _fresh_rand():
    """:func:`isolate`'s default ``rand``: every call a fresh draw (``0.1 x`` standard normal
    of ``shape``) from one generator seeded 0, so the values depend on the order of calls."""
    rng = np.random.default_rng(0)

    def rand(name, full, shape, dtype):
        return (rng.standard_normal(shape) * 0.1).astype(dtype)
    return rand


def _swept_shapes(lay: ops.WeightLayout, mode: str, dim: int, x_shape: list[int],
                  w_shape: list[int]) -> tuple[list[int], list[int]]:
    """``(input shape, weight shape)`` with the swept axes set to ``dim``: the input's channel
    axis for ``in`` and ``both`` (times the groups of a grouped, not depthwise, conv), the
    weight's input axis for ``in``, its output axis for ``out`` and ``both`` (a depthwise
    weight's input axis stays as it is). The other axes are those of ``x_shape``, ``w_shape``."""
    x_shape, w_shape = list(x_shape), list(w_shape)
    depthwise = mode == "both"
    if mode in ("in", "both"):  # a grouped conv's "in" dim counts one group's channels
        x_shape[lay.x_axis] = dim * (1 if depthwise else lay.groups)
        if not depthwise:
            w_shape[lay.w_in] = dim
    if mode in ("out", "both"):
        w_shape[lay.w_out] = dim
    return x_shape, w_shape


def _bias_inits(node: onnx.NodeProto, weights: dict[str, np.ndarray], mode: str, dim: int,
                rand, dtype) -> list[onnx.TensorProto]:
    """Random initializers for ``node``'s constant inputs after the weight, in input order:
    the original shape, with a last axis longer than 1 set to ``dim`` unless only the input
    channels are swept (``mode == "in"``)."""
    inits = []
    for name in node.input[2:]:
        if name in weights:
            b = weights[name]
            shape = list(b.shape)
            if shape and shape[-1] > 1 and mode != "in":
                shape[-1] = dim
            inits.append(numpy_helper.from_array(rand(name, b.shape, shape, dtype), name))
    return inits


def _one_node_model(g: ChannelGraph, node: onnx.NodeProto, x_name: str, x_shape: list[int],
                    dtype, inits: list[onnx.TensorProto]) -> onnx.ModelProto:
    """The model of ``node`` alone with initializers ``inits``: input ``x_name`` of
    ``x_shape``, output ``node.output[0]`` of unknown shape, both of ``dtype``; ``g``'s opsets
    and IR version."""
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    graph = helper.make_graph(
        [node], "layer", [helper.make_tensor_value_info(x_name, elem, x_shape)],
        [helper.make_tensor_value_info(node.output[0], elem, None)], inits)
    return helper.make_model(graph, opset_imports=list(g.model.opset_import), ir_version=g.model.ir_version)


def group_layers(g: ChannelGraph, group: Group) -> list[Layer]:
    """The sweepable layers a group touches, with how each layer's dimension follows the width."""
    classes = {int(c) for c in group.classes}
    nodes = {n.name: n for n in g.model.graph.node}
    seen: dict[tuple[str, str], Layer] = {}
    for p in group.members:
        node = nodes.get(p.node)
        spec = ops.spec_for(node, g.opsets) if node is not None else None
        mode = spec.sweep_mode(node, p.role) if spec is not None else None
        if mode is None or p.param != node.input[1]:
            continue
        roots = g.roots(g.channels[p.tensor].labels)
        mine = int(np.isin(roots, list(classes)).sum())
        repeat = max(1, mine // group.width)
        fixed = len(roots) - mine
        sig = _signature(g, node, mode, fixed, repeat)
        seen.setdefault((node.name, mode), Layer(node.name, node.op_type, mode, fixed, repeat, sig))
    return list(seen.values())


def _signature(g: ChannelGraph, node: onnx.NodeProto, mode: str, fixed: int, repeat: int) -> str:
    attrs = sorted((a.name, str(helper.get_attribute_value(a))) for a in node.attribute)
    x_shape = list(g.shapes[node.input[0]])
    params = [list(g.consts[n].shape) for n in node.input[1:] if n in g.consts]
    dtype = str(g.consts[node.input[1]].dtype)
    return json.dumps([node.op_type, mode, fixed, repeat, x_shape, params, attrs, dtype])


def coarse_grid(width: int, min_width: int = 1, align: int = 1) -> list[int]:
    """About 16 widths from ``min_width`` up to ``width``: multiples of ``align`` (and of 4 once
    the spacing reaches 4), the narrowest aligned width at or above ``min_width``, and
    ``width`` itself."""
    step = max(1, width // 16)
    if step >= 4:
        step -= step % 4
    step = max(align, step - step % align)
    first = max(align, -(-min_width // align) * align)
    grid = {w for w in range(step, width, step) if w >= first} | {width}
    if first < width:
        grid.add(first)
    return sorted(grid)


def find_steps(measure: Callable[[list[int]], list[float]], width: int, min_width: int = 1,
               rel_tol: float = 0.05, align: int = 1, max_points: int = 80,
               scout: int = 4) -> dict[int, float]:
    """Measure a staircase at widths that are multiples of ``align`` (and ``width``), one batch
    per level, ``measure(widths) -> latencies``:

    1. a scout grid (every ``scout``-th width of :func:`coarse_grid`, both ends included);
    2. the rest of the coarse grid, only between scout widths whose latencies differ by more
       than ``rel_tol`` (a flat region, a launch-bound GPU's staircase, stops here);
    3. bisection (at aligned widths) inside every interval whose right end is more than
       ``rel_tol`` slower than its left, until every jump is located to one aligned step; an
       interval whose middle lies on the line between its ends (within ``rel_tol / 2``) is a
       smooth slope, not a hidden step, and is not split further (wide layers at batch 1 on a
       CPU grow almost linearly; their grid points are the candidates).

    Returns the measured points ``{width: ms}``."""
    points: dict[int, float] = {}

    def take(widths: list[int]) -> None:
        new = [w for w in dict.fromkeys(widths) if w not in points][:max(0, max_points - len(points))]
        if new:
            points.update(zip(new, measure(new)))

    grid = coarse_grid(width, min_width, align)
    first = sorted(set(grid[::scout]) | {grid[0], grid[-1]})
    take(first)
    differs = [(a, b) for a, b in itertools.pairwise(first)
               if max(points[a], points[b]) > min(points[a], points[b]) * (1 + rel_tol)]
    take([w for w in grid if any(a < w < b for a, b in differs)])
    _bisect(points, take, rel_tol, align, max_points)
    return points


def _bisect(points: dict[int, float], take: Callable[[list[int]], None], rel_tol: float,
            align: int, max_points: int) -> None:
    """Step 3 of :func:`find_steps`, in place: one ``take`` (which measures into ``points``)
    per round of aligned midpoints of the intervals between neighbouring ``points`` whose right
    end is more than ``rel_tol`` slower than its left; a split interval is split again only
    when its midpoint was measured and lies off the line between its ends. Stops when nothing
    is left to split or ``points`` holds ``max_points``."""
    pending = list(itertools.pairwise(sorted(points)))
    while pending and len(points) < max_points:
        split = _jumps(points, pending, rel_tol, align)
        take([m for _, m, _ in split])
        pending = _off_line(points, split, rel_tol)


def _jumps(points: dict[int, float], pending: list[tuple[int, int]], rel_tol: float,
           align: int) -> list[tuple[int, int, int]]:
    """``(a, mid, b)`` for each interval ``(a, b)`` of ``pending`` whose right end is more
    than ``rel_tol`` slower than its left and that has an aligned width ``mid`` (the middle
    rounded down to ``align``) strictly inside; in ``pending``'s order."""
    split = []
    for a, b in pending:
        mid = (a + b) // 2 // align * align
        if a < mid < b and points[b] > points[a] * (1 + rel_tol):
            split.append((a, mid, b))
    return split


def _off_line(points: dict[int, float], split: list[tuple[int, int, int]],
              rel_tol: float) -> list[tuple[int, int]]:
    """The halves ``(a, m), (m, b)`` of each measured split whose middle ``m`` is more than
    ``rel_tol / 2`` (relative) off the line between its ends: a hidden step, not a smooth
    slope. Splits whose middle was not measured (``max_points`` reached) are dropped."""
    pending = []
    for a, m, b in split:
        if m not in points:
            continue
        line = points[a] + (points[b] - points[a]) * (m - a) / (b - a)
        if abs(points[m] - line) > rel_tol / 2 * line:
            pending += [(a, m), (m, b)]
    return pending


def steps_and_candidates(curve: dict[int, float], rel_tol: float = 0.05):
    """Steps of a measured curve and their right edges.

    Scanning widths from the widest down, a new step starts when latency drops by more than
    ``rel_tol`` below the current level; the candidate of each step is its widest width (it
    costs the same as anything narrower in the step). Returns ``(steps, candidates)`` with steps
    as ``(first width, last width, latency at last width)``, ascending."""
    widths = sorted(curve)
    if not widths:
        return [], []
    steps = []
    right = left = widths[-1]
    level = curve[right]
    for w in reversed(widths[:-1]):
        if curve[w] < level * (1 - rel_tol):
            steps.append((left, right, level))
            right, level = w, curve[w]
        left = w
    steps.append((left, right, level))
    steps.reverse()
    return steps, [s[1] for s in steps]


def profile_group(g: ChannelGraph, group: Group, lb: LayerBench, min_width: int = 1,
                  rel_tol: float = 0.05, confirm: int = 1, align: int = 4) -> GroupProfile:
    """Sweep a group: every layer it touches is measured at every width the sweep visits, and
    the steps are found on their sum. Candidate widths are the right edges of the steps (of the
    sum, and of the producers' own curve) among widths at which every layer's swept dimension
    (``repeat x width``: channels, or a head's positions times heads) is a multiple of ``align``
    (and the full width); the sweep visits only those widths. An isolated consumer sees its
    input in plain NCHW, so unaligned input widths, which skip the blocked SIMD kernels, look
    cheap in isolation but are slow inside the model (measured: 18 of 24 channels ran 5% slower
    end to end than 24; 12 and 16 ran faster); unaligned depthwise widths are many times slower.

    ``confirm`` passes re-measure both sides of every located jump (an edge whose next measured
    width is one aligned step away; a candidate on a smooth slope is one of its grid points) in
    one batch on the deployment setting: noise fakes jumps, and on device providers the sweep
    ran on the cheap algorithm search (:func:`sweeper`), whose figures are replaced there (and
    at the full width)."""
    min_width = max(min_width, group.width - len(group.prunable), 1)
    layers = [LayerProfile(layer) for layer in group_layers(g, group)]
    align = math.lcm(1, *(align // math.gcd(align, lp.layer.repeat) for lp in layers))
    key = json.dumps([CACHE_VERSION, [lp.layer.signature for lp in layers], group.width,
                      min_width, rel_tol, confirm, align])
    done = lb.cache.get(key, 0)
    if done is not None:  # this exact group was swept before: reuse the sweep
        return _reuse(group, min_width, layers, rel_tol, align, lb, done[0])

    def total(widths: list[int], count: int = 1, confirmed: bool = False) -> list[float]:
        got = lb.times([(lp.layer, w) for w in widths for lp in layers], count, confirmed)
        return [sum(got[k * len(layers):(k + 1) * len(layers)]) for k in range(len(widths))]

    curve = find_steps(total, group.width, min_width, rel_tol, align) if layers else {}
    confirmed = _confirm_edges(curve, total, lb.separate, group.width, rel_tol, align, confirm)
    for lp in layers:
        lp.points = {w: lb.value(lp.layer.signature, lp.layer.dim(w)) for w in curve}
    lb.cache.put(key, 0, {"layers": [lp.points for lp in layers], "confirmed": confirmed}, 1)
    return _finish(group, min_width, layers, rel_tol, align, confirmed)


def _reuse(group: Group, min_width: int, layers: list[LayerProfile], rel_tol: float, align: int,
           lb: LayerBench, entry: dict) -> GroupProfile:
    """The profile from a cached sweep ``entry`` (``{"layers": [points per layer], "confirmed":
    points}``, widths as JSON keys) of this exact group, counted as a hit of ``lb``; fills
    ``layers``' points."""
    with lb._count:
        lb.hits += 1
    for lp, points in zip(layers, entry["layers"]):
        lp.points = {int(w): t for w, t in points.items()}
    return _finish(group, min_width, layers, rel_tol, align,
                   {int(w): t for w, t in entry.get("confirmed", {}).items()})


def _confirm_edges(curve: dict[int, float], total: Callable[..., list[float]], separate: bool,
                   width: int, rel_tol: float, align: int, confirm: int) -> dict[int, float]:
    """:func:`profile_group`'s ``confirm`` passes: pass ``k`` (1..``confirm``) re-measures, in
    one ``total(widths, k + 1, confirmed=True)`` batch, both sides of every located jump of the
    aligned curve, plus (``separate``: the sweep ran on a cheaper setting) every candidate and
    the full ``width``. Without a separate setting the figures update ``curve`` in place and
    the result is empty; with one, ``curve`` stays the sweep's and the result holds them."""
    confirmed: dict[int, float] = {}
    for count in range(2, confirm + 2):
        aligned = _aligned(curve, align, width)
        _, candidates = steps_and_candidates(aligned, rel_tol)
        widths = sorted(aligned)
        after = {c: widths[widths.index(c) + 1] for c in candidates[:-1]}
        sides = {w for c, n in after.items() if n - c <= align for w in (c, n)}
        if separate:  # every width the search costs, on the deployment setting
            sides |= set(candidates) | {width}
        sides = sorted(sides)
        values = dict(zip(sides, total(sides, count, confirmed=True)))
        if separate:
            confirmed.update(values)
        else:
            curve.update(values)
    return confirmed


def _aligned(curve: dict[int, float], align: int, width: int) -> dict[int, float]:
    """The points of ``curve`` at group widths that are multiples of ``align``, and the full width."""
    return {w: t for w, t in curve.items() if w % align == 0 or w == width}


def _finish(group: Group, min_width: int, layers: list[LayerProfile], rel_tol: float,
            align: int, confirmed: dict[int, float] | None = None) -> GroupProfile:
    """Steps and candidates of the summed curve; ``confirmed`` (group width -> summed ms on the
    deployment setting, when the sweep ran on a cheaper one) replaces the curve at the
    candidates, which is what the search costs them at."""
    prof = GroupProfile(group.id, group.name, group.width, min_width, layers)
    widths = sorted(set.intersection(*[set(lp.points) for lp in layers])) if layers else []
    prof.curve = {w: sum(lp.points[w] for lp in layers) for w in widths}
    prof.steps, prof.candidates = steps_and_candidates(_aligned(prof.curve, align, group.width), rel_tol)
    producers = [lp for lp in layers if lp.layer.mode != "in"]
    if producers:  # the producers' own staircase is the cleanest: its edges always count
        own = {w: sum(lp.points[w] for lp in producers) for w in widths}
        _, edges = steps_and_candidates(_aligned(own, align, group.width), rel_tol)
        prof.candidates = sorted(set(prof.candidates) | set(edges))
    for w, ms in (confirmed or {}).items():
        if w in prof.curve:
            prof.curve[w] = ms
    return prof


@dataclass
class ProfileRun:
    """All group profiles of one run, and how much of it was measured vs served from cache."""

    groups: list[GroupProfile]
    measured: int
    cached: int
    seconds: float
    builds: int = 0  # sessions (TensorRT engines) built here, and the seconds that took
    build_seconds: float = 0.0


def profile_model(g: ChannelGraph, source: backends.LatencySource | runtimes.RuntimeConfig,
                  cache: Cache, groups: list[Group] | None = None, min_fraction: float = 0.0,
                  rel_tol: float = 0.05, progress: bool = True, precision: str = "fp32") -> ProfileRun:
    """Profile every prunable group (or ``groups``) on a latency source (or a runtime
    configuration measured here), its layers in ``precision`` (cached apart), caching layer
    measurements; each group's measurements are
    written to the cache file as soon as the group is done (an interrupted run resumes from
    there). Groups are swept in parallel, one at a time per worker of the source (its
    devices); results keep the groups' order. ``progress``: report each group
    (:mod:`onnxprune.progress`, when reporting is on)."""
    start = time.perf_counter()
    lb = LayerBench(g, backends.source_for(source), cache, precision)
    builds = getattr(lb.source, "builds", {"count": 0, "seconds": 0.0})
    built = dict(builds)
    todo = groups if groups is not None else g.prunable_groups()

    with progress_stage("profile", len(todo), "group", quiet=not progress) as stage:
        def one(group: Group) -> GroupProfile:
            prof = profile_group(g, group, lb, max(1, math.ceil(min_fraction * group.width)), rel_tol)
            cache.flush()
            stage.advance(f"{group.id} {progress_short(group.name)}")
            return prof

        pool = ThreadPoolExecutor(max_workers=max(1, lb.source.workers))
        try:
            out = list(pool.map(one, todo))
        finally:  # on a failure, groups not started yet are dropped, not measured
            pool.shutdown(cancel_futures=True)
        stage.summary = f"{len(out)} groups, {lb.measured} new layer measurements, {lb.hits} from cache"
    return ProfileRun(out, lb.measured, lb.hits, time.perf_counter() - start,
                      builds["count"] - built["count"], builds["seconds"] - built["seconds"])
