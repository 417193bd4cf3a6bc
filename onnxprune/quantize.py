"""Deployment precision: the model the runtime ships, made from a float model.

``int8`` is onnxruntime's own static quantizer (``onnxruntime.quantization.quantize_static``):
QDQ format, per-channel int8 weights, uint8 activations, calibrated on the user's samples with
MinMax, Percentile or Entropy ranges, after the quantizer's own pre-processing
(``quant_pre_process``: onnxruntime's basic graph optimizations -- batch norms folded into their
convolutions, constants folded -- and shape inference) -- the tool a deployment engineer would
otherwise run, so a pruned int8 candidate differs from the runtime quantizer's model only by what
onnxprune chose. Without that step a batch norm stays a float op between a quantized convolution
and its consumer, and the int8 model is slower than the float one.

Invariants: the float model is never modified; a quantized model keeps the float model's
input and output names, shapes and types; a model the quantizer cannot take comes back as it
was, with one warning; the weight-bearing nodes it left in float are named in one warning.
Latency does not depend on the calibrated ranges, so :func:`for_timing` quantizes a candidate
on a few samples only (the hardware loop times many), :func:`quantize` on all of them, and
:func:`qdq_layer` writes an isolated layer (the profiler's) in the quantizer's QDQ pattern
directly, with fixed scales.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import cachefile, calib, load, ops, ptq
from .errors import first_line
from .runtimes import session

MODEL_PRECISIONS = ("fp32", "int8")  # what one written model computes in
PRECISIONS = (*MODEL_PRECISIONS, "auto")  # auto: each searched, the more faithful kept
METHODS = ("minmax", "percentile", "entropy")
CHOICES = ("minmax", "percentile")  # tried for a written model, the more faithful kept (entropy: slow)
ROUNDINGS = ("nearest", "gptq")  # int8 weights: the quantizer's own, or rounded to the data (ptq)
GPTQ_SAMPLES = 64  # samples the GPTQ Hessians are taken on (of the calibration ones)
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
CALIB_SAMPLES = 128  # onnxruntime's examples calibrate on about this many inputs
TIMING_SAMPLES = 2  # ranges do not change latency: a timed candidate is calibrated on these


@dataclass(frozen=True)
class Quantization:
    """How a float model becomes int8: the calibration ``method``, ``per_channel`` weight
    scales, the ``samples`` calibrated on (spread over the given ones), node names kept in
    float (``keep_float``), whether the model is :func:`prepared` already (``prepared``:
    its pre-processing is not run again), and how int8 weights are rounded (``rounding``, one
    of :data:`ROUNDINGS`: ``gptq`` is :func:`onnxprune.ptq.rounded` on the quantizer's model,
    same scales and graph)."""

    method: str = "minmax"
    per_channel: bool = True
    samples: int = CALIB_SAMPLES
    keep_float: tuple[str, ...] = ()
    prepared: bool = False
    rounding: str = "nearest"


@dataclass
class Quantized:
    """A quantized model and the one-line warnings about it (empty: every weighted op is int8);
    ``quantized`` False: the float model (fp32, or refused by the quantizer); ``method``: the
    calibration it was made with; ``distortion``: what chose it among methods (if measured)."""

    model: onnx.ModelProto
    warnings: list[str]
    quantized: bool
    method: str = ""
    distortion: float = float("inf")
    kept_float: tuple[str, ...] = ()  # nodes asked to stay float
    rounding: str = "nearest"

    @property
    def label(self) -> str:
        """``fp32``, ``int8 METHOD[ gptq]``, or that and ``, N node(s) fp32``."""
        if not self.quantized:
            return "fp32"
        rounded = " gptq" if self.rounding != "nearest" else ""
        return (f"int8 {self.method}{rounded}"
                + (f", {len(self.kept_float)} node(s) fp32" if self.kept_float else ""))


def quantize(model: onnx.ModelProto, samples: calib.Samples,
             how: Quantization = Quantization(), cache: str | None = None) -> Quantized:
    """``model`` as a QDQ int8 model calibrated on up to ``how.samples`` of ``samples`` (evenly
    spread), or the float model with one warning when the quantizer fails on it. With a
    ``cache`` folder, a model quantized before from the same bytes, samples, settings and
    onnxruntime version is read back from it (:func:`_cache_file`), and a new one is kept there.
    ``gptq`` rounding starts from the ``nearest`` model (itself cached) and rounds it on
    :data:`GPTQ_SAMPLES` of the same samples."""
    picked = calib.spread(samples, how.samples)
    path = _cache_file(cache, model, picked, how)
    if path and os.path.exists(path):
        with contextlib.suppress(Exception):  # an unreadable entry is quantized again, replaced
            out = onnx.load(path)
            os.utime(path)
            return Quantized(out, _float_left(out, set(how.keep_float)), True, how.method,
                             kept_float=how.keep_float, rounding=how.rounding)
    if how.rounding == "nearest":
        made = _quantize(model, picked, how)
    else:
        made = quantize(model, samples, replace(how, rounding="nearest"), cache)
        if made.quantized:
            source = model if how.prepared else prepared(model)
            made = replace(made, model=ptq.rounded(made.model, source, calib.spread(picked, GPTQ_SAMPLES))[0],
                           rounding=how.rounding)
    if path and made.quantized and not made.warnings:
        _keep(path, made.model)
    return made


CACHED_MODELS = 16  # quantized models a cache folder keeps, the least recently used dropped


def _cache_file(cache: str | None, model: onnx.ModelProto, picked: calib.Samples,
                how: Quantization) -> str | None:
    """The file in ``cache`` for ``model`` quantized as ``how`` on ``picked``: named by a hash
    of all of them and of the quantizer's version (None without a folder)."""
    if not cache:
        return None
    import onnxruntime

    h = hashlib.sha256(model.SerializeToString(deterministic=True))
    calib.digest(h, picked)
    h.update(f"v1|{onnxruntime.__version__}|{how}".encode())
    return os.path.join(cache, f"{h.hexdigest()[:32]}.onnx")


