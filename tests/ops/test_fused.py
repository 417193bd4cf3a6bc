"""onnxruntime's fused transformer ops (domain com.microsoft), as its transformer optimizer
writes them: a BERT layer made of EmbedLayerNormalization, Attention, SkipLayerNormalization,
BiasGelu / FastGelu and SkipSimplifiedLayerNormalization; a MultiHeadAttention block; the
contrib Gelu / QuickGelu. Attention heads prune as groups (``num_heads`` rewritten), the FFN
hidden units prune through the fused bias activations, the residual stream stays (LayerNorm)."""

import fakes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from prunecheck import group_of, prove

from onnxprune import ops, profile, runtime, runtimes
from onnxprune.preparation import prepare
from onnxprune.rewrite import apply_plan, ratio_plan

S, HID, HEADS, D, FF, VOCAB = 8, 16, 4, 4, 32, 10
MS = "com.microsoft"
OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]


def _model(nodes, inits: dict[str, np.ndarray], inputs, name: str) -> onnx.ModelProto:
    tensors = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    graph = helper.make_graph(
        nodes, name, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, S, HID])],
        tensors)
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _weights(rng: np.random.Generator, **shapes: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {k: (rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32) for k, s in shapes.items()}


def bert_layer(act: str, dv: int = D) -> onnx.ModelProto:
    """ids -> EmbedLayerNormalization -> MatMul(pre) -> Attention (mask, V heads of ``dv``;
    unequal Q|K|V widths add ``qkv_hidden_sizes`` and a per-head attention_bias) -> MatMul(o) ->
    SkipLayerNormalization -> MatMul(fc1) -> ``act`` (BiasGelu / FastGelu with the fc1 bias) ->
    MatMul(fc2) -> SkipSimplifiedLayerNormalization -> y."""
    rng = np.random.default_rng(0)
    sizes = [HEADS * D, HEADS * D, HEADS * dv]
    inits = _weights(rng, word=(VOCAB, HID), pos=(S, HID), seg=(2, HID), pre=(HID, HID),
                     wqkv=(HID, sum(sizes)), wo=(sizes[2], HID), w1=(HID, FF), w2=(FF, HID))
    inits.update({f"{k}_g": rng.uniform(0.5, 1.5, HID).astype(np.float32) for k in ("emb", "ln1", "ln2")})
    inits.update({k: rng.standard_normal(n).astype(np.float32)
                  for k, n in (("emb_b", HID), ("bqkv", sum(sizes)), ("ln1_b", HID), ("bo", HID),
                               ("b1", FF), ("b2", HID))})
    mask = np.ones((1, S), np.int32)
    mask[0, -2:] = 0
    inits["mask"] = mask
    extra = {}
    if dv != D:
        inits["rel"] = rng.standard_normal((1, HEADS, S, S)).astype(np.float32)
        extra["qkv_hidden_sizes"] = sizes
    n = helper.make_node
    nodes = [
        n("EmbedLayerNormalization", ["ids", "segs", "word", "pos", "seg", "emb_g", "emb_b"],
          ["emb", "emb_mask"], name="embed", domain=MS),
        n("MatMul", ["emb", "pre"], ["h"], name="pre"),
        n("Attention", ["h", "wqkv", "bqkv", "mask"] + (["", "rel"] if dv != D else []), ["ctx"],
          name="attn", domain=MS, num_heads=HEADS, **extra),
        n("MatMul", ["ctx", "wo"], ["o"], name="proj_o"),
        n("SkipLayerNormalization", ["o", "emb", "ln1_g", "ln1_b", "bo"], ["ln1"], name="skip_ln1",
          domain=MS),
        n("MatMul", ["ln1", "w1"], ["f1"], name="fc1"),
        n(act, ["f1", "b1"], ["act"], name="act", domain=MS),
        n("MatMul", ["act", "w2"], ["f2"], name="fc2"),
        n("SkipSimplifiedLayerNormalization", ["f2", "ln1", "ln2_g", "b2"], ["y"], name="skip_ln2",
          domain=MS),
    ]
    ids = [helper.make_tensor_value_info(k, TensorProto.INT32, [1, S]) for k in ("ids", "segs")]
    return _model(nodes, inits, ids, "bert_layer")


def _attr(model: onnx.ModelProto, node: str, name: str):
    return ops.attr(next(n for n in model.graph.node if n.name == node), name)


@pytest.mark.parametrize(("act", "dv"), [("BiasGelu", D), ("FastGelu", D + 2)])
def test_bert_layer_prunes_heads_and_ffn(act, dv):
    prep = prove(bert_layer(act, dv))
    g = prep.graph
    heads = group_of(prep, "attn")
    assert heads.width == HEADS and len(heads.prunable) == HEADS
    roles = {(m.node, m.param, m.role) for m in heads.members}
    assert {("attn", "wqkv", "out"), ("attn", "bqkv", "channelwise"), ("proj_o", "wo", "in")} <= roles
    assert (("attn", "rel", "channelwise") in roles) == (dv != D)
    assert len(group_of(prep, "pre").prunable) == HID  # consumed by Attention's weight rows
    assert len(group_of(prep, "fc1").prunable) == FF  # through the fused bias activation
    assert "LayerNorm statistics change" in group_of(prep, "proj_o").frozen_reason
    assert "LayerNorm statistics change" in group_of(prep, "fc2").frozen_reason
    pruned = apply_plan(g, ratio_plan(g, 0.3))
    kept = HEADS - round(0.3 * HEADS)
    assert _attr(pruned, "attn", "num_heads") == kept
    if dv != D:
        assert _attr(pruned, "attn", "qkv_hidden_sizes") == [kept * D, kept * D, kept * dv]


def mha_block(scores_input: bool = False) -> onnx.ModelProto:
    """x -> MatMul q/k/v -> MultiHeadAttention (packed Q|K|V bias, key padding mask; with
    ``scores_input`` an attention_bias [1, H, S, S] fed as a graph input) -> MatMul(o) -> Gelu ->
    QuickGelu -> MatMul -> y."""
    rng = np.random.default_rng(1)
    inits = _weights(rng, wq=(HID, HEADS * D), wk=(HID, HEADS * D), wv=(HID, HEADS * D),
                     wo=(HEADS * D, FF), w2=(FF, HID))
    inits["bqkv"] = rng.standard_normal(3 * HEADS * D).astype(np.float32)
    mask = np.ones((1, S), np.int32)
    mask[0, -1] = 0
    inits["mask"] = mask
    n = helper.make_node
    nodes = [n("MatMul", ["x", f"w{h}"], [h], name=f"proj_{h}") for h in "qkv"]
    nodes += [n("MultiHeadAttention", ["q", "k", "v", "bqkv", "mask"] + ["scores"] * scores_input,
                ["ctx"], name="mha", domain=MS, num_heads=HEADS),
              n("MatMul", ["ctx", "wo"], ["o"], name="proj_o"),
              n("Gelu", ["o"], ["g1"], name="gelu", domain=MS),
              n("QuickGelu", ["g1"], ["g2"], name="quick_gelu", domain=MS, alpha=1.702),
              n("MatMul", ["g2", "w2"], ["y"], name="fc2")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, S, HID])]
    if scores_input:
        inputs.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, HEADS, S, S]))
    return _model(nodes, inits, inputs, "mha_block")


