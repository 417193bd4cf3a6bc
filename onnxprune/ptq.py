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

from dataclasses import dataclass

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
    at = _Index.of(out)
    floats = {t.name: t for t in float_model.graph.initializer}
    mine = {n.name: n for n in float_model.graph.node}
    nodes = [n for n in out.graph.node if _roundable(at, n, mine.get(n.name), floats)]
    rng = np.random.default_rng(seed)
    done = 0
    for chunk in _chunks(at, nodes):
        for node, h in zip(chunk, _hessians(out, chunk, samples, rng)):
            w = numpy_helper.to_array(floats[mine[node.name].input[1]]).astype(np.float64)
            done += _round_node(at, node, w, h)
    return out, done


@dataclass
class _Index:
    """A QDQ model's constants by name and DequantizeLinear nodes by output (built once; the
    constants are edited in place through it)."""

    consts: dict[str, onnx.TensorProto]
    dq: dict[str, onnx.NodeProto]

    @classmethod
    def of(cls, q: onnx.ModelProto) -> _Index:
        return cls({t.name: t for t in q.graph.initializer},
                   {n.output[0]: n for n in q.graph.node if n.op_type == "DequantizeLinear"})

    def weight(self, node: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.TensorProto]:
        """(the DequantizeLinear of ``node``'s weight, the int8 constant it reads)."""
        w_dq = self.dq[node.input[1]]
        return w_dq, self.consts[w_dq.input[0]]


def _roundable(at: _Index, node: onnx.NodeProto, other: onnx.NodeProto | None,
               floats: dict[str, onnx.TensorProto]) -> bool:
    """Whether ``node``'s weight (input 1) is an int8 constant read through a
    DequantizeLinear with one scale per output channel (or one in all), its input 0 an
    activation, its float weight held by the float model's node of its name (``other``), and
    its input rows sampled by its linear spec (a Conv: 2-D, its ``kernel_shape`` stated)."""
    if node.op_type not in ROUNDED_OPS or len(node.input) < 2 or node.input[1] not in at.dq:
        return False
    if node.input[0] in at.consts or other is None or len(other.input) < 2 or other.input[1] not in floats:
        return False
    w_dq = at.dq[node.input[1]]
    wq = at.consts.get(w_dq.input[0])
    spec = linear.linear(node)
    if wq is None or wq.data_type != onnx.TensorProto.INT8 or spec is None:
        return False
    if node.op_type == "Conv" and len(ops.attr(node, "kernel_shape", [])) != 2:
        return False
    scale = at.consts.get(w_dq.input[1])
    out_axis = spec.layout(node, tuple(wq.dims), 2).w_out
    return scale is not None and (np.prod(scale.dims) == 1
                                  or ops.attr(w_dq, "axis", 1) % len(wq.dims) == out_axis)


def _groups(node: onnx.NodeProto, w_shape: tuple[int, ...]) -> int:
    """The node's weight groups (a grouped Conv's, else 1), from its op's layout."""
    return linear.linear(node).layout(node, w_shape, 2).groups


