"""Sentence-embedding fidelity: token outputs [N, S, H] are mean-pooled over the real tokens
(the 0/1 attention mask among the inputs), then compared by cosine and nearest-neighbour
agreement; a closer model scores higher on both."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune import calib, verify

N, S, H = 24, 10, 8


def encoder(w: np.ndarray) -> onnx.ModelProto:
    """tokens [N, S, H] -> tokens @ w; ``mask`` [N, S] is an input the encoder ignores."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["tokens", "w"], ["hidden"])], "enc",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["N", S, H]),
         helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", S])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["N", S, H])],
        [numpy_helper.from_array(w.astype(np.float32), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def samples(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, S + 1, N)
    mask = (np.arange(S)[None] < lengths[:, None]).astype(np.int64)
    centres = rng.standard_normal((N // 2, H))  # pairs of near sentences: clear neighbours
    tokens = np.repeat(centres, 2, axis=0)[:, None, :] + 0.3 * rng.standard_normal((N, S, H))
    tokens[mask == 0] = 50.0  # padding that pooling must ignore
    return {"tokens": tokens.astype(np.float32), "mask": mask}


def test_pooling_ignores_padding():
    data = samples()
    pooled = verify.pooled(data["tokens"], data["mask"])
    assert np.abs(pooled).max() < 10.0
    k = 0
    real = data["tokens"][k][data["mask"][k] == 1]
    np.testing.assert_allclose(pooled[k], real.mean(0), rtol=1e-5)
    assert calib.attention_mask(data, (N, S)) is data["mask"]


def test_neighbour_agreement_bounds():
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((N, H))
    assert verify.neighbour_agreement(emb, emb) == 1.0
    assert verify.neighbour_agreement(emb, rng.standard_normal((N, H))) < 0.5


def test_closer_model_scores_higher():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((H, H))
    data = samples()
    reference = verify.outputs_on(encoder(w), data)
    near = verify.fidelity(reference, encoder(w + 0.05 * rng.standard_normal((H, H))), data)
    far = verify.fidelity(reference, encoder(w + 1.0 * rng.standard_normal((H, H))), data)
    same = verify.fidelity(reference, encoder(w), data)
    assert same.embedding_cosine > 0.9999 and same.neighbours == 1.0 and same.drop() == 0.0
    assert near.embedding_cosine > far.embedding_cosine
    assert near.neighbours >= far.neighbours
    assert near.drop() == 1.0 - near.neighbours and near.agreement is None


def test_normalised_sentence_embeddings_are_not_class_scores():
    """A pooled, L2-normalised [N, H] output (sentence-transformers' ``sentence_embedding``) is
    judged by embedding cosine and neighbours, not argmax agreement or softmax KL."""
    from onnxprune.sensitivity import classifier_like, distortion

    rng = np.random.default_rng(3)
    emb = rng.standard_normal((N, H))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    logits = 5 * rng.standard_normal((N, 10))
    assert not classifier_like("output", emb) and not classifier_like("pooler_output", logits)
    assert classifier_like("output", logits)
    assert distortion({"e": emb}, {"e": emb * 1.1}) > 0.009  # squared relative L2, not KL


def test_distortion_skips_padding_tokens():
    """What a model writes at padded positions is unused: changing only it costs nothing, and
    the fits see only real-token rows."""
    from onnxprune.sensitivity import distortion

    data = samples()
    ref = {"hidden": data["tokens"]}
    noisy = data["tokens"].copy()
    noisy[data["mask"] == 0] += 7.0
    assert distortion(ref, {"hidden": noisy}, data) == 0.0
    assert distortion(ref, {"hidden": noisy}) > 0.0
    rows = calib.real_rows(data, data["tokens"])
    assert rows.sum() == data["mask"].sum() and len(rows) == N * S
