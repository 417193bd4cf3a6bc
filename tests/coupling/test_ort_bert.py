"""A tiny randomly initialised transformers BERT, exported by torch and fused by onnxruntime's
transformer optimizer (SkipLayerNormalization, BiasGelu in com.microsoft; Attention when its
pattern matches, which it does not for this export), proves: each layer's heads are one group, the FFN hidden units
prune through the fused activation, the residual stream stays."""

import collections
import warnings

import onnx
import pytest
from prunecheck import prove

HIDDEN, HEADS, LAYERS, FF, SEQ = 64, 4, 2, 128, 16


@pytest.fixture(scope="module")
def bert_onnx(tmp_path_factory) -> str:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                     num_attention_heads=HEADS, intermediate_size=FF,
                                     max_position_embeddings=64)
    bert = transformers.BertModel(config).eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids, mask):
            return self.bert(ids, mask, return_dict=False)[0]

    path = str(tmp_path_factory.mktemp("bert") / "bert.onnx")
    args = (torch.randint(0, 100, (1, SEQ)), torch.ones(1, SEQ, dtype=torch.long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(), args, path, input_names=["input_ids", "attention_mask"],
                          output_names=["hidden"], opset_version=17, dynamo=False)
    return path


def test_fused_bert_prunes_heads_and_ffn(bert_onnx):
    """``opt_level=0``: the fusions alone. With onnxruntime's own pass first (the default), the
    model holds MatMulAddFusion's ``gemm_input_shape`` initializers, and onnxruntime 1.32 then
    fails to load it once that fusion fires again ("Attempt to replace the existing tensor")."""
    from onnxruntime.transformers.optimizer import optimize_model

    path = bert_onnx.replace(".onnx", "_fused.onnx")
    optimize_model(bert_onnx, model_type="bert", num_heads=HEADS, hidden_size=HIDDEN,
                   opt_level=0).save_model_to_file(path)  # saving adds the com.microsoft import
    fused = onnx.load(path)
    ms_ops = collections.Counter(n.op_type for n in fused.graph.node if n.domain == "com.microsoft")
    assert ms_ops["SkipLayerNormalization"] == 2 * LAYERS
    assert ms_ops["BiasGelu"] + ms_ops["FastGelu"] + ms_ops["Gelu"] == LAYERS
    onnx.checker.check_model(fused)
    prep = prove(fused)
    groups = prep.graph.groups
    heads = [g for g in groups if g.width == HEADS]
    assert len(heads) == LAYERS and all(len(g.prunable) == HEADS for g in heads)
    assert sum(g.width == FF and len(g.prunable) == FF for g in groups) == LAYERS
    assert any("LayerNorm statistics change" in g.frozen_reason for g in groups)
