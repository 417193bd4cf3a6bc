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

import hashlib
import itertools
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import backends, ops, runtime
from .graph import ChannelGraph, Group


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


class Cache:
    """Layer measurements on disk: ``{key: {dim: [ms, count]}}`` in one JSON file, written
    atomically (``count`` measurements, the best kept).

    A key names the layer signature and the latency source's key: the runtime, its version and
    options, the thread count and optimisation level, and the device."""

    def __init__(self, path: str | None, source_key: str):
        self.path = path
        self.prefix = f"{source_key}|"
        self.data: dict[str, dict[str, list]] = {}
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    self.data = json.load(f)
            except (OSError, ValueError):
                self.data = {}

    def key(self, signature: str) -> str:
        return hashlib.sha256((self.prefix + signature).encode()).hexdigest()[:32]

    def get(self, signature: str, dim: int) -> tuple[float, int] | None:
        """``(best ms, number of measurements)`` or None."""
        got = self.data.get(self.key(signature), {}).get(str(dim))
        return tuple(got) if got is not None else None

    def put(self, signature: str, dim: int, ms, count: int) -> None:
        self.data.setdefault(self.key(signature), {})[str(dim)] = [ms, count]

    def save(self) -> None:
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(self.path)), suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f)
        os.replace(tmp, self.path)


def default_cache_path() -> str:
    return os.path.join(runtime.cache_dir(), "profiles.json")


class LayerBench:
    """Builds isolated one-node models of a layer at a given swept dimension and has the latency
    source time them (on this machine or elsewhere: models travel as bytes)."""

    def __init__(self, g: ChannelGraph, source: backends.LatencySource, cache: Cache):
        self.g, self.source, self.cache = g, source, cache
        self.nodes = {n.name: n for n in g.model.graph.node}
        self.measured = self.hits = 0
        self._count = threading.Lock()  # groups are swept from several threads

    def time(self, layer: Layer, width: int, count: int = 1) -> float:
        """Latency (ms, best round) of ``layer`` at group width ``width``, measured until it
        has ``count`` independent measurements; the best is kept (interference only adds)."""
        dim = layer.dim(width)
        got = self.cache.get(layer.signature, dim)
        if got is not None and got[1] >= count:
            with self._count:
                self.hits += 1
            return got[0]
        best, done = got if got is not None else (float("inf"), 0)
        model, feeds = isolate(self.g, self.nodes[layer.node], layer.mode, dim)
        best = min(best, self.source.layer(model.SerializeToString(), feeds, count - done))
        with self._count:
            self.measured += count - done
        self.cache.put(layer.signature, dim, best, count)
        return best


def isolate(g: ChannelGraph, node: onnx.NodeProto, mode: str, dim: int):
    """The one-node model of ``node`` at swept dimension ``dim``, and its feeds: the original
    node and attributes, random weights resized on the swept axis, the real input shape. Which
    axes are swept comes from the op spec's :class:`~onnxprune.ops.WeightLayout`; attributes
    that count channels follow the width through its :meth:`~onnxprune.ops.OpSpec.isolated`."""
    rng = np.random.default_rng(0)
    x_name = node.input[0]
    x_shape = list(g.shapes[x_name])
    weights = {n: g.consts[n] for n in node.input[1:] if n in g.consts}
    w = weights[node.input[1]]
    w_shape = list(w.shape)
    spec = ops.linear_spec(node, g.opsets)
    lay = spec.layout(node, w.shape, len(x_shape))
    node = onnx.NodeProto.FromString(node.SerializeToString())
    spec.isolated(node, w.shape, mode, dim)
    depthwise = mode == "both"
    if mode in ("in", "both"):  # a grouped conv's "in" dim counts one group's channels
        x_shape[lay.x_axis] = dim * (1 if depthwise else lay.groups)
        if not depthwise:
            w_shape[lay.w_in] = dim
    if mode in ("out", "both"):
        w_shape[lay.w_out] = dim
    dtype = w.dtype
    inits = [numpy_helper.from_array((rng.standard_normal(w_shape) * 0.1).astype(dtype), node.input[1])]
    for name in node.input[2:]:
        if name in weights:
            b = weights[name]
            shape = list(b.shape)
            if shape and shape[-1] > 1 and mode != "in":
                shape[-1] = dim
            inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(dtype), name))
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    graph = helper.make_graph(
        [node], "layer", [helper.make_tensor_value_info(x_name, elem, x_shape)],
        [helper.make_tensor_value_info(node.output[0], elem, None)], inits)
    del node.output[1:]
    model = helper.make_model(graph, opset_imports=list(g.model.opset_import), ir_version=g.model.ir_version)
    feeds = {x_name: rng.standard_normal(x_shape).astype(dtype)}
    return model, feeds


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


