"""Precision per group as a search option: which channel groups a quantized model keeps in
float, chosen by the same knapsack as the channel widths.

Every profiled group whose layers the quantizer quantized becomes one *item* with two
options, int8 and fp32. Keeping a group float hands its weight-bearing nodes (the layers that
produce and read its channels) to the quantizer's ``nodes_to_exclude``, so the tensors between
them stay float too -- what one float node alone does not give: onnxruntime still quantizes
an excluded node's input when its producer is quantized. Per item:

* value: minus the measured drop in output distortion when the group is kept float, the rest
  int8 (the quantizer's own model, its ranges those of the all-int8 model,
  :func:`onnxprune.quantize.with_ranges`: one calibration serves every item), 0 in fp32 --
  the same samples and measure (:func:`onnxprune.fidelity.distortion`) as the pruning table,
  so the knapsack weighs a cut channel against a group kept float;
* cost: the group's layers at full width, their isolated one-node models measured in fp32 and
  in int8 (the profiler's models and cache, :class:`onnxprune.profile.LayerBench`).

Nothing is chosen by name, position or op: a group is kept float when the measurements say
it buys the most fidelity for its latency. Items share the widths dict with channel groups:
an item's key is below 0 (:func:`onnxprune.search.algorithm.item_key`), its option ``INT8`` or
``FLOAT`` (ascending cost, like widths), so the all-options-last point is the float model and
the knapsack spans the whole range from the user's model to every group at its floor in int8.
"""

from __future__ import annotations

import hashlib
import json
import os

import onnx

from . import backends, calib, fidelity, profile, quantize
from .preparation import Prepared
from .progress import short
from .search.algorithm import FLOAT, INT8, Choice, item_key
from .sensitivity import measure_rows


def float_gain(prep: Prepared, float_model: onnx.ModelProto, q: quantize.Quantized,
               nodes: tuple[str, ...]) -> float:
    """How much less output distortion (on the run's chooser samples, against the teacher)
    the quantizer's model of ``prep.model`` (``float_model``: it :func:`~onnxprune.quantize.prepared`,
    done once for every item) has with ``nodes`` kept float than ``q`` (its all-int8 model)
    has; the ranges are ``q``'s."""
    samples, reference = prep.chooser
    how = quantize.Quantization(keep_float=nodes, prepared=True)
    structure = quantize.for_timing(float_model, samples, how)
    model = quantize.with_ranges(structure, q.model)
    return q.distortion - fidelity.distortion(reference, fidelity.outputs_on(model, samples), samples)


def _as_quantized(quantized: list[str], nodes: set[str]) -> dict[str, str]:
    """Each of ``nodes`` (the float model's) that the quantizer quantized, as the quantized
    model names it: the same name, or the node its pre-processing fused it into (onnxruntime
    names a fused node after the first node it took: ``NAME/FusionName``, e.g. a MatMul and
    its bias Add become ``NAME/MatMulAddFusion``)."""
    have = set(quantized)
    fused = {q.rsplit("/", 1)[0]: q for q in quantized if q.rsplit("/", 1)[-1].endswith("Fusion")}
    return {n: n if n in have else fused[n] for n in nodes if n in have or n in fused}


def precision_choices(prep: Prepared, groups: list[profile.GroupProfile],
                      source: backends.LatencySource, cache: profile.Cache,
                      cache_dir: str | None) -> tuple[list[Choice], list[tuple[str, ...]]]:
    """The knapsack items of an int8 run (see the module docstring) and the nodes each keeps
    float (item ``k``'s are ``nodes[k]``): one per group of ``groups`` (the run's int8
    profile) with a layer the quantizer quantized in ``prep.model``, groups with the same
    nodes once. None when the quantizer refuses the model. The gains are cached under
    ``cache_dir`` (one file per model, samples and all-int8 model; a row per item)."""
    q = prep.deployable(prep.model)
    if not q.quantized:
        return [], []
    named = _as_quantized(quantize.quantized_nodes(q.model), {lp.layer.node for p in groups for lp in p.layers})
    items: dict[tuple[str, ...], list[tuple[profile.Layer, int]]] = {}
    for prof in groups:
        layers = {named[lp.layer.node]: (lp.layer, prof.width) for lp in prof.layers if lp.layer.node in named}
        if layers:
            items.setdefault(tuple(sorted(layers)), list(layers.values()))
    if not items:
        return [], []
    nodes = list(items)
    requests = [r for key in nodes for r in items[key]]
    fp32 = iter(profile.LayerBench(prep.graph, source, cache, "fp32").times(requests, confirm=True))
    int8 = iter(profile.LayerBench(prep.graph, source, cache, "int8").times(requests, confirm=True))
    cache.flush()
    costs = [(sum(next(int8) for _ in items[key]), sum(next(fp32) for _ in items[key])) for key in nodes]
    path = None
    if cache_dir:
        h = hashlib.sha256(prep.model.SerializeToString(deterministic=True))
        h.update(q.model.SerializeToString(deterministic=True))
        calib.digest(h, prep.chooser[0])
        path = os.path.join(cache_dir, f"int8-{h.hexdigest()[:32]}.json")
    keys = {k: hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32] for k, key in enumerate(nodes)}
    state: dict[str, onnx.ModelProto] = {}  # the prepared float model, made when a row is measured

    def row(k: int) -> dict[str, float]:
        if not state:
            state["float"] = quantize.prepared(prep.model)
        return {"gain": float_gain(prep, state["float"], q, nodes[k])}

    rows, _ = measure_rows("precision table", keys, row, path, lambda k: short(nodes[k][0]), column=str)
    choices = [Choice(item_key(k), [INT8, FLOAT], list(costs[k]), [-max(rows[k]["gain"], 0.0), 0.0])
               for k in range(len(nodes))]
    return choices, nodes