def _chunks(at: _Index, nodes: list[onnx.NodeProto]) -> list[list[onnx.NodeProto]]:
    """``nodes`` in runs whose Hessians together fit :data:`HESSIAN_BUDGET`."""
    chunks: list[list[onnx.NodeProto]] = [[]]
    held = 0
    for node in nodes:
        dims = tuple(at.weight(node)[1].dims)
        spec = linear.linear(node)
        fan_in = int(np.prod(dims)) // dims[spec.layout(node, dims, 2).w_out] + 1
        size = fan_in * fan_in * _groups(node, dims)
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
    in ``q`` (one run of the model for all ``nodes``), split by weight group."""
    at = _Index.of(q)
    groups = [_groups(n, tuple(at.weight(n)[1].dims)) for n in nodes]
    tap = calib.Tap(q, list(dict.fromkeys(n.input[0] for n in nodes)), prefix=True)
    sums: list[np.ndarray | None] = [None] * len(nodes)
    picks: list[np.ndarray | None] = [None] * len(nodes)
    for feed, got in tap.run_fed(samples):
        for k, node in enumerate(nodes):
            f, picks[k], _ = linear.design_rows(node, got[node.input[0]], feed, rng, picks[k])
            g = groups[k]
            body = f[:, :-1].reshape(len(f), g, -1).transpose(1, 0, 2)
            rows = np.concatenate([body, np.broadcast_to(f[None, :, -1:], (g, len(f), 1))], axis=2)
            h = np.einsum("gri,grj->gij", rows, rows).astype(np.float64)
            sums[k] = h if sums[k] is None else sums[k] + h
    return sums


def _round_node(at: _Index, node: onnx.NodeProto, w: np.ndarray, h: np.ndarray) -> int:
    """Round ``node``'s float weight ``w`` by GPTQ against ``h`` (per group) on its scales and
    write the int8 weight and int32 bias through ``at`` where the output error drops; 1 if
    written."""
    spec = linear.linear(node)
    w_dq, wq_t = at.weight(node)
    wq = numpy_helper.to_array(wq_t)
    old_ints = spec.weight_rows(node, wq).astype(np.float64)
    scale = np.broadcast_to(numpy_helper.to_array(at.consts[w_dq.input[1]]).astype(np.float64).reshape(-1),
                            (len(old_ints),))
    rows = spec.weight_rows(node, w)
    bias = _bias(at, node, spec)
    b_float = numpy_helper.to_array(at.consts[bias[0]]) * bias[1] if bias else np.zeros(len(rows))
    per = len(rows) // h.shape[0]
    new_ints, new_b = np.zeros_like(old_ints), np.zeros(len(rows))
    before = after = 0.0
    for g in range(h.shape[0]):
        sl = slice(g * per, (g + 1) * per)
        v = np.hstack([rows[sl], b_float[sl, None]])
        new_ints[sl], new_b[sl] = _gptq(v, h[g], scale[sl], with_bias=bias is not None)
        before += _error(v - np.hstack([old_ints[sl] * scale[sl, None], v[:, -1:]]), h[g])
        after += _error(v - np.hstack([new_ints[sl] * scale[sl, None], new_b[sl, None]]), h[g])
    if not after < before:
        return 0
    wq_t.CopyFrom(numpy_helper.from_array(spec.rows_to_weight(node, new_ints, wq), wq_t.name))
    if bias is not None:
        limit = np.iinfo(np.int32)
        b_int = np.clip(np.round(new_b / bias[1]), limit.min, limit.max).astype(np.int32)
        at.consts[bias[0]].CopyFrom(numpy_helper.from_array(b_int, bias[0]))
    return 1


def _bias(at: _Index, node: onnx.NodeProto, spec: ops.LinearSpec) -> tuple[str, np.ndarray] | None:
    """(the int32 bias constant's name, its per-channel scale) where the node reads one
    through a DequantizeLinear; None otherwise (then the error is left with the weights)."""
    name = spec.bias_name(node)
    b_dq = at.dq.get(name) if name else None
    if b_dq is None or b_dq.input[0] not in at.consts or b_dq.input[1] not in at.consts:
        return None
    if at.consts[b_dq.input[0]].data_type != onnx.TensorProto.INT32:
        return None
    scale = numpy_helper.to_array(at.consts[b_dq.input[1]]).astype(np.float64)
    return b_dq.input[0], np.broadcast_to(scale.reshape(-1), tuple(at.consts[b_dq.input[0]].dims))


def _gptq(v: np.ndarray, h: np.ndarray, scale: np.ndarray, with_bias: bool,
          lo: int = -127, hi: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``v [out, d + 1]`` (the bias last) rounded to integer steps of ``scale [out]``
    column by column, each column's error spread over the later ones through the Cholesky
    factor of ``(h + damping)^-1``. The bias column is not rounded: it takes what is left; a
    node without a bias has none to take it (the bias column and its row of ``h`` are
    dropped, the bias returned as zeros). Returns (integers [out, d], the bias column)."""
    d = v.shape[1] - 1
    keep = d + 1 if with_bias else d
    v, h = v[:, :keep].copy(), h[:keep, :keep]
    damp = DAMPING * float(np.mean(np.diag(h))) + 1e-12
    try:
        u = np.linalg.cholesky(np.linalg.inv(h + damp * np.eye(keep))).T
    except np.linalg.LinAlgError:  # not positive definite (a dead input): nearest rounding
        u = np.eye(keep)
    ints = np.zeros((len(v), d))
    for i in range(d):
        ints[:, i] = np.clip(np.round(v[:, i] / scale), lo, hi)
        err = (v[:, i] - ints[:, i] * scale) / u[i, i]
        v[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    return ints, (v[:, d] if with_bias else np.zeros(len(v)))


def _error(e: np.ndarray, h: np.ndarray) -> float:
    """``sum_rows e H e^T``, ``e [out, d + 1]`` (the bias column last)."""
    return float(np.sum((e @ h) * e))