def coarse_grid(width: int, min_width: int = 1) -> list[int]:
    """About 16 widths up to ``width``, spaced by a multiple of 4 once the spacing reaches 4."""
    step = max(1, width // 16)
    if step >= 4:
        step -= step % 4
    grid = sorted({w for w in range(step, width, step) if w >= min_width} | {width, max(min_width, 1)})
    return grid


def find_steps(measure: Callable[[int], float], width: int, min_width: int = 1,
               rel_tol: float = 0.05, max_points: int = 80) -> dict[int, float]:
    """Measure a staircase: the coarse grid, then bisection inside every interval whose ends
    differ by more than ``rel_tol``, until every jump is located to one width. Returns the
    measured points ``{width: ms}``."""
    points: dict[int, float] = {}

    def t(w: int) -> float:
        if w not in points:
            points[w] = measure(w)
        return points[w]

    def jumps(a: int, b: int) -> bool:
        return t(b) > t(a) * (1 + rel_tol)

    grid = coarse_grid(width, min_width)
    for w in grid:
        t(w)
    stack = list(itertools.pairwise(grid))
    while stack and len(points) < max_points:
        a, b = stack.pop()
        if b - a <= 1 or not jumps(a, b):
            continue
        mid = (a + b) // 2
        t(mid)
        stack.extend([(a, mid), (mid, b)])
    return points


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
                  rel_tol: float = 0.05, confirm: int = 2, align: int = 4) -> GroupProfile:
    """Sweep a group: every layer it touches is measured at every width the sweep visits, and
    the steps are found on their sum. Candidate widths are the right edges of the steps (of the
    sum, and of the producers' own curve) among widths at which every layer's swept dimension
    (``repeat x width``: channels, or a head's positions times heads) is a multiple of ``align``
    (and the full width): an isolated consumer sees its
    input in plain NCHW, so unaligned input widths, which skip the blocked SIMD kernels, look
    cheap in isolation but are slow inside the model (measured: 18 of 24 channels ran 5% slower
    end to end than 24; 12 and 16 ran faster)."""
    min_width = max(min_width, group.width - len(group.prunable), 1)
    layers = [LayerProfile(layer) for layer in group_layers(g, group)]
    align = math.lcm(1, *(align // math.gcd(align, lp.layer.repeat) for lp in layers))
    key = json.dumps(["v3", [lp.layer.signature for lp in layers], group.width, min_width,
                      rel_tol, confirm, align])
    done = lb.cache.get(key, 0)
    if done is not None:  # this exact group was swept before: reuse the sweep
        lb.hits += 1
        for lp, points in zip(layers, done[0]["layers"]):
            lp.points = {int(w): t for w, t in points.items()}
        return _finish(group, min_width, layers, rel_tol, align)

    def total(width: int, count: int = 1) -> float:
        return sum(lb.time(lp.layer, width, count) for lp in layers)

    curve = find_steps(total, group.width, min_width, rel_tol) if layers else {}
    for count in range(2, confirm + 2):  # re-measure both sides of every edge: noise fakes edges
        aligned = _aligned(curve, align, group.width)
        _, candidates = steps_and_candidates(aligned, rel_tol)
        widths = sorted(aligned)
        for c in candidates[:-1]:
            for w in (c, widths[widths.index(c) + 1]):
                curve[w] = total(w, count)
    for lp in layers:
        lp.points = {w: lb.time(lp.layer, w) for w in curve}
    lb.cache.put(key, 0, {"layers": [lp.points for lp in layers]}, 1)
    return _finish(group, min_width, layers, rel_tol, align)


def _aligned(curve: dict[int, float], align: int, width: int) -> dict[int, float]:
    """The points of ``curve`` at group widths that are multiples of ``align``, and the full width."""
    return {w: t for w, t in curve.items() if w % align == 0 or w == width}


def _finish(group: Group, min_width: int, layers: list[LayerProfile], rel_tol: float,
            align: int) -> GroupProfile:
    prof = GroupProfile(group.id, group.name, group.width, min_width, layers)
    widths = sorted(set.intersection(*[set(lp.points) for lp in layers])) if layers else []
    prof.curve = {w: sum(lp.points[w] for lp in layers) for w in widths}
    prof.steps, prof.candidates = steps_and_candidates(_aligned(prof.curve, align, group.width), rel_tol)
    producers = [lp for lp in layers if lp.layer.mode != "in"]
    if producers:  # the producers' own staircase is the cleanest: its edges always count
        own = {w: sum(lp.points[w] for lp in producers) for w in widths}
        _, edges = steps_and_candidates(_aligned(own, align, group.width), rel_tol)
        prof.candidates = sorted(set(prof.candidates) | set(edges))
    return prof


@dataclass
class ProfileRun:
    """All group profiles of one run, and how much of it was measured vs served from cache."""

    groups: list[GroupProfile]
    measured: int
    cached: int
    seconds: float


def profile_model(g: ChannelGraph, source: backends.LatencySource | runtime.RuntimeConfig,
                  cache: Cache, groups: list[Group] | None = None, min_fraction: float = 0.0,
                  rel_tol: float = 0.05, progress: bool = True) -> ProfileRun:
    """Profile every prunable group (or ``groups``) on a latency source (or a runtime
    configuration measured here), caching layer measurements. Groups are swept in parallel,
    one at a time per worker of the source (its devices); results keep the groups' order."""
    from rich.progress import Progress

    start = time.perf_counter()
    lb = LayerBench(g, backends.source_for(source), cache)
    todo = groups if groups is not None else g.prunable_groups()

    def one(group: Group) -> GroupProfile:
        prof = profile_group(g, group, lb, max(1, math.ceil(min_fraction * group.width)), rel_tol)
        bar.advance(task)
        return prof

    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("profiling", total=len(todo))
        pool = ThreadPoolExecutor(max_workers=max(1, lb.source.workers))
        try:
            out = list(pool.map(one, todo))
        finally:  # on a failure, groups not started yet are dropped, not measured
            pool.shutdown(cancel_futures=True)
    cache.save()
    return ProfileRun(out, lb.measured, lb.hits, time.perf_counter() - start)
