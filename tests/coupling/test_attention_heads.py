"""Attention heads are channel groups on every exporter's graph of real transformer code.

Randomly initialised Hugging Face models (BERT, DistilBERT, ViT, GPT-2 with its packed Conv1D
QKV written as Gemm + Split, Llama with rotary embeddings, grouped-query attention and a gated
SwiGLU FFN), each exported by the TorchScript and the dynamo exporter. In every graph one group
per layer holds the heads: the Q, K, V projections' output columns, unified per head (a channel
class is one head of D positions), and the output projection's input rows. With grouped-query
attention the Q heads that share a K/V head are coupled, so the group's width is the K/V head
count. The FFN hidden units are another group per layer (gate and up together). Pruning half of
every group passes the zero-filter proof, and the pruned graph keeps D.
"""

from __future__ import annotations

import hf  # skips this module without torch / transformers
import numpy as np
import pytest
from onnx import numpy_helper
from prunecheck import prove

HIDDEN, HEADS, HEAD_DIM = hf.HIDDEN, hf.HEADS, hf.HEAD_DIM
export = hf.export

CASES = [(name, dynamo) for name in ("bert", "distilbert", "vit", "gpt2", "llama")
         for dynamo in (False, True)]


@pytest.mark.parametrize("name,dynamo", CASES, ids=[f"{n}-{'dynamo' if d else 'torchscript'}"
                                                   for n, d in CASES])
def test_heads_and_ffn_are_groups_and_prove(name, dynamo, tmp_path):
    model = export(name, dynamo, tmp_path / "m.onnx")
    prep = prove(model, ratio=0.5)
    _, heads, ffn = hf.config(name)
    groups = prep.graph.prunable_groups()
    maps = {g.id: " ".join(h for _, _, h in prep.graph.spaces.edges(data="how")) for g in groups}
    spaces = prep.graph.group_spaces()
    head_groups = [g for g in groups if any(
        prep.graph.spaces.edges[e]["how"] == f"heads of {HEAD_DIM}"
        for e in prep.graph.spaces.edges if e[1] in spaces[g.id])]
    assert maps and len(head_groups) == 2  # one per layer
    assert all(g.width == heads and len(g.prunable) == heads for g in head_groups)
    ffn_groups = [g for g in groups if g.width == ffn]
    assert len(ffn_groups) == 2 and all(len(g.prunable) == ffn for g in ffn_groups)
    assert len(groups) == 4  # the hidden size (residual stream, LayerNorm) stays


def test_removed_heads_keep_head_dim(tmp_path):
    """Removing 2 of 4 BERT heads halves Q/K/V columns and the output projection's rows."""
    from onnxprune.rewrite import apply_plan, ratio_plan

    prep = prove(export("bert", False, tmp_path / "m.onnx"), ratio=0.5)
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    shapes = {i.name: numpy_helper.to_array(i).shape for i in pruned.graph.initializer}
    producers = {n.output[0]: n for n in pruned.graph.node}
    query = next(n for n in pruned.graph.node if n.name.endswith("layer.0/attention/self/query/MatMul"))
    out = next(n for n in pruned.graph.node if n.name.endswith("layer.0/attention/output/dense/MatMul"))
    assert shapes[query.input[1]] == (HIDDEN, HIDDEN // 2)
    assert shapes[out.input[1]] == (HIDDEN // 2, HIDDEN)
    split = next(n for n in pruned.graph.node if n.op_type == "Reshape"
                 and producers.get(n.input[0]) is not None and n.input[0].startswith(
                     "/model/encoder/layer.0/attention/self/query"))
    target = next(i for i in pruned.graph.initializer if i.name == split.input[1])
    assert int(np.ravel(numpy_helper.to_array(target))[-1]) == HEAD_DIM
