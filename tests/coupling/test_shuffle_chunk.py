"""Channel shuffle (Reshape-Transpose-Reshape) and torch.chunk (Slice with bounds computed from
the tensor's shape): both need equal counts per part, so the parts' channels are unified."""

import numpy as np
import onnx
from onnx import helper, numpy_helper
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan


def _model(nodes, inits):
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", 1, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", 1, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def _w(name, shape, seed):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def test_channel_shuffle():
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="c1"),
        helper.make_node("Reshape", ["a", "s1"], ["r1"], name="split"),
        helper.make_node("Transpose", ["r1"], ["t"], name="shuffle", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "s2"], ["r2"], name="merge"),
        helper.make_node("Conv", ["r2", "w2"], ["y"], name="c2"),
    ]
    inits = [_w("w1", (8, 3, 1, 1), 0), _w("b1", (8,), 1), _w("w2", (4, 8, 1, 1), 2),
             numpy_helper.from_array(np.array([1, 2, 4, 6, 6], np.int64), "s1"),
             numpy_helper.from_array(np.array([1, 8, 6, 6], np.int64), "s2")]
    prep = prove(_model(nodes, inits), ratio=0.5)
    group = group_of(prep, "c1")
    assert group.width == 4  # channel j of each of the 2 rows is one channel
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    shape = numpy_helper.to_array(next(i for i in pruned.graph.initializer if i.name == "s1"))
    assert list(shape) == [1, 2, 2, 6, 6]


def test_chunk_with_computed_bounds():
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="c1"),
        helper.make_node("Shape", ["a"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "one"], ["c"], name="gather", axis=0),
        helper.make_node("Div", ["c", "two"], ["half"], name="div"),
        helper.make_node("Slice", ["a", "zero", "half", "one"], ["lo"], name="lo"),
        helper.make_node("Slice", ["a", "half", "c", "one"], ["hi"], name="hi"),
        helper.make_node("Conv", ["lo", "w2"], ["p"], name="c2"),
        helper.make_node("Concat", ["p", "hi"], ["cat"], name="cat", axis=1),
        helper.make_node("Conv", ["cat", "w3"], ["y"], name="c3"),
    ]
    ints = {"one": [1], "two": [2], "zero": [0]}
    inits = [_w("w1", (8, 3, 1, 1), 0), _w("b1", (8,), 1), _w("w2", (6, 4, 1, 1), 2),
             _w("w3", (5, 10, 1, 1), 3)]
    inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()]
    prep = prove(_model(nodes, inits), ratio=0.5)
    assert group_of(prep, "c1").width == 4 and len(group_of(prep, "c1").prunable) == 4
    assert isinstance(prep.model, onnx.ModelProto)
