"""Calibration data: load it, split off a held-out part, and read intermediate activations.

Calibration data is a list of *samples*: one feed dict per sample, arrays without the batch
axis stacked back into batches as the model allows (a static batch dimension of 1 means one
sample per run). Activations are read by exposing intermediate tensors as extra graph outputs
of a copy of the model, with graph optimisation off so every tensor exists.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import onnx

from . import runtime
from .errors import OnnxPruneError

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
    calibrated with. Other inputs keep :func:`onnxprune.runtime.input_shapes`' choice."""
    shapes = dict(overrides or {})
    for inp in runtime.graph_inputs(model) if samples is not None else []:
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
    inputs = runtime.graph_inputs(model)
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
        dtype = runtime.NP_TYPES.get(inp.type.tensor_type.elem_type, np.float32)
        out[inp.name] = value.astype(dtype, copy=False)
    return out


def count(samples: Samples) -> int:
    return len(next(iter(samples.values())))


def split(samples: Samples, holdout: float = 0.25) -> tuple[Samples, Samples]:
    """(fit part, held-out part): the last ``holdout`` share is held out (at least one sample
    each when there are two or more)."""
    n = count(samples)
    k = min(max(1, round(n * holdout)), n - 1) if n > 1 else 0
    cut = n - k
    return ({a: v[:cut] for a, v in samples.items()}, {a: v[cut:] for a, v in samples.items()})


def halves(samples: Samples) -> tuple[Samples, Samples]:
    """The first and the second half of the samples: the two folds of every cross-validation
    (ridge strengths, the sensitivity table's honest scoring). See :func:`by_content`."""
    cut = (count(samples) + 1) // 2
    return ({a: v[:cut] for a, v in samples.items()}, {a: v[cut:] for a, v in samples.items()})


def by_content(samples: Samples, outputs: dict[str, np.ndarray]) -> Samples:
    """The samples reordered by what the model makes of them: sorted along the first principal
    component of its (standardised, flattened) outputs. Similar inputs -- crops of one photo,
    one kind of scene -- end up next to each other, so the two :func:`halves` differ in
    content, and a fit on one half scored on the other measures how a refit carries over to
    new content, not to another crop of the same photo."""
    feats = np.concatenate([np.asarray(v, dtype=np.float64).reshape(count(samples), -1)[:, :4096]
                            for v in outputs.values()], axis=1)
    feats = (feats - feats.mean(0)) / np.maximum(feats.std(0), 1e-12)
    if len(feats) < 4 or not np.isfinite(feats).all():
        return samples
    _, _, vt = np.linalg.svd(feats, full_matrices=False)
    order = np.argsort(feats @ vt[0], kind="stable")
    return {k: v[order] for k, v in samples.items()}


def batch_size(model: onnx.ModelProto, wanted: int = 16) -> tuple[int, bool]:
    """(batch size, static?): ``wanted``, unless an input has a static batch dimension."""
    for inp in runtime.graph_inputs(model):
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
        threads = threads or os.cpu_count() or 1  # computing activations, not timing: every core
        self.session = runtime.session(probe, runtime.RuntimeConfig(threads=threads, opt_level="disable"))
        self.batch, self.static = batch_size(model)

    def run(self, samples: Samples) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``{tensor: value}`` per batch."""
        for _, out in self.run_fed(samples):
            yield out

    def run_fed(self, samples: Samples) -> Iterator[tuple[Samples, dict[str, np.ndarray]]]:
        """Yield ``(batch inputs, {tensor: value})`` per batch."""
        for feed in batches(samples, self.batch, self.static):
            yield feed, runtime.run(self.session, feed)

    def collect(self, samples: Samples, names: list[str]) -> dict[str, np.ndarray]:
        """Concatenate tensors ``names`` over all batches (small tensors only: outputs)."""
        parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for out in self.run(samples):
            for n in names:
                parts[n].append(out[n])
        return {n: np.concatenate(v) for n, v in parts.items()}


def _cut_to(model: onnx.ModelProto, names: list[str]) -> None:
    """Keep only the nodes ``names`` depend on, and no graph outputs (the caller adds
    ``names``). Initializers and inputs are kept as they are."""
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
    for name, shape in runtime.input_shapes(model, shapes).items():
        dtype = np.asarray(runtime.random_feeds(model, shapes)[name]).dtype
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
