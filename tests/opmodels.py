"""Tiny single-op models for the op-family tests (tests/ops/test_<family>.py), built with
onnx.helper: ``sandwich`` puts one op between two convs, ``model`` wraps any node list."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

X_SHAPE = (1, 3, 8, 8)


def weight(name: str, shape: tuple[int, ...], seed: int) -> onnx.TensorProto:
    """A standard-normal float32 initializer."""
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], opset: int = 17,
          x_shape: Sequence[int] = X_SHAPE, outputs: Sequence[str] = ("y",)) -> onnx.ModelProto:
    """Graph input ``x`` (float, ``x_shape``), outputs of unknown shape, one opset import."""
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def sandwich(op: str, attrs: dict | None = None, opset: int = 20, c2_in: int = 12,
             consts: Sequence[np.ndarray | None] = ()) -> onnx.ModelProto:
    """x [1,3,8,8] -> Conv ``c1`` (12 channels, 3x3, bias) -> ``op`` named ``op`` -> Conv ``c2``
    (``c2_in`` input channels, 1x1) -> y. ``consts`` are the op's further inputs, as
    initializers ``op_in1``, ``op_in2``, ... (None: an omitted optional input)."""
    names = ["" if c is None else f"op_in{k + 1}" for k, c in enumerate(consts)]
    inits = [weight("w1", (12, 3, 3, 3), 0), weight("b1", (12,), 1),
             weight("w2", (5, c2_in, 1, 1), 2)]
    inits += [numpy_helper.from_array(np.asarray(c), n) for n, c in zip(names, consts) if n]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node(op, ["a", *names], ["b"], name="op", **(attrs or {})),
        helper.make_node("Conv", ["b", "w2"], ["y"], name="c2"),
    ]
    return model(nodes, inits, opset)


def initializer(model_: onnx.ModelProto, node: str, slot: int) -> np.ndarray:
    """The value of input ``slot`` of the node called ``node`` (an initializer)."""
    n = next(n for n in model_.graph.node if n.name == node)
    return numpy_helper.to_array(next(i for i in model_.graph.initializer if i.name == n.input[slot]))
