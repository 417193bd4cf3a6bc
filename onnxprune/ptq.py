"""Rounding a QDQ model's int8 weights to its data (GPTQ, Frantar et al., ICLR 2023; the
optimal-brain-quantization update of LeCun et al. 1990 and Hassibi & Stork 1993).

onnxruntime's quantizer rounds every weight to its nearest int8 step on its own. The output
error of a linear node is ``(W - Q) X`` and depends on how the rounding errors of different
inputs combine on the data: rounded one input column at a time, the error of each column is
moved onto the columns not yet rounded, weighted by the inverse of the inputs' second moment
``H = X^T X`` (the Hessian of the layer's squared output error), and the bias, last, takes the
error left over. ``X`` is what the node reads in the quantized model itself (activations already
through their QuantizeLinear/DequantizeLinear), sampled at the same positions as the recovery
refits (:mod:`onnxprune.linear`).

Invariants: scales, zero points, graph and node names are unchanged (so latency is); only the
int8 weight values and the int32 bias values move; a node is rewritten only where its error
``sum_rows (v - q) H (v - q)^T`` drops, measured on the same samples; the input model is not
modified.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from . import calib, linear, ops

DAMPING = 0.01  # added to H's diagonal, relative to its mean (GPTQ's default)
HESSIAN_BUDGET = 2 ** 26  # float64 entries of H held at once (512 MB): nodes are taken in chunks
ROUNDED_OPS = ("Conv", "Gemm", "MatMul")


def rounded(q: onnx.ModelProto, float_model: onnx.ModelProto, samples: calib.Samples,
            seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """``q`` (a QDQ model :mod:`onnxprune.quantize` wrote from ``float_model``, its
    pre-processed float model: same node names) with the int8 weights of its Conv/Gemm/MatMul
    nodes rounded by GPTQ on ``samples``, and how many nodes were rewritten."""
    out = onnx.ModelProto.FromString(q.SerializeToString())
    nodes = _nodes(out, float_model)
    floats = {t.name: t for t in float_model.graph.initializer}
    mine = {n.name: n for n in float_model.graph.node}
    rng = np.random.default_rng(seed)
    done = 0
    for chunk in _chunks(out, nodes):
        hessians = _hessians(out, chunk, samples, rng)
        for node, h in zip(chunk, hessians):
            w = numpy_helper.to_array(floats[mine[node.name].input[1]]).astype(np.float64)
            done += _round_node(out, node, w, h)
    return out, done


def _nodes(q: onnx.ModelProto, float_model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The nodes of ``q`` whose weight (input 1) is an int8 constant read through a
    DequantizeLinear with one scale per output channel (or one in all), whose input 0 is an
    activation, and whose float weight ``float_model`` holds under the same node name."""
    consts = {t.name: t for t in q.graph.initializer}
    dq = {n.output[0]: n for n in q.graph.node if n.op_type == "DequantizeLinear"}
    floats = {t.name for t in float_model.graph.initializer}
    mine = {n.name: n for n in float_model.graph.node}
    picked = []
    for node in q.graph.node:
        if node.op_type not in ROUNDED_OPS or len(node.input) < 2 or node.input[1] not in dq:
            continue
        w_dq = dq[node.input[1]]
        wq = consts.get(w_dq.input[0])
        other = mine.get(node.name)
        if wq is None or wq.data_type != onnx.TensorProto.INT8 or node.input[0] in consts:
            continue
        if other is None or len(other.input) < 2 or other.input[1] not in floats:
            continue
        spec = linear.linear(node)
        if spec is None or _group_count(node) is None:
            continue
        scale = numpy_helper.to_array(consts[w_dq.input[1]])
        axis = next((a.i for a in w_dq.attribute if a.name == "axis"), 1)
        out_axis = spec.layout(node, tuple(wq.dims), 2).w_out
        if scale.size == 1 or axis % len(wq.dims) == out_axis:
            picked.append(node)
    return picked


def _group_count(node: onnx.NodeProto) -> int | None:
    """A Conv's ``group`` (1 for other ops); None for a Conv that is not 2-D or does not
    state its ``kernel_shape`` (its windows are not sampled)."""
    if node.op_type != "Conv":
        return 1
    have = {a.name: a for a in node.attribute}
    if "kernel_shape" not in have or len(have["kernel_shape"].ints) != 2:
        return None
    return have["group"].i if "group" in have else 1


