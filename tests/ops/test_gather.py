"""Embedding lookups are sources: without a LayerNorm after it, the embedding dimension prunes
(the table's columns and the next layer's rows go together) and the proof holds; a LayerNorm
on the stream freezes it with the LayerNorm's reason, also across a residual Add after it.
A token select (Gather on the token axis) keeps the channels."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from prunecheck import group_of, prove

V, S, E, H = 50, 6, 16, 24


def embedder(layer_norm: bool) -> onnx.ModelProto:
    """ids [1, S] -> table[ids] [1, S, E] (-> LayerNorm -> + residual) -> MatMul(E x H) -> Relu
    -> Gather token 0 -> MatMul(H x 4) -> y [1, 4]."""
    rng = np.random.default_rng(0)
    arrays = {"table": rng.standard_normal((V, E)), "w1": rng.standard_normal((E, H)) / 4,
              "w2": rng.standard_normal((H, 4)) / 5, "gamma": rng.uniform(0.5, 1.5, E),
              "beta": rng.standard_normal(E)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()]
    inits.append(numpy_helper.from_array(np.array(0, np.int64), "first"))
    n = helper.make_node
    nodes = [n("Gather", ["table", "ids"], ["emb"], name="embed", axis=0)]
    x = "emb"
    if layer_norm:
        nodes += [n("LayerNormalization", ["emb", "gamma", "beta"], ["ln"], name="ln", axis=-1),
                  n("Add", ["ln", "emb"], ["res"], name="residual")]
        x = "res"
    nodes += [n("MatMul", [x, "w1"], ["h"], name="fc1"), n("Relu", ["h"], ["r"], name="act"),
              n("Gather", ["r", "first"], ["tok"], name="select", axis=1),
              n("MatMul", ["tok", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "embedder",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, S])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_embedding_dimension_prunes_and_proves():
    prep = prove(embedder(layer_norm=False))
    emb = group_of(prep, "embed")
    assert emb.width == E and len(emb.prunable) == E
    assert {(m.param, m.role) for m in emb.members} >= {("table", "out"), ("w1", "in")}
    assert len(group_of(prep, "fc1").prunable) == H  # through the token select


def test_layer_norm_freezes_the_stream_with_its_reason():
    prep = prove(embedder(layer_norm=True))
    emb = group_of(prep, "embed")
    assert len(emb.prunable) == 0
    assert "LayerNormalization normalises over the channels" in emb.frozen_reason