def _keep(path: str, model: onnx.ModelProto) -> None:
    """``model`` written to ``path`` atomically; the folder pruned to :data:`CACHED_MODELS`
    files, the least recently used first (a full disk loses the entry, not the run)."""
    folder = os.path.dirname(path)
    with contextlib.suppress(OSError):
        os.makedirs(folder, exist_ok=True)
        with cachefile.atomic_path(path) as tmp:
            onnx.save(model, tmp)
        names = [f for f in os.listdir(folder) if f.endswith(".onnx") and not f.startswith(".")]
        files = sorted((os.path.join(folder, f) for f in names), key=os.path.getmtime, reverse=True)
        for old in files[CACHED_MODELS:]:
            os.unlink(old)


def _quantize(model: onnx.ModelProto, picked: calib.Samples, how: Quantization) -> Quantized:
    """:func:`quantize` without the cache."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    batch = calib.batch_size(model, 16)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = calib.batches(picked, batch[0], exact=batch[1])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="onnxprune-int8-") as tmp, _quiet():
        dst = os.path.join(tmp, "int8.onnx")
        try:
            src, warnings = _prepared_file(model, tmp, how.prepared)
            quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=how.per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=_method(how.method),
                            nodes_to_exclude=list(how.keep_float))
            out = onnx.load(dst)
            session(out)  # what the quantizer wrote must load in the runtime
        except Exception as exc:  # noqa: BLE001 -- any quantizer failure keeps the float model
            why = f"int8: onnxruntime's quantizer cannot take this model ({first_line(exc)[:160]}); it stays fp32"
            return Quantized(model, [why], False)
    return Quantized(out, warnings + _float_left(out, set(how.keep_float)), True, how.method,
                     kept_float=how.keep_float)


def prepared(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` as the quantizer sees it before inserting QuantizeLinear/DequantizeLinear:
    opset raised (:func:`_qdq_opset`) and pre-processed (:func:`_pre_process`). Its node names
    and float tensor names are those of the models :func:`quantize` writes from ``model``;
    ``model`` itself when pre-processing fails."""
    with tempfile.TemporaryDirectory(prefix="onnxprune-int8-") as tmp, _quiet():
        return onnx.load(_prepared_file(model, tmp)[0])


