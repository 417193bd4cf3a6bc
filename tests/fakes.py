"""Deterministic latency sources for tests: layer latencies from a formula, so profiles and
candidate widths are exact wherever the source runs (here or inside a Ray actor)."""

from __future__ import annotations

import math
import os
import time

import onnx
from onnx import numpy_helper

from onnxprune import backends


class Staircase(backends.Local):
    """Layer latencies shaped like ORT CPU's blocked kernels: 0.01 ms per started block of 4
    channels on each channel axis of the layer's weight. Whole models (the hardware loop) are
    still measured for real by :class:`~onnxprune.backends.Local`."""

    def key(self) -> str:
        return f"staircase|{super().key()}"

    def layer(self, model: bytes, feeds: backends.Feeds, count: int) -> float:
        weight = numpy_helper.to_array(onnx.load_from_string(model).graph.initializer[0])
        return sum(0.01 * (1 + math.ceil(d / 4)) for d in weight.shape[:2])


class Sleepy(Staircase):
    """Never answers a layer measurement in time."""

    def layer(self, model: bytes, feeds: backends.Feeds, count: int) -> float:
        time.sleep(60)
        return 0.0


class Crashing(Staircase):
    """Its process dies on every layer measurement (a dropped machine)."""

    def layer(self, model: bytes, feeds: backends.Feeds, count: int) -> float:
        os._exit(1)