def _chunks(q: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> list[list[onnx.NodeProto]]:
    """``nodes`` in runs whose Hessians together fit :data:`HESSIAN_BUDGET`."""
    consts = {t.name: t for t in q.graph.initializer}
    dq = {n.output[0]: n for n in q.graph.node if n.op_type == "DequantizeLinear"}
    chunks: list[list[onnx.NodeProto]] = [[]]
    held = 0
    for node in nodes:
        dims = tuple(consts[dq[node.input[1]].input[0]].dims)
        spec = linear.linear(node)
        fan_in = int(np.prod(dims)) // dims[spec.layout(node, dims, 2).w_out] + 1
        size = fan_in * fan_in * _group_count(node)
        if chunks[-1] and held + size > HESSIAN_BUDGET:
            chunks.append([])
            held = 0
        chunks[-1].append(node)
        held += size
    return [c for c in chunks if c]


def _hessians(q: onnx.ModelProto, nodes: list[onnx.NodeProto], samples: calib.Samples,
              rng: np.random.Generator) -> list[np.ndarray]:
    """Per node, ``H [groups, d + 1, d + 1]``: the second moment of its input rows (the
    features of :func:`onnxprune.linear.design_rows`, a constant column last) on ``samples``
    in ``q``, split by Conv group."""
    names = list(dict.fromkeys(n.input[0] for n in nodes))
    tap = calib.Tap(q, names, prefix=True)
    sums: list[np.ndarray | None] = [None] * len(nodes)
    picks: list[np.ndarray | None] = [None] * len(nodes)
    for feed, got in tap.run_fed(samples):
        for k, node in enumerate(nodes):
            f, picks[k], _ = linear.design_rows(node, got[node.input[0]], feed, rng, picks[k])
            g = _group_count(node)
            body = f[:, :-1].reshape(len(f), g, -1).transpose(1, 0, 2)
            rows = np.concatenate([body, np.broadcast_to(f[None, :, -1:], (g, len(f), 1))], axis=2)
            h = np.einsum("gri,grj->gij", rows, rows).astype(np.float64)
            sums[k] = h if sums[k] is None else sums[k] + h
    return sums


def _round_node(q: onnx.ModelProto, node: onnx.NodeProto, w: np.ndarray, h: np.ndarray) -> int:
    """Round ``node``'s float weight ``w`` by GPTQ against ``h`` (per group) on its scales and
    write the int8 weight and int32 bias into ``q`` where the output error drops; 1 if written."""
    consts = {t.name: t for t in q.graph.initializer}
    dq = {n.output[0]: n for n in q.graph.node if n.op_type == "DequantizeLinear"}
    spec = linear.linear(node)
    w_dq = dq[node.input[1]]
    wq_t = consts[w_dq.input[0]]
    wq = numpy_helper.to_array(wq_t)
    scale = np.broadcast_to(numpy_helper.to_array(consts[w_dq.input[1]]).astype(np.float64).reshape(-1),
                            (spec.weight_rows(node, wq).shape[0],))
    rows = spec.weight_rows(node, w)
    bias = _bias(q, node, spec, consts, dq)
    b_float = (numpy_helper.to_array(consts[bias[0]]).astype(np.float64) * bias[1]) if bias else None
    groups = h.shape[0]
    per = len(rows) // groups
    new_q = spec.weight_rows(node, wq).astype(np.float64)
    new_b = None if bias is None else np.zeros(len(rows))
    before = after = 0.0
    for g in range(groups):
        sl = slice(g * per, (g + 1) * per)
        v = np.hstack([rows[sl], (b_float[sl] if bias else np.zeros(per))[:, None]])
        old = np.hstack([new_q[sl] * scale[sl, None], v[:, -1:]])
        ints, last = _gptq(v, h[g], scale[sl], with_bias=bias is not None)
        new = np.hstack([ints * scale[sl, None], last[:, None]])
        before += _error(v - old, h[g])
        after += _error(v - new, h[g])
        new_q[sl] = ints
        if bias is not None:
            new_b[sl] = last
    if not after < before:
        return 0
    wq_t.CopyFrom(numpy_helper.from_array(spec.rows_to_weight(node, new_q, wq), wq_t.name))
    if bias is not None:
        limit = np.iinfo(np.int32)
        b_int = np.clip(np.round(new_b / bias[1]), limit.min, limit.max).astype(np.int32)
        consts[bias[0]].CopyFrom(numpy_helper.from_array(b_int, bias[0]))
    return 1


def _bias(q: onnx.ModelProto, node: onnx.NodeProto, spec: ops.LinearSpec, consts: dict,
          dq: dict) -> tuple[str, np.ndarray] | None:
    """(the int32 bias constant's name, its per-channel scale) where the node reads one
    through a DequantizeLinear; None otherwise (then the error is left with the weights)."""
    name = spec.bias_name(node)
    b_dq = dq.get(name) if name else None
    if b_dq is None or b_dq.input[0] not in consts or b_dq.input[1] not in consts:
        return None
    if consts[b_dq.input[0]].data_type != onnx.TensorProto.INT32:
        return None
    scale = numpy_helper.to_array(consts[b_dq.input[1]]).astype(np.float64)
    return b_dq.input[0], np.broadcast_to(scale.reshape(-1), tuple(consts[b_dq.input[0]].dims))


def _gptq(v: np.ndarray, h: np.ndarray, scale: np.ndarray, with_bias: bool,
          lo: int = -127, hi: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``v [out, d + 1]`` (the bias last) rounded to integer steps of ``scale [out]``
    column by column, each column's error spread over the later ones through the Cholesky
    factor of ``(h + damping)^-1``; the bias column is not rounded (it takes what is left;
    without a bias it is dropped). Returns (integers [out, d], the bias column)."""
    v = v.copy()
    if not with_bias:
        v, h = v[:, :-1], h[:-1, :-1]
    d = v.shape[1]
    damp = DAMPING * float(np.mean(np.diag(h))) + 1e-12
    try:
        u = np.linalg.cholesky(np.linalg.inv(h + damp * np.eye(d))).T
    except np.linalg.LinAlgError:  # not positive definite (a dead input): nearest rounding
        u = np.eye(d)
    steps = len(v[0]) - (1 if with_bias else 0)
    ints = np.zeros((len(v), steps))
    for i in range(steps):
        ints[:, i] = np.clip(np.round(v[:, i] / scale), lo, hi)
        err = (v[:, i] - ints[:, i] * scale) / u[i, i]
        v[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    return ints, (v[:, -1] if with_bias else np.zeros(len(v)))


def _error(e: np.ndarray, h: np.ndarray) -> float:
    """``sum_rows e H e^T`` over the columns ``e`` has (no bias column: H's last dropped)."""
    h = h[:e.shape[1], :e.shape[1]]
    return float(np.sum((e @ h) * e))