def _prepared_file(model: onnx.ModelProto, folder: str, done: bool = False) -> tuple[str, list[str]]:
    """``model`` written into ``folder`` as the quantizer takes it (:func:`prepared`; as it is
    when ``done``): the file's path and the pre-processing's warning, if it failed."""
    src = os.path.join(folder, "float.onnx")
    if done:
        onnx.save(model, src)
        return src, []
    onnx.save(_qdq_opset(model), src)
    return _pre_process(src, os.path.join(folder, "prepared.onnx"))


def _qdq_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its default-domain opset raised to :data:`QDQ_OPSET` when lower (per-axis
    DequantizeLinear, which per-channel weights need, starts there; the quantizer itself does not
    convert the older ops), by onnx's version converter; ``model`` itself otherwise. Initializers
    an old export also lists as graph inputs (IR 3 requires it) become plain constants first:
    a quantized weight cannot be fed, and the converter turns such inputs into shape feeds."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), QDQ_OPSET)
    if version >= QDQ_OPSET:
        return model
    from onnx import version_converter

    model = onnx.ModelProto.FromString(model.SerializeToString())
    consts = {t.name for t in model.graph.initializer}
    fed = [i for i in model.graph.input if i.name not in consts]
    del model.graph.input[:]
    model.graph.input.extend(fed)
    model.ir_version = max(model.ir_version, 4)
    return version_converter.convert_version(model, QDQ_OPSET)


