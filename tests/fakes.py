"""Deterministic latency sources for tests: layer latencies from a formula, so profiles and
candidate widths are exact wherever the source runs (here or inside a Ray actor)."""

from __future__ import annotations

import math
import os
import time

import onnx

from onnxprune import backends, bench


class Staircase(backends.Local):
    """Layer latencies shaped like ORT CPU's blocked kernels: 0.01 ms per started block of 4
    channels on each channel axis of the layer's weight (its first initializer of two or more
    axes). Whole models (the hardware loop) are still measured for real by
    :class:`~onnxprune.backends.Local`."""

    def key(self) -> str:
        return f"staircase|{super().key()}"

    def layer(self, model: bytes, feeds: backends.Feeds, count: int) -> float:
        return self.weight_ms(_weight(onnx.load_from_string(model).graph.initializer))

    def weight_ms(self, weight: onnx.TensorProto) -> float:
        return sum(0.01 * (1 + math.ceil(d / 4)) for d in weight.dims[:2])


def _weight(initializers) -> onnx.TensorProto:
    return next(i for i in initializers if len(i.dims) >= 2)


class Analytic(Staircase):
    """Whole models too: a model's latency is the staircase summed over its conv/gemm weights
    (read through their DequantizeLinear in a quantized model), so the hardware loop, and the
    model it picks, are exact."""

    def model_ms(self, model: bytes) -> float:
        graph = onnx.load_from_string(model).graph
        consts = {i.name: i for i in graph.initializer}
        dq = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        weights = [dq.get(n.input[1], n.input[1]) for n in graph.node if n.op_type in ("Conv", "Gemm")]
        return sum(self.weight_ms(consts[w]) for w in weights if w in consts)

    def measure(self, model: bytes, feeds: backends.Feeds, rounds: int = 30,
                warmup: int = 5) -> bench.Timing:
        return bench.Timing.of([self.model_ms(model)] * rounds)

    def compare(self, a: bytes, b: bytes, feeds: backends.Feeds, rounds: int = 30,
                warmup: int = 5) -> bench.Comparison:
        ta, tb = self.model_ms(a), self.model_ms(b)
        return bench.Comparison(bench.Timing.of([ta]), bench.Timing.of([tb]), ta / tb, ta / tb,
                                ta / tb, rounds)


class Sleepy(Staircase):
    """Never answers a layer measurement in time."""

    def layer(self, model: bytes, feeds: backends.Feeds, count: int) -> float:
        time.sleep(60)
        return 0.0


class Crashing(Staircase):
    """Its process dies on every layer measurement (a dropped machine)."""

    def layer(self, model: bytes, feeds: backends.Feeds, count: int) -> float:
        os._exit(1)


class Int8Staircase(Analytic):
    """Analytic, with int8 kernels that block channels by 16 at a quarter of the cost: an
    int8 weight (a quantized model's or isolated layer's) is timed on that staircase."""

    def key(self) -> str:
        return f"int8-{super().key()}"

    def weight_ms(self, weight: onnx.TensorProto) -> float:
        if weight.data_type != onnx.TensorProto.INT8:
            return super().weight_ms(weight)
        return sum(0.0025 * (1 + math.ceil(d / 16)) for d in weight.dims[:2])
