"""Calibration data: load it, split off a held-out part, and read intermediate activations.

Calibration data is a list of *samples*: one feed dict per sample, arrays without the batch
axis stacked back into batches as the model allows (a static batch dimension of 1 means one
sample per run). Activations are read by exposing intermediate tensors as extra graph outputs
of a copy of the model, with graph optimisation off so every tensor exists.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from . import load, ops, runtime, runtimes
from .errors import OnnxPruneError
from .inputs import NP_TYPES, graph_inputs, input_shapes, random_feeds

Samples = dict[str, np.ndarray]  # input name -> [N, ...] array, N samples


def load_npz(path: str, model: onnx.ModelProto, what: str = "--calib") -> Samples:
    """Arrays keyed by input name, first axis = samples (a single-input model may use any key).
    ``what`` names the option the file came from in messages. Other kinds of data (image
    folders, sentences, readers): :func:`onnxprune.sources.load_samples`."""
    if not os.path.exists(path):
        raise OnnxPruneError(f"{what} {path}: no such file")
    try:
        with np.load(path) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except Exception as exc:
        raise OnnxPruneError(f"{what} {path}: not a readable .npz file "
                             f"({type(exc).__name__})") from exc
    return from_arrays(arrays, model, f"{what} {path}")


def shapes_from(model: onnx.ModelProto, samples: Samples | None,
                overrides: dict[str, tuple[int, ...]] | None) -> dict[str, tuple[int, ...]]:
    """Concrete input shapes for tracing and timing: ``overrides`` (``--shape``) first; an input
    with a dynamic axis other than the batch takes one calibration sample's shape (batch 1), so
    a model with a dynamic sequence length or image size is profiled at the one it is
    calibrated with. Other inputs keep :func:`onnxprune.input_shapes`' choice."""
    shapes = dict(overrides or {})
    for inp in graph_inputs(model) if samples is not None else []:
        dims = inp.type.tensor_type.shape.dim
        dynamic = any(not (d.HasField("dim_value") and d.dim_value > 0) for d in list(dims)[1:])
        if inp.name not in shapes and dynamic and inp.name in samples:
            shapes[inp.name] = (1, *samples[inp.name].shape[1:])
    return shapes


def from_feeds(feeds: Iterable[dict[str, np.ndarray]], model: onnx.ModelProto,
               what: str = "calib") -> Samples:
    """Concatenate an iterable of feed dicts (each with a batch axis) into samples."""
    parts: dict[str, list[np.ndarray]] = {}
    for feed in feeds:
        if not isinstance(feed, Mapping):
            raise OnnxPruneError(f"{what}: expected feed dicts (input name -> array), got "
                                 f"{type(feed).__name__}")
        for k, v in feed.items():
            parts.setdefault(k, []).append(np.asarray(v))
    if not parts:
        raise OnnxPruneError(f"{what}: the calibration data is empty")
    try:
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
    except ValueError as exc:
        raise OnnxPruneError(f"{what}: feeds do not stack along a batch axis ({exc})") from exc
    return from_arrays(arrays, model, what)


def from_arrays(arrays: dict[str, np.ndarray], model: onnx.ModelProto, where: str) -> Samples:
    inputs = graph_inputs(model)
    names = [i.name for i in inputs]
    if len(inputs) == 1 and len(arrays) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = set(names) - set(arrays)
    if missing:
        raise OnnxPruneError(f"{where}: no calibration arrays for input(s) {sorted(missing)}")
    counts = {len(arrays[n]) for n in names}
    if len(counts) != 1 or 0 in counts:
        raise OnnxPruneError(f"{where}: inputs have different or zero sample counts {sorted(counts)}")
    out = {}
    for inp in inputs:
        value = arrays[inp.name]
        dims = inp.type.tensor_type.shape.dim
        if value.ndim != len(dims):
            raise OnnxPruneError(f"{where}: {inp.name!r} has rank {value.ndim}, the model expects {len(dims)}")
        dtype = NP_TYPES.get(inp.type.tensor_type.elem_type, np.float32)
        out[inp.name] = value.astype(dtype, copy=False)
    return out


