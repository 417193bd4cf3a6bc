"""Preparation, the first half of every run: load and normalise the model, build its channel
graph, split the calibration data once (fit / held-out, or --val), score the channels, and keep
what every later stage compares with (the teacher's outputs on the feeds and the held-out
samples, computed once). The search drivers (:mod:`onnxprune.pipeline`) import this module,
never the reverse."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from . import calib, fidelity, guard, load, quantize, runtime, sensitivity
from .errors import OnnxPruneError
from .graph import ChannelGraph, build_graph, matches
from .importance import KINDS, activation_importance, weight_importance
from .inputs import random_feeds
from .progress import timed

MIN_HELD_CLUSTERS = 20  # fewer distinct held-out clusters than this: the held-out figure is rough


@dataclass
class Prepared:
    """A loaded model, its canonical form and channel graph, the feeds used to check it, and
    the calibration split (computed once).

    ``teacher``: the normalised *unpruned* model every fidelity figure compares with (``model``
    itself, except in the later stages of progressive pruning, where ``model`` is the model the
    previous stage wrote). ``warnings``: one line each, for the user, gathered along the run."""

    original: onnx.ModelProto
    model: onnx.ModelProto
    graph: ChannelGraph
    feeds: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    split: calib.Split | None = None
    stats: dict[str, sensitivity.ConsumerStats] = field(default_factory=dict)
    teacher: onnx.ModelProto | None = None
    importance: str = "l1"
    exclude: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unproven: dict[int, str] = field(default_factory=dict)  # group id -> why (verify.prove)
    reference_outputs: dict[str, np.ndarray] | None = field(default=None, repr=False)
    held_outputs: dict[str, np.ndarray] | None = field(default=None, repr=False)
    synthetic: calib.Samples | None = field(default=None, repr=False)
    metrics: dict[int, float] = field(default_factory=dict, repr=False)
    precision: str = "fp32"  # what the model ships in (quantize.PRECISIONS)
    chooser: tuple[calib.Samples, dict[str, np.ndarray]] | None = field(default=None, repr=False)
    int8_cache: str | None = None  # where quantized models are kept (quantize's cache folder)
    float_items: list[tuple[str, ...]] = field(default_factory=list)  # precision items' nodes (mixed)

    def __post_init__(self) -> None:
        self.teacher = self.teacher if self.teacher is not None else self.model

    def reference(self) -> dict[str, np.ndarray]:
        """The unpruned model's outputs on ``feeds`` (computed once)."""
        if self.reference_outputs is None:
            self.reference_outputs = runtime.run_outputs(self.teacher, self.feeds)
        return self.reference_outputs

    def held_reference(self) -> dict[str, np.ndarray]:
        """The unpruned model's outputs on the held-out samples (computed once)."""
        if self.held_outputs is None:
            self.held_outputs = fidelity.outputs_on(self.teacher, self.split.held)
        return self.held_outputs

    def value_samples(self, limit: int = 48) -> tuple[calib.Samples, bool]:
        """Samples the sensitivity table is measured on, and whether they are synthetic: up to
        ``limit`` samples of the second half of the fit part (the table's local refits are
        solved on the first half), or smooth random images without calibration data."""
        if self.split is not None:
            second = calib.halves(self.split.fit)[1]
            step = max(1, calib.count(second) // limit)  # spread over the half, not its edge
            return {k: v[::step][:limit] for k, v in second.items()}, False
        if self.synthetic is None:
            self.synthetic = calib.synthetic(self.model, min(limit, 32), self.shapes)
        return self.synthetic, True

    def deployable(self, model: onnx.ModelProto, timing: bool = False,
                   keep_float: tuple[str, ...] = ()) -> quantize.Quantized:
        """``model`` (a float candidate) in the precision the run ships, the nodes named in
        ``keep_float`` left in float: itself in fp32. int8:
        quantized by onnxruntime's quantizer on the fit samples (synthetic images without
        calibration data); with ``timing``, on a few of them (ranges do not change latency);
        otherwise with each of :data:`onnxprune.quantize.CHOICES` calibration methods, then
        the best of them with each further rounding of :data:`onnxprune.quantize.ROUNDINGS`:
        the model whose outputs on the table's samples stay closest to the teacher's is kept
        (chosen on the fit part: the held-out figure stays unseen; a method the quantizer
        fails with is skipped, the float model comes back only when every one fails).
        Warnings join ``warnings``."""
        if self.precision == "fp32":
            return quantize.Quantized(model, [], False)
        samples = self.split.fit if self.split is not None else self.value_samples()[0]
        if timing:
            how = quantize.Quantization(keep_float=keep_float)
            return quantize.Quantized(quantize.for_timing(model, samples, how), [], True)
        tried = [quantize.Quantization(method, keep_float=keep_float) for method in quantize.CHOICES]
        best, refused = self._closest(model, samples, tried)
        if best is not None:
            tried = [quantize.Quantization(best.method, keep_float=keep_float, rounding=r)
                     for r in quantize.ROUNDINGS[1:]]
            best = self._closest(model, samples, tried, best)[0]
        best = best or refused
        self.warnings.extend(best.warnings)
        return best

    def _closest(self, model: onnx.ModelProto, samples: calib.Samples,
                 tried: list[quantize.Quantization], best: quantize.Quantized | None = None
                 ) -> tuple[quantize.Quantized | None, quantize.Quantized | None]:
        """(the model of ``tried`` -- or ``best``, already measured -- whose outputs on the
        table's samples are closest to the teacher's, the first refusal if any)."""
        if self.chooser is None:
            chosen = self.value_samples()[0]
            self.chooser = (chosen, fidelity.outputs_on(self.teacher, chosen))
        chosen, reference = self.chooser
        refused = None
        for how in tried:
            q = quantize.quantize(model, samples, how, self.int8_cache)
            if not q.quantized:  # this calibration failed: another one may not
                refused = refused or q
                continue
            q.distortion = fidelity.distortion(reference, fidelity.outputs_on(q.model, chosen), chosen)
            if best is None or q.distortion < best.distortion:
                best = q
        return best, refused

    def baseline_metric(self, evaluate: Callable[[str], float]) -> float:
        """The user's metric on the unpruned model (computed once per callable)."""
        if id(evaluate) not in self.metrics:
            self.metrics[id(evaluate)] = fidelity.evaluate_model(self.teacher, evaluate)
        return self.metrics[id(evaluate)]


@timed("prepare")
def prepare(model: onnx.ModelProto | str, shapes: dict[str, tuple[int, ...]] | None = None,
            importance: str = "auto", exclude: list[str] | None = None,
            calib_data: calib.Samples | None = None,
            val_data: calib.Samples | None = None, precision: str = "fp32") -> Prepared:
    """Load (from a path) and normalise a model, build its channel graph, split the
    calibration data and choose which channels go first (``importance``: l1 / l2 weight
    norms; activation; reconstruction, the least-squares refit cost on calibration data;
    auto = reconstruction with calibration data, else l1). Groups whose name or member nodes
    match an ``exclude`` pattern are frozen. ``calib_data`` / ``val_data``: samples (files are
    read by :func:`onnxprune.api.read_data`).

    The calibration samples are split once (:func:`onnxprune.calib.split`): whole clusters of
    near-duplicates (:func:`onnxprune.calib.near_duplicates`) are held out, or, with
    ``val_data``, every calibration sample is fitted and fidelity is judged on ``val_data``.
    Dynamic input axes take the calibration samples' sizes unless ``shapes`` sets them
    (:func:`onnxprune.calib.shapes_from`): latency is measured at the calibrated length.
    ``precision``: what every candidate is timed, judged and written in
    (:meth:`Prepared.deployable`)."""
    if importance not in KINDS:
        raise OnnxPruneError(f"--importance must be one of {', '.join(KINDS)}")
    original = load.load_model(model) if isinstance(model, str) else model
    samples, val = calib_data, val_data  # read by onnxprune.api.read_data, the one door
    if val is not None and samples is None:
        raise OnnxPruneError("--val needs calibration data to fit on (--calib)")
    user_shapes, shapes = shapes, calib.shapes_from(original, samples, shapes) or None
    guard.check(original, shapes, samples, user_shapes, val)
    importance = _importance(importance, samples)
    normalised = load.normalise(original, shapes)
    split = _split(normalised, samples, val)
    prep = Prepared(original, normalised, build_graph(normalised, shapes),
                    random_feeds(normalised, shapes), shapes or {}, split,
                    importance=importance, exclude=list(exclude or []),
                    warnings=_held_out_warning(split) if split is not None else [],
                    precision=precision)
    if precision != "fp32" and split is None:
        prep.warnings.append(f"{precision} ranges were calibrated on synthetic images (no --calib): "
                             "pass calibration data for a faithful quantized model")
    _score_channels(prep)
    return prep


def _importance(importance: str, samples: calib.Samples | None) -> str:
    """The importance ``auto`` stands for; one that needs calibration data refused without it."""
    if importance == "auto":
        importance = "reconstruction" if samples is not None else "l1"
    if importance in ("activation", "reconstruction") and samples is None:
        raise OnnxPruneError(f"--importance {importance} needs calibration data (--calib data.npz)")
    return importance


def _split(normalised: onnx.ModelProto, samples: calib.Samples | None,
           val: calib.Samples | None) -> calib.Split | None:
    """The one calibration split of a run (None without calibration data)."""
    if samples is None:
        return None
    feats, labels, _ = calib.near_duplicates(normalised, samples)
    return calib.split(samples, labels, feats, val)


def _score_channels(prep: Prepared) -> None:
    """Freeze the groups ``prep.exclude`` names, then importance, consumer statistics and the
    reconstruction removal order of every group of ``prep.graph`` (on the fit samples)."""
    graph, importance, exclude = prep.graph, prep.importance, prep.exclude
    for group in graph.groups:
        names = [s.node for s in group.sources] + [p.node for p in group.members]
        if exclude and any(matches(n, exclude) for n in names):
            group.frozen = [r or "excluded by --exclude" for r in group.frozen]
    if importance == "activation":
        activation_importance(graph, prep.split.fit)
    else:
        weight_importance(graph, "l1" if importance == "reconstruction" else importance)
    if importance == "reconstruction":
        prep.stats = sensitivity.consumer_stats(graph, prep.split.fit)
        sensitivity.select_by_reconstruction(graph, prep.stats)


def _held_out_warning(split: calib.Split) -> list[str]:
    """The one warning when the held-out figure rests on few distinct inputs."""
    if split.source == "val" or split.held_clusters >= MIN_HELD_CLUSTERS:
        return []
    return [(f"the held-out check rests on {split.held_clusters} distinct cluster(s) of "
            f"calibration samples ({split.clusters} in all; near-duplicates such as crops of one "
            "photo count once): its agreement is rough (see its 95% interval); calibrate on more "
            "distinct inputs or pass --val")]


def restage(prep: Prepared, model: onnx.ModelProto) -> Prepared:
    """The preparation of ``model`` -- a pruned and recovered stage of ``prep``'s model -- for
    the next stage of progressive pruning: a new channel graph, importance, consumer statistics
    and removal order measured on ``model`` itself, while the calibration split, the feeds and
    the teacher (every fidelity figure compares with the unpruned model) are ``prep``'s."""
    shapes = prep.shapes or None
    normalised = load.normalise(model, shapes)
    nxt = Prepared(prep.original, normalised, build_graph(normalised, shapes), prep.feeds,
                   prep.shapes, prep.split, teacher=prep.teacher, importance=prep.importance,
                   exclude=prep.exclude, warnings=prep.warnings,
                   reference_outputs=prep.reference(),
                   held_outputs=prep.held_reference() if prep.split is not None else None,
                   metrics=prep.metrics, precision=prep.precision, chooser=prep.chooser)
    _score_channels(nxt)
    return nxt
