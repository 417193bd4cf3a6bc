"""Deployment precision: the model the runtime ships, made from a float model.

``int8`` is onnxruntime's own static quantizer (``onnxruntime.quantization.quantize_static``):
QDQ format, per-channel int8 weights, uint8 activations, calibrated on the user's samples with
MinMax, Percentile or Entropy ranges -- the tool a deployment engineer would otherwise run, so
a pruned int8 candidate differs from the runtime quantizer's model only by what onnxprune chose.

Invariants: the float model is never modified; a quantized model keeps the float model's
input and output names, shapes and types; a model the quantizer cannot take comes back as it
was, with one warning; the Conv/Gemm/MatMul nodes it left in float are named in one warning.
Latency does not depend on the calibrated ranges, so :func:`for_timing` quantizes a candidate
on a few samples only (the hardware loop times many), :func:`quantize` on all of them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import onnx

from . import calib
from .errors import first_line

PRECISIONS = ("fp32", "int8")
METHODS = ("minmax", "percentile", "entropy")
CHOICES = ("minmax", "percentile")  # tried for a written model, the more faithful kept (entropy: slow)
CALIB_SAMPLES = 128  # onnxruntime's examples calibrate on about this many inputs
TIMING_SAMPLES = 2  # ranges do not change latency: a timed candidate is calibrated on these
WEIGHTED = ("Conv", "Gemm", "MatMul")  # the ops whose int8 kernels are the point of it


@dataclass(frozen=True)
class Quantization:
    """How a float model becomes int8: the calibration ``method``, ``per_channel`` weight
    scales, the ``samples`` calibrated on (spread over the given ones), and node names kept in
    float (``keep_float``)."""

    method: str = "minmax"
    per_channel: bool = True
    samples: int = CALIB_SAMPLES
    keep_float: tuple[str, ...] = ()


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

    @property
    def label(self) -> str:
        """``fp32``, or ``int8 METHOD``."""
        return f"int8 {self.method}" if self.quantized else "fp32"


def quantize(model: onnx.ModelProto, samples: calib.Samples,
             how: Quantization = Quantization()) -> Quantized:
    """``model`` as a QDQ int8 model calibrated on up to ``how.samples`` of ``samples`` (evenly
    spread), or the float model with one warning when the quantizer fails on it."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    picked = _spread(samples, how.samples)
    batch = calib.batch_size(model, 16)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = calib.batches(picked, batch[0], exact=batch[1])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="onnxprune-int8-") as tmp, _quiet():
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        try:
            quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=how.per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=_method(how.method),
                            nodes_to_exclude=list(how.keep_float),
                            extra_options={"CalibTensorRangeSymmetric": False})
            out = onnx.load(dst)
        except Exception as exc:  # noqa: BLE001 -- any quantizer failure keeps the float model
            return Quantized(model, [f"int8: onnxruntime's quantizer cannot take this model "
                                     f"({first_line(exc)}); it stays fp32"], False)
    return Quantized(out, _float_left(out, set(how.keep_float)), True, how.method)


def for_timing(model: onnx.ModelProto, samples: calib.Samples, how: Quantization = Quantization()
               ) -> onnx.ModelProto:
    """The int8 model as :func:`quantize` makes it, calibrated on :data:`TIMING_SAMPLES`
    samples: the same graph and kernels, so the same latency, at a fraction of the cost."""
    return quantize(model, samples, Quantization("minmax", how.per_channel, TIMING_SAMPLES,
                                                 how.keep_float)).model


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[name]


def _spread(samples: calib.Samples, n: int) -> calib.Samples:
    """Up to ``n`` of ``samples``, evenly spread."""
    total = calib.count(samples)
    if total <= n:
        return samples
    return calib.take(samples, np.linspace(0, total - 1, n).round().astype(int))


def _float_left(model: onnx.ModelProto, kept: set[str]) -> list[str]:
    """One warning naming the weighted nodes the quantizer left in float (not asked to)."""
    made = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    left = [n.name or n.op_type for n in model.graph.node
            if n.op_type in WEIGHTED and n.name not in kept and not any(i in made for i in n.input[:2])]
    if not left:
        return []
    shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
    return [f"int8: onnxruntime's quantizer left {len(left)} Conv/Gemm/MatMul node(s) in fp32 "
            f"({shown})"]


@contextmanager
def _quiet() -> Iterator[None]:
    """The quantizer's Python log lines (pre-processing advice, progress) kept off stderr:
    what a run prints is its own."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR + 10)
    try:
        yield
    finally:
        root.setLevel(level)
