"""Deterministic latency sources for tests: layer latencies from a formula, so profiles and
candidate widths are exact wherever the source runs (here or inside a Ray actor)."""

from __future__ import annotations

import math
import os
import time

import onnx
from onnx import numpy_helper

from onnxprune import backends, bench


class Staircase(backends.Local):
    """Layer latencies shaped like ORT CPU's blocked kernels: 0.01 ms per started block of 4
    channels on each channel axis of the layer's weight. Whole models (the hardware loop) are
    still measured for real by :class:`~onnxprune.backends.Local`."""

    def key(self) -> str:
        return f"staircase|{super().key()}"

    def layer(self, model: bytes, feeds: backends.Feeds, count: int) -> float:
        weight = numpy_helper.to_array(onnx.load_from_string(model).graph.initializer[0])
        return sum(0.01 * (1 + math.ceil(d / 4)) for d in weight.shape[:2])


class Analytic(Staircase):
    """Whole models too: a model's latency is the staircase summed over its conv/gemm weights,
    so the hardware loop, and the model it picks, are exact."""

    def model_ms(self, model: bytes) -> float:
        graph = onnx.load_from_string(model).graph
        consts = {i.name: i for i in graph.initializer}
        return sum(self.layer(onnx.helper.make_model(onnx.helper.make_graph(
            [], "w", [], [], [consts[n.input[1]]])).SerializeToString(), {}, 1)
            for n in graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] in consts)

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