def count(samples: Samples) -> int:
    return len(next(iter(samples.values())))


def take(samples: Samples, index: np.ndarray) -> Samples:
    """The samples at ``index`` (in that order)."""
    return {k: v[index] for k, v in samples.items()}


def digest(h: hashlib._Hash, samples: Samples) -> None:
    """Feed ``samples`` into the hash ``h`` (``hashlib``): each input's name, then its bytes,
    in name order -- the data part of every cache key keyed by samples."""
    for name in sorted(samples):
        h.update(name.encode())
        h.update(np.ascontiguousarray(samples[name]).tobytes())


def spread(samples: Samples, n: int) -> Samples:
    """Up to ``n`` of ``samples``, evenly spread (all of them when there are no more)."""
    total = count(samples)
    if total <= n:
        return samples
    return take(samples, np.linspace(0, total - 1, n).round().astype(int))


@dataclass
class Split:
    """The calibration samples' two parts, computed once per run.

    ``fit``: what recovery and the sensitivity table learn from, ordered by content (see
    :func:`by_content`: its two :func:`halves` hold different clusters). ``held``: what
    fidelity is judged on: whole clusters of near-duplicate calibration samples (crops of one
    photo never sit on both sides, see :func:`near_duplicates`), or the user's own validation
    samples (``source == "val"``). ``held_groups``: the cluster of each held sample (what the
    agreement interval resamples); ``clusters``: distinct clusters among the calibration
    samples."""

    fit: Samples
    held: Samples
    held_groups: np.ndarray
    clusters: int
    source: str = "clusters"

    @property
    def held_clusters(self) -> int:
        return len(np.unique(self.held_groups))


HOLDOUT = 0.25  # share of the calibration clusters held out (without --val)


def split(samples: Samples, labels: np.ndarray | None = None, features: np.ndarray | None = None,
          val: Samples | None = None, holdout: float = HOLDOUT) -> Split:
    """Split ``samples`` by near-duplicate cluster ``labels`` (one per sample, see
    :func:`near_duplicates`; default: every sample its own cluster) found on ``features``
    (default: the samples' order is their content order). A ``holdout`` share of the clusters
    (at least one), evenly spaced along the content order, is held out, so the held part spans
    the content; with one cluster, or when the held clusters would hold most samples, the last
    ``holdout`` share of the samples is held out (the held-out figure then vouches for little:
    the caller warns). With ``val`` every calibration sample is fitted and ``val`` is held."""
    n = count(samples)
    labels = np.arange(n) if labels is None else np.asarray(labels)
    order = np.arange(n) if features is None else _content_order(features, labels)
    if val is not None:
        return Split(take(samples, order), val, np.arange(count(val)), _distinct(labels), "val")
    ranked = list(dict.fromkeys(labels[order].tolist()))  # clusters in content order
    m = max(1, round(len(ranked) * holdout))
    held_set = {ranked[int((j + 0.5) * len(ranked) / m)] for j in range(m)}
    held_mask = np.isin(labels, list(held_set))
    if len(ranked) < 2 or held_mask.sum() > n / 2:
        cut = n - min(max(1, round(n * holdout)), n - 1) if n > 1 else n
        held_mask = np.zeros(n, dtype=bool)
        held_mask[order[cut:]] = True
    fit = order[~held_mask[order]]
    held = order[held_mask[order]]
    return Split(take(samples, fit), take(samples, held), labels[held], _distinct(labels))


def _distinct(labels: np.ndarray) -> int:
    return len(np.unique(labels))