def test_multi_head_attention_unifies_q_k_v_heads():
    prep = prove(mha_block())
    heads = group_of(prep, "proj_q")
    assert heads is group_of(prep, "proj_k") is group_of(prep, "proj_v")
    assert heads.width == HEADS and len(heads.prunable) == HEADS
    assert ("mha", "bqkv", "channelwise") in {(m.node, m.param, m.role) for m in heads.members}
    assert len(group_of(prep, "proj_o").prunable) == FF  # through Gelu and QuickGelu
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    assert _attr(pruned, "mha", "num_heads") == HEADS // 2


def test_heads_are_candidates_when_their_positions_align():
    """Alignment counts a layer's swept positions: whole heads of D = 4 values are aligned at
    any head count (channels would need multiples of 4)."""
    prep = prepare(bert_layer("BiasGelu"))
    run = profile.profile_model(prep.graph, fakes.Staircase(runtimes.RuntimeConfig()),
                                profile.Cache(None, "staircase"), [group_of(prep, "attn")],
                                progress=False)
    assert run.groups[0].candidates == [1, 2, 3, 4]


def test_attention_bias_computed_per_head_freezes_the_heads():
    prep = prove(mha_block(scores_input=True))
    assert "attention_bias computed per head" in group_of(prep, "proj_q").frozen_reason
    assert len(group_of(prep, "proj_o").prunable) == FF


def test_contrib_domain_needs_its_import():
    """A spec applies at the version the model imports of its own domain: a com.microsoft op
    in a model without that import has no spec."""
    node = helper.make_node("Gelu", ["x"], ["y"], domain=MS)
    assert ops.spec_for(node, {"": 17, MS: 1}) is not None
    assert ops.spec_for(node, {"": 17}) is None
    assert type(ops.spec_for(helper.make_node("Gelu", ["x"], ["y"]), {"": 20})).__name__ == "Unary"


def test_attention_profiles_over_heads():
    """Profiling sweeps Attention's output over whole heads: the isolated node at w heads has
    ``num_heads`` (and ``qkv_hidden_sizes``) for w heads and runs."""
    prep = prepare(bert_layer("FastGelu", D + 2))
    g = prep.graph
    layers = {(lay.node, lay.mode): lay for lay in profile.group_layers(g, group_of(prep, "attn"))}
    assert set(layers) == {("attn", "out"), ("proj_o", "in")}
    attn = layers["attn", "out"]
    assert (attn.fixed, attn.repeat) == (0, 2 * D + D + 2)
    node = next(n for n in g.model.graph.node if n.name == "attn")
    model, feeds = profile.isolate(g, node, attn.mode, attn.dim(3))
    isolated = model.graph.node[0]
    assert ops.attr(isolated, "num_heads") == 3
    assert ops.attr(isolated, "qkv_hidden_sizes") == [3 * D, 3 * D, 3 * (D + 2)]
    out = runtime.run_outputs(runtimes.session(model), feeds)
    assert out["ctx"].shape == (1, S, 3 * (D + 2))
