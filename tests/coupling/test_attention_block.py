"""A conv text recogniser's attention block (like PP-OCR's SVTR neck): conv features squeezed
and transposed into tokens, LayerNorms written out as ReduceMean/Sub/Pow/Sqrt/Div, multi-head
attention (Softmax, activation x activation MatMuls), an Erf-GELU MLP, residual Adds, and back
to the conv layout for a last conv. Channels that a LayerNorm mixes freeze; the attention heads
(Q, K, V projections and the output projection's input, one group whose channels are heads),
the MLP hidden units and the conv after the block prune, and the zero-filter proof holds."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from prunecheck import group_of, prove

C, T, HIDDEN, HEADS = 16, 8, 32, 2


def _layer_norm(nodes, inits, x: str, name: str) -> str:
    """(x - mean) / sqrt(var + eps) * gamma + beta over the last axis, op by op."""
    rng = np.random.default_rng(len(nodes))
    inits += [numpy_helper.from_array(rng.uniform(0.5, 1.5, C).astype(np.float32), f"{name}_g"),
              numpy_helper.from_array(rng.standard_normal(C).astype(np.float32), f"{name}_b"),
              numpy_helper.from_array(np.array(2.0, np.float32), f"{name}_two"),
              numpy_helper.from_array(np.array(1e-5, np.float32), f"{name}_eps")]
    nodes += [
        helper.make_node("ReduceMean", [x], [f"{name}_m"], axes=[-1], name=f"{name}_mean"),
        helper.make_node("Sub", [x, f"{name}_m"], [f"{name}_d"], name=f"{name}_sub"),
        helper.make_node("Pow", [f"{name}_d", f"{name}_two"], [f"{name}_p"], name=f"{name}_pow"),
        helper.make_node("ReduceMean", [f"{name}_p"], [f"{name}_v"], axes=[-1], name=f"{name}_var"),
        helper.make_node("Add", [f"{name}_v", f"{name}_eps"], [f"{name}_e"], name=f"{name}_add"),
        helper.make_node("Sqrt", [f"{name}_e"], [f"{name}_s"], name=f"{name}_sqrt"),
        helper.make_node("Div", [f"{name}_d", f"{name}_s"], [f"{name}_n"], name=f"{name}_div"),
        helper.make_node("Mul", [f"{name}_n", f"{name}_g"], [f"{name}_n2"], name=f"{name}_scale"),
        helper.make_node("Add", [f"{name}_n2", f"{name}_b"], [f"{name}_y"], name=f"{name}_shift"),
    ]
    return f"{name}_y"


def attention_conv() -> onnx.ModelProto:
    """x [1,3,1,T] -> conv(C)+Relu -> Squeeze(H) -> Transpose -> tokens [1,T,C] -> LN -> MHA ->
    +res -> LN -> MLP(Erf-GELU) -> +res -> Transpose -> Unsqueeze -> conv(C) -> conv(5) -> y."""
    rng = np.random.default_rng(0)
    arrays = {
        "w0": rng.standard_normal((C, 3, 1, 3)) / 3, "b0": rng.standard_normal(C),
        "wq": rng.standard_normal((C, C)) / 4, "wk": rng.standard_normal((C, C)) / 4,
        "wv": rng.standard_normal((C, C)) / 4, "wo": rng.standard_normal((C, C)) / 4,
        "bo": rng.standard_normal(C),
        "w1": rng.standard_normal((C, HIDDEN)) / 4, "b1": rng.standard_normal(HIDDEN),
        "w2": rng.standard_normal((HIDDEN, C)) / 6, "b2": rng.standard_normal(C),
        "w3": rng.standard_normal((C, C, 1, 3)) / 7, "b3": rng.standard_normal(C),
        "w4": rng.standard_normal((5, C, 1, 1)) / 4,
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()]
    consts = {"axis2": np.array([2], np.int64), "heads": np.array([1, T, HEADS, C // HEADS], np.int64),
              "merge": np.array([1, T, C], np.int64), "sqrt2": np.array(np.sqrt(2), np.float32),
              "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32),
              "scale": np.array(1 / np.sqrt(C // HEADS), np.float32)}
    inits += [numpy_helper.from_array(v, k) for k, v in consts.items()]
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[0, 1, 0, 1]),
             n("Relu", ["c0"], ["r0"], name="relu0"),
             n("Squeeze", ["r0", "axis2"], ["sq"], name="squeeze"),
             n("Transpose", ["sq"], ["tok"], name="to_tokens", perm=[0, 2, 1])]
    ln1 = _layer_norm(nodes, inits, "tok", "ln1")
    for h in ("q", "k", "v"):
        nodes += [n("MatMul", [ln1, f"w{h}"], [h], name=f"proj_{h}"),
                  n("Reshape", [h, "heads"], [f"{h}4"], name=f"split_heads_{h}"),
                  n("Transpose", [f"{h}4"], [f"{h}h"], name=f"heads_first_{h}", perm=[0, 2, 1, 3])]
    nodes += [n("Transpose", ["kh"], ["kt"], name="k_t", perm=[0, 1, 3, 2]),
              n("MatMul", ["qh", "kt"], ["qk"], name="scores"),
              n("Mul", ["qk", "scale"], ["qks"], name="scaled"),
              n("Softmax", ["qks"], ["attn"], name="softmax", axis=-1),
              n("MatMul", ["attn", "vh"], ["ctx"], name="context"),
              n("Transpose", ["ctx"], ["ctx_t"], name="tokens_first", perm=[0, 2, 1, 3]),
              n("Reshape", ["ctx_t", "merge"], ["ctx_m"], name="merge_heads"),
              n("MatMul", ["ctx_m", "wo"], ["o"], name="proj_o"),
              n("Add", ["o", "bo"], ["ob"], name="proj_o_bias"),
              n("Add", ["tok", "ob"], ["res1"], name="residual1")]
    ln2 = _layer_norm(nodes, inits, "res1", "ln2")
    nodes += [n("MatMul", [ln2, "w1"], ["h1"], name="fc1"),
              n("Add", ["h1", "b1"], ["h1b"], name="fc1_bias"),
              n("Div", ["h1b", "sqrt2"], ["hd"], name="gelu_div"),
              n("Erf", ["hd"], ["he"], name="gelu_erf"),
              n("Add", ["he", "one"], ["hp"], name="gelu_add"),
              n("Mul", ["h1b", "hp"], ["hm"], name="gelu_mul"),
              n("Mul", ["hm", "half"], ["gelu"], name="gelu_half"),
              n("MatMul", ["gelu", "w2"], ["h2"], name="fc2"),
              n("Add", ["h2", "b2"], ["h2b"], name="fc2_bias"),
              n("Add", ["res1", "h2b"], ["res2"], name="residual2"),
              n("Transpose", ["res2"], ["chw"], name="to_channels", perm=[0, 2, 1]),
              n("Unsqueeze", ["chw", "axis2"], ["img"], name="unsqueeze"),
              n("Conv", ["img", "w3", "b3"], ["c3"], name="conv3", pads=[0, 1, 0, 1]),
              n("Relu", ["c3"], ["r3"], name="relu3"),
              n("Conv", ["r3", "w4"], ["y"], name="head")]
    graph = helper.make_graph(
        nodes, "attention_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 1, T])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 1, T])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_attention_block_prunes_what_is_safe_and_proves():
    prep = prove(attention_conv())
    assert len(group_of(prep, "fc1").prunable) == HIDDEN  # the MLP hidden units
    assert len(group_of(prep, "conv3").prunable) == C  # the head conv's input
    assert "over the channel axis" in group_of(prep, "conv0").frozen_reason  # the LayerNorm
    heads = group_of(prep, "proj_q")
    assert heads is group_of(prep, "proj_k") is group_of(prep, "proj_v")
    assert heads.width == HEADS and len(heads.prunable) == HEADS
    assert {(m.node, m.role) for m in heads.members if m.param == "wo"} == {("proj_o", "in")}