def _pre_process(src: str, dst: str) -> tuple[str, list[str]]:
    """``src`` through the quantizer's pre-processing into ``dst``: its basic graph
    optimizations and ONNX shape inference (symbolic shape inference, which only annotates
    shapes and costs seconds per candidate, is left out: the quantizer infers shapes itself).
    Returns the path to quantize and a one-line warning when the step fails (``src`` then)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(src, dst, skip_symbolic_shape=True)
    except Exception as exc:  # noqa: BLE001 -- an unoptimised model still quantizes
        why = f"int8: onnxruntime's quantization pre-processing failed ({first_line(exc)[:160]})"
        return src, [f"{why}; quantized without it"]
    return dst, []


def with_ranges(structure: onnx.ModelProto, calibrated: onnx.ModelProto) -> onnx.ModelProto:
    """``structure`` (a model :func:`quantize` wrote, e.g. on a few samples, some nodes kept
    float) with the scales and zero points of ``calibrated`` (the same float model quantized
    on all its samples): every constant of ``structure`` that ``calibrated`` has under the
    same name, shape and type is taken from it. Same graph and kernels as ``structure``, the
    ranges of ``calibrated``: one calibration serves every choice of float nodes."""
    theirs = {t.name: t for t in calibrated.graph.initializer}
    out = onnx.ModelProto.FromString(structure.SerializeToString())
    for t in out.graph.initializer:
        other = theirs.get(t.name)
        if other is not None and list(other.dims) == list(t.dims) and other.data_type == t.data_type:
            t.CopyFrom(other)
    return out


def for_timing(model: onnx.ModelProto, samples: calib.Samples, how: Quantization = Quantization()
               ) -> onnx.ModelProto:
    """The int8 model as :func:`quantize` makes it, calibrated on :data:`TIMING_SAMPLES`
    samples: the same graph and kernels, so the same latency, at a fraction of the cost."""
    return quantize(model, samples, replace(how, method="minmax", samples=TIMING_SAMPLES)).model


QDQ_OPSET = 13  # per-axis DequantizeLinear; onnxruntime's quantizer raises a model's opset to it


def qdq_layer(model: onnx.ModelProto, w_axis: int) -> onnx.ModelProto:
    """A one-node float model (``X, W[, B] -> Y``, W and B initializers) in the QDQ pattern
    onnxruntime's static quantizer writes for Conv/Gemm/MatMul: X and Y through uint8
    QuantizeLinear/DequantizeLinear, W int8 with one scale per output channel (``w_axis``),
    a 1-D bias int32 at scale ``x_scale * w_scale``. Scales are fixed (latency does not depend
    on them); names, shapes and feeds stay those of ``model``; the default-domain opset is
    raised to :data:`QDQ_OPSET` as the quantizer does."""
    graph = model.graph
    node = onnx.NodeProto.FromString(graph.node[0].SerializeToString())
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    w = consts[node.input[1]].astype(np.float32)
    other = tuple(a for a in range(w.ndim) if a != w_axis)
    w_scale = np.maximum(np.abs(w).max(axis=other), 1e-8) / 127
    shaped = w_scale.reshape([-1 if a == w_axis else 1 for a in range(w.ndim)])
    x_scale = np.float32(0.05)
    inits = [numpy_helper.from_array(x_scale, "x_scale"),
             numpy_helper.from_array(np.uint8(128), "x_zero"),
             numpy_helper.from_array(w_scale.astype(np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(w_scale.shape, np.int8), "w_zero"),
             numpy_helper.from_array(np.clip(np.round(w / shaped), -127, 127).astype(np.int8), "w_q")]
    x, y = node.input[0], node.output[0]
    nodes = [helper.make_node("QuantizeLinear", [x, "x_scale", "x_zero"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], axis=w_axis)]
    inputs = ["x_dq", "w_dq"] + list(node.input[2:])
    if len(node.input) > 2 and node.input[2] in consts and consts[node.input[2]].shape == w_scale.shape:
        b_scale = (x_scale * w_scale).astype(np.float32)
        b = np.round(consts[node.input[2]].astype(np.float32) / b_scale).astype(np.int32)
        inits += [numpy_helper.from_array(b, "b_q"), numpy_helper.from_array(b_scale, "b_scale"),
                  numpy_helper.from_array(np.zeros(b.shape, np.int32), "b_zero")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zero"], ["b_dq"], axis=0))
        inputs[2] = "b_dq"
    inits += [t for t in graph.initializer if t.name in inputs]
    del node.input[:]
    node.input.extend(inputs)
    node.output[0] = "y_f"
    nodes += [node, helper.make_node("QuantizeLinear", ["y_f", "x_scale", "x_zero"], ["y_q"]),
              helper.make_node("DequantizeLinear", ["y_q", "x_scale", "x_zero"], [y])]
    opsets = [helper.make_opsetid(o.domain, max(o.version, QDQ_OPSET) if o.domain in ("", "ai.onnx")
                                  else o.version) for o in model.opset_import]
    out = helper.make_model(helper.make_graph(nodes, graph.name, list(graph.input), list(graph.output),
                                              inits), opset_imports=opsets,
                            ir_version=max(model.ir_version, 7))
    return out


def quantized_nodes(q: onnx.ModelProto) -> list[str]:
    """Names of the nodes of QDQ model ``q`` with a weight the quantizer made int8 (an input
    read through a DequantizeLinear of a constant of two or more axes), in graph order."""
    dq = _weights_read(q)[1]
    return [n.name for n in q.graph.node
            if n.op_type not in QDQ_OPS and n.name and any(i in dq for i in n.input)]


def weight_precision(model: onnx.ModelProto) -> str:
    """What ``model`` computes its weight-bearing nodes (a constant input of two or more axes,
    read directly or through a DequantizeLinear) in: ``fp32``, ``int8`` or ``int8, K of N
    node(s) fp32``."""
    bearing = [p for _, p in _node_precisions(model)]
    left = bearing.count("fp32")
    if left == len(bearing):
        return "fp32"
    return "int8" + (f", {left} of {len(bearing)} node(s) fp32" if left else "")


def _node_precisions(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str]]:
    """``model``'s weight-bearing nodes (see :func:`weight_precision`) in graph order, each with
    ``int8`` (its weight read through a DequantizeLinear) or ``fp32``."""
    consts, dq = _weights_read(model)
    return [(n, "int8" if any(i in dq for i in n.input) else "fp32") for n in model.graph.node
            if n.op_type not in QDQ_OPS and any(i in consts or i in dq for i in n.input)]


def dequantized(q: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The float model a QDQ model ``q`` stands for, and each weight-bearing node's precision
    (``int8``: its weight read through a DequantizeLinear of a constant; else ``fp32``).

    Every DequantizeLinear of a constant becomes the float constant it computes (``(q - zero) *
    scale`` on its axis). Every QuantizeLinear whose readers are all DequantizeLinear nodes
    becomes, with them, a Clip to the range its integers can represent: the clamping stays (the
    quantizer folds a ReLU or ReLU6 into its output range), the rounding goes. Node names are
    kept; ``q`` is not modified; other quantized ops (QLinearConv, ...) are kept as they are."""
    out = onnx.ModelProto.FromString(q.SerializeToString())
    graph = out.graph
    consts = {t.name: t for t in graph.initializer}
    precisions = {n.name: p for n, p in _node_precisions(q) if n.name}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    renamed, made, folded = {}, {}, []
    for n in graph.node:
        pair = readers.get(n.output[0], [])
        if n.op_type == "DequantizeLinear" and n.input[0] in consts:
            folded.append(numpy_helper.from_array(_dequantize(n, consts), n.output[0]))
            made[id(n)] = None
        elif (n.op_type == "QuantizeLinear" and pair and all(r.op_type == "DequantizeLinear" for r in pair)
              and all(i in consts for i in n.input[1:3]) and len(n.input) > 2):
            lo, hi = _representable(n, consts)
            folded += [numpy_helper.from_array(lo, f"{n.name}_min"), numpy_helper.from_array(hi, f"{n.name}_max")]
            made[id(n)] = helper.make_node("Clip", [n.input[0], f"{n.name}_min", f"{n.name}_max"],
                                           [pair[0].output[0]], name=n.name)
            for r in pair:
                made[id(r)] = None
                renamed[r.output[0]] = pair[0].output[0]
    outputs = {o.name for o in graph.output}
    kept = [m for n in graph.node if (m := made.get(id(n), n)) is not None]
    for n in kept:
        for k, name in enumerate(n.input):
            n.input[k] = renamed.get(name, name)
    kept += [helper.make_node("Identity", [src], [name]) for name, src in renamed.items()
             if name in outputs and name != src]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(folded)
    return load.derived(out), precisions


