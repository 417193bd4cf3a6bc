"""Fidelity metrics: output distortion is zero for identical outputs and grows with change;
class scores are told from embeddings; sentence-embedding fidelity (token outputs [N, S, H]
mean-pooled over the real tokens, the 0/1 attention mask among the inputs, then compared by
cosine and nearest-neighbour agreement) scores a closer model higher on both; the agreement's
interval is over clusters, not samples."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune import calib, fidelity
from onnxprune.fidelity import classifier_like, distortion

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
    pooled = fidelity.pooled(data["tokens"], data["mask"])
    assert np.abs(pooled).max() < 10.0
    k = 0
    real = data["tokens"][k][data["mask"][k] == 1]
    np.testing.assert_allclose(pooled[k], real.mean(0), rtol=1e-5)
    assert calib.attention_mask(data, (N, S)) is data["mask"]


def test_neighbour_agreement_bounds():
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((N, H))
    assert fidelity.neighbour_agreement(emb, emb) == 1.0
    assert fidelity.neighbour_agreement(emb, rng.standard_normal((N, H))) < 0.5


def test_closer_model_scores_higher():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((H, H))
    data = samples()
    reference = fidelity.outputs_on(encoder(w), data)
    near = fidelity.fidelity(reference, encoder(w + 0.05 * rng.standard_normal((H, H))), data)
    far = fidelity.fidelity(reference, encoder(w + 1.0 * rng.standard_normal((H, H))), data)
    same = fidelity.fidelity(reference, encoder(w), data)
    assert same.embedding_cosine > 0.9999 and same.neighbours == 1.0 and same.drop() == 0.0
    assert near.embedding_cosine > far.embedding_cosine
    assert near.neighbours >= far.neighbours
    assert near.drop() == 1.0 - near.neighbours and near.agreement is None


def test_normalised_sentence_embeddings_are_not_class_scores():
    """A pooled, L2-normalised [N, H] output (sentence-transformers' ``sentence_embedding``) is
    judged by embedding cosine and neighbours, not argmax agreement or softmax KL."""
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
    data = samples()
    ref = {"hidden": data["tokens"]}
    noisy = data["tokens"].copy()
    noisy[data["mask"] == 0] += 7.0
    assert distortion(ref, {"hidden": noisy}, data) == 0.0
    assert distortion(ref, {"hidden": noisy}) > 0.0
    rows = calib.real_rows(data, data["tokens"])
    assert rows.sum() == data["mask"].sum() and len(rows) == N * S


def test_distortion_is_zero_for_identical_outputs_and_grows_with_change():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 10))
    assert distortion({"y": a}, {"y": a}) == 0.0
    small = distortion({"y": a}, {"y": a + 0.1 * rng.standard_normal(a.shape)})
    large = distortion({"y": a}, {"y": a + 1.0 * rng.standard_normal(a.shape)})
    assert 0 < small < large


def test_interval_is_over_clusters_not_samples():
    hits = np.array([1] * 30 + [0] * 10)
    many = fidelity.agreement_interval(hits, np.arange(40))
    few = fidelity.agreement_interval(hits, np.repeat(np.arange(4), 10))  # 4 photos x 10 crops
    assert many[0] < 0.75 < many[1] and few[0] < 0.75 < few[1]
    assert few[1] - few[0] > 1.5 * (many[1] - many[0])