def _content_order(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Sample order along the first principal component of ``features``, clusters kept
    together (ordered by their mean position): similar content is adjacent, so the two
    :func:`halves` of the fit part differ in content and never share a cluster (but one)."""
    pc = _first_component(features)
    means = {c: pc[labels == c].mean() for c in np.unique(labels)}
    key = np.array([means[c] for c in labels])
    return np.lexsort((pc, key))


def _first_component(features: np.ndarray) -> np.ndarray:
    feats = np.asarray(features, dtype=np.float64)
    feats = (feats - feats.mean(0)) / np.maximum(feats.std(0), 1e-12)
    if len(feats) < 4 or not np.isfinite(feats).all():
        return np.arange(len(feats), dtype=np.float64)
    _, _, vt = np.linalg.svd(feats, full_matrices=False)
    return feats @ vt[0]


def halves(samples: Samples) -> tuple[Samples, Samples]:
    """The first and the second half of the samples: the two folds of every cross-validation
    (ridge strengths, the sensitivity table's honest scoring). The fit part of a
    :class:`Split` is in content order, so the halves differ in content: a fit on one half
    scored on the other measures how a refit carries over to new content, not to another crop
    of the same photo."""
    cut = (count(samples) + 1) // 2
    return ({a: v[:cut] for a, v in samples.items()}, {a: v[cut:] for a, v in samples.items()})


MAX_FEATURES = 4096  # values per output used to tell samples apart
VIEWS = 64  # samples whose augmented view sets the near-duplicate threshold
EXACT = 0.995  # the threshold where no view can be made (non-image inputs): near-exact copies


def features(model: onnx.ModelProto, samples: Samples) -> np.ndarray:
    """What the model makes of each sample, to tell near-duplicates apart: per graph output,
    the input of its producer when that is a weight-bearing head reading ``[N, F]`` features
    (the penultimate layer of a classifier), else the output itself, mean-pooled over tokens
    for ``[N, S, H]`` outputs (real tokens only, see :func:`attention_mask`); the first
    :data:`MAX_FEATURES` values of each, concatenated: ``[N, F]`` float64."""
    opsets = ops.opset_versions(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    outputs = [o.name for o in model.graph.output]
    heads = {o: producer[o].input[0] for o in outputs if o in producer
             and ops.linear_spec(producer[o], opsets) is not None}
    names = list(dict.fromkeys(outputs + list(heads.values())))
    got = Tap(model, names).collect(samples, names)
    n = count(samples)
    parts = []
    for out in outputs:
        head = heads.get(out)
        x = got[head] if head is not None and got[head].ndim == 2 else got[out]
        if x.ndim == 3 and len(x) == n:
            mask = attention_mask(samples, x.shape[:2])
            w = np.ones(x.shape[:2]) if mask is None else mask.astype(np.float64)
            x = (x * w[:, :, None]).sum(1) / np.maximum(w.sum(1, keepdims=True), 1.0)
        if len(x) == n:
            parts.append(np.asarray(x, dtype=np.float64).reshape(n, -1)[:, :MAX_FEATURES])
    return np.concatenate(parts, axis=1) if parts else np.zeros((n, 1))


def augmented_view(samples: Samples, rng: np.random.Generator) -> Samples | None:
    """A near-duplicate of every sample, the way one photo yields several calibration crops:
    each image input ([N, C, H, W] float, H and W >= 8) cropped to a random 80-95% of its side
    at a random place, resized back (nearest) and flipped with probability one half; None
    when no input is an image."""
    images = [k for k, v in samples.items() if _is_image(v)]
    if not images:
        return None
    n = count(samples)
    out = dict(samples)
    side = rng.uniform(0.80, 0.95, n)
    corner = rng.uniform(0.0, 1.0, (n, 2))
    flip = rng.random(n) < 0.5
    for name in images:
        x = samples[name]
        h, w = x.shape[2:]
        res = np.empty_like(x)
        for i in range(n):
            ch, cw = max(1, int(h * side[i])), max(1, int(w * side[i]))
            y0, x0 = int(corner[i, 0] * (h - ch)), int(corner[i, 1] * (w - cw))
            rows = y0 + (np.arange(h) * ch) // h
            cols = x0 + (np.arange(w) * cw) // w
            res[i] = x[i][:, rows][:, :, cols]
            if flip[i]:
                res[i] = res[i][:, :, ::-1]
        out[name] = res
    return out


def _is_image(x: np.ndarray) -> bool:
    return x.ndim == 4 and np.issubdtype(x.dtype, np.floating) and min(x.shape[2:]) >= 8


def near_duplicates(model: onnx.ModelProto, samples: Samples, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(features, labels, threshold)``: clusters of near-duplicate samples (crops of one
    photo, one sentence twice) by the model's own :func:`features`. Two samples are linked
    when the cosine of their features reaches the threshold, and clusters are the connected
    components. The threshold is measured, not guessed: the 10th percentile of the cosine
    between a sample and its own :func:`augmented_view` (up to :data:`VIEWS` samples), i.e.
    "as alike as two crops of one photo are"; :data:`EXACT` without image inputs."""
    feats = features(model, samples)
    n = len(feats)
    threshold = EXACT
    picked = np.unique(np.linspace(0, n - 1, min(VIEWS, n)).astype(int))
    views = augmented_view(take(samples, picked), np.random.default_rng(seed))
    if views is not None and n > 1:
        own = row_cosine(feats[picked], features(model, views))
        threshold = float(np.clip(np.percentile(own, 10), 0.5, EXACT))
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-30)
    linked = unit @ unit.T >= threshold
    labels = np.arange(n)
    for i, j in zip(*np.nonzero(np.triu(linked, 1))):  # union-find, smallest index as root
        a, b = _root(labels, i), _root(labels, j)
        labels[max(a, b)] = min(a, b)
    roots = np.array([_root(labels, i) for i in range(n)])
    return feats, np.unique(roots, return_inverse=True)[1], threshold


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return int(i)


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``[N, F]`` arrays (float64)."""
    a, b = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def batch_size(model: onnx.ModelProto, wanted: int = 16) -> tuple[int, bool]:
    """(batch size, static?): ``wanted``, unless an input has a static batch dimension."""
    for inp in graph_inputs(model):
        dims = inp.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return dims[0].dim_value, True
    return wanted, False


def batches(samples: Samples, size: int, exact: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive batches of ``size`` samples (``exact``: drop a short last batch)."""
    n = count(samples)
    for start in range(0, n, size):
        if exact and start + size > n:
            return
        yield {k: v[start:start + size] for k, v in samples.items()}


def attention_mask(samples: Samples, tokens: tuple[int, ...]) -> np.ndarray | None:
    """The samples' 0/1 integer input of shape ``tokens`` ([N, S]): which tokens are real."""
    for value in samples.values():
        if (value.shape == tuple(tokens) and np.issubdtype(value.dtype, np.integer)
                and np.isin(value, (0, 1)).all()):
            return value
    return None


def real_rows(feed: Samples, x: np.ndarray) -> np.ndarray | None:
    """For a token tensor ``x`` [N, S, C] of a batch whose inputs hold an attention mask
    [N, S]: which rows of ``x.reshape(-1, C)`` are real tokens (padding carries nothing the
    model is used for, so fits and distortions skip it); None otherwise."""
    if x.ndim != 3:
        return None
    mask = attention_mask(feed, x.shape[:2])
    return None if mask is None or mask.all() else mask.reshape(-1).astype(bool)


class Tap:
    """Runs a model and returns chosen intermediate tensors as well as its outputs.

    ``prefix``: return only ``names`` and run only the nodes they depend on (onnxruntime runs
    every node of a graph whatever outputs are asked for, so the graph itself is cut)."""

    def __init__(self, model: onnx.ModelProto, names: Iterable[str], threads: int | None = None,
                 prefix: bool = False):
        probe = copy.deepcopy(model)
        names = list(names)
        if prefix:
            _cut_to(probe, names)
        have = {o.name for o in probe.graph.output}
        for name in names:
            if name not in have:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                have.add(name)
        load.derived(probe)
        threads = threads or os.cpu_count() or 1  # computing activations, not timing: every core
        self.session = runtimes.session(probe, runtimes.RuntimeConfig(threads=threads, opt_level="disable"))
        self.batch, self.static = batch_size(model)

    def run(self, samples: Samples) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``{tensor: value}`` per batch."""
        for _, out in self.run_fed(samples):
            yield out

    def run_fed(self, samples: Samples) -> Iterator[tuple[Samples, dict[str, np.ndarray]]]:
        """Yield ``(batch inputs, {tensor: value})`` per batch."""
        for feed in batches(samples, self.batch, self.static):
            yield feed, runtime.run_outputs(self.session, feed)

    def collect(self, samples: Samples, names: list[str]) -> dict[str, np.ndarray]:
        """Tensors ``names`` over all batches (small tensors only: outputs): concatenated along
        the batch axis when their first axis counts the batch's samples (see
        :func:`batch_major`), else stacked (one entry per batch: a scalar, a computed shape)."""
        parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
        major = dict.fromkeys(names, True)
        for feed, out in self.run_fed(samples):
            for n in names:
                parts[n].append(out[n])
                major[n] = major[n] and batch_major(out[n], count(feed))
        return {n: np.concatenate(v) if major[n] else np.stack(v) for n, v in parts.items()}


def batch_major(value: np.ndarray, samples: int) -> bool:
    """Whether ``value``, computed on a batch of ``samples`` samples, has them on its first
    axis (activations, outputs) rather than no batch axis at all (scalars, computed shapes)."""
    return np.ndim(value) > 0 and np.shape(value)[0] == samples


def _cut_to(model: onnx.ModelProto, names: list[str]) -> None:
    """Keep only the nodes ``names`` depend on, and no graph outputs (the caller adds
    ``names``). Inputs are kept as they are; unread initializers go with
    :func:`onnxprune.load.derived`."""
    producer = {o: k for k, n in enumerate(model.graph.node) for o in n.output}
    need, todo = set(), [n for n in names if n in producer]
    while todo:
        k = producer[todo.pop()]
        if k in need:
            continue
        need.add(k)
        todo.extend(i for i in model.graph.node[k].input if i in producer)
    kept = [n for k, n in enumerate(model.graph.node) if k in need]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    del model.graph.output[:]


def synthetic(model: onnx.ModelProto, n: int, shapes: dict[str, tuple[int, ...]] | None = None,
              seed: int = 0) -> Samples:
    """Stand-in samples when no calibration data is given: for image-like float inputs
    ([N, C, H, W]) smooth random images with a natural-image (1/f) spectrum, per-channel zero
    mean and unit variance (what normalised photos look like); other float inputs standard
    normal; integer inputs zeros. Only a proxy: it ranks cuts, it says nothing of accuracy."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in input_shapes(model, shapes).items():
        dtype = np.asarray(random_feeds(model, shapes)[name]).dtype
        full = (n, *shape[1:])
        if not np.issubdtype(dtype, np.floating):
            out[name] = np.zeros(full, dtype=dtype)
        elif len(shape) == 4 and min(shape[2:]) >= 8:
            h, w = shape[2:]
            fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
            amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(h, w))
            spec = (rng.standard_normal((*full[:2], *amp.shape)) + 1j * rng.standard_normal((*full[:2], *amp.shape))) * amp
            img = np.fft.irfft2(spec, s=(h, w))
            img -= img.mean(axis=(2, 3), keepdims=True)
            img /= np.maximum(img.std(axis=(2, 3), keepdims=True), 1e-12)
            out[name] = img.astype(dtype)
        else:
            out[name] = rng.standard_normal(full).astype(dtype)
    return out