def _representable(node: onnx.NodeProto, consts: dict[str, onnx.TensorProto]) -> tuple[np.ndarray, np.ndarray]:
    """The float range a per-tensor QuantizeLinear's integers stand for (float32 scalars)."""
    scale = float(numpy_helper.to_array(consts[node.input[1]]).reshape(-1)[0])
    zero = numpy_helper.to_array(consts[node.input[2]])
    limits = np.iinfo(zero.dtype)
    z = float(zero.reshape(-1)[0])
    return np.float32((limits.min - z) * scale), np.float32((limits.max - z) * scale)


def _dequantize(node: onnx.NodeProto, consts: dict[str, onnx.TensorProto]) -> np.ndarray:
    """What DequantizeLinear ``node`` computes from its constant inputs (float32)."""
    x = numpy_helper.to_array(consts[node.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(consts[node.input[1]]).astype(np.float64)
    zero = (numpy_helper.to_array(consts[node.input[2]]).astype(np.float64)
            if len(node.input) > 2 and node.input[2] in consts else np.zeros_like(scale))
    if scale.ndim == 1 and x.ndim > 1:
        shape = [1] * x.ndim
        shape[ops.attr(node, "axis", 1) % x.ndim] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((x - zero) * scale).astype(np.float32)


def _weights_read(model: onnx.ModelProto) -> tuple[set[str], set[str]]:
    """(constants of two or more axes, outputs of the DequantizeLinear nodes reading one)."""
    consts = {t.name for t in model.graph.initializer if len(t.dims) >= 2}
    dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in consts}
    return consts, dq


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[name]


def _float_left(model: onnx.ModelProto, kept: set[str]) -> list[str]:
    """One warning naming the weight-bearing nodes (a float initializer of two or more axes
    among their inputs) the quantizer left in float, not asked to (its registry lacks the op,
    or it declined the node)."""
    weights = {t.name for t in model.graph.initializer
               if len(t.dims) >= 2 and t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
    left = [f"{n.op_type} {n.name}".strip() for n in model.graph.node
            if n.name not in kept and n.op_type not in QDQ_OPS
            and any(i in weights for i in n.input)]
    if not left:
        return []
    shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
    return [f"int8: onnxruntime's quantizer left {len(left)} weight-bearing node(s) in fp32 ({shown})"]


@contextmanager
def _quiet() -> Iterator[None]:
    """The quantizer's Python log lines (pre-processing advice) and prints (calibration
    progress) kept off stderr and stdout: what a run prints is its own."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR + 10)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
