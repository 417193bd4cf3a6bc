"""Distill: the torch executor matches onnxruntime, distillation improves held-out fidelity of a
pruned MNIST CNN, and graphs it cannot run are skipped with a reason."""

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import OnnxPruneError, calib, prune, runtime
from onnxprune.distill import distill

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


def _executor_error(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> float:
    from onnxprune.torchexec import Executor, trainable_names

    net = Executor(model, trainable_names(model))
    with torch.no_grad():
        got = net({k: torch.from_numpy(v) for k, v in feeds.items()})
    return runtime.max_rel_error(runtime.run(model, feeds), {k: v.numpy() for k, v in got.items()})


def _decoder() -> onnx.ModelProto:
    """x [N,4,6,6] -> conv -> ConvTranspose (stride 2, asymmetric pads, output_padding) ->
    Concat with a linear Resize of x and a nearest Resize (sizes) of the conv -> conv -> y."""
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    inits = [init("w1", 8, 4, 3, 3), init("b1", 8), init("wt", 8, 5, 3, 3), init("bt", 5),
             init("w2", 3, 17, 1, 1), init("b2", 3),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array([2, 8, 12, 12], np.int64), "sizes")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("ConvTranspose", ["r", "wt", "bt"], ["u"], strides=[2, 2], pads=[1, 1, 0, 1],
                         output_padding=[0, 1]),
        helper.make_node("Resize", ["x", "", "scales"], ["lin"], mode="linear"),
        helper.make_node("Resize", ["r", "", "", "sizes"], ["near"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Concat", ["u", "lin", "near"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w2", "b2"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "decoder",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 12, 12])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("path", ["models/mnist_cnn.onnx", "models/mobilenet_v2.onnx"])
def test_executor_matches_onnxruntime_on_real_models(path):
    model = onnx.load(path)
    for seed in (0, 1):
        feeds = runtime.random_feeds(model, seed=seed)
        feeds = {k: np.concatenate([v, 2 * v]) for k, v in feeds.items()}  # batch 2
        assert _executor_error(model, feeds) < 1e-4


def test_executor_matches_onnxruntime_on_convtranspose_concat_resize():
    model = _decoder()
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 4, 6, 6)).astype(np.float32)}
    assert _executor_error(model, feeds) < 1e-4


@pytest.fixture(scope="module")
def mnist_pruned():
    sys.path.insert(0, "models")
    from mnist import mnist

    images, _ = mnist("calib")
    original = onnx.load("models/mnist_cnn.onnx")
    pruned = prune(original, ratio=0.5, calib=[{"input": images}], recovery=(), importance="l1").model
    split = calib.split({"input": images})
    return original, pruned, (split.fit, split.held), mnist("test")


def test_distill_improves_held_out_fidelity_of_a_pruned_cnn(mnist_pruned):
    original, pruned, (fit, held), (test_x, _) = mnist_pruned
    model, report = distill(original, pruned, fit, held, seconds=15.0, seed=0)
    assert report["kept"] and report["steps"] > 0
    assert report["kl_after"] < 0.5 * report["kl_before"]
    assert report["agreement_after"] > report["agreement_before"]
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.node == pruned.graph.node
    assert {(i.name, i.data_type, tuple(i.dims)) for i in model.graph.initializer} == \
        {(i.name, i.data_type, tuple(i.dims)) for i in pruned.graph.initializer}
    feeds = {"input": test_x[:200]}
    want = runtime.run(original, feeds)["logits"].argmax(1)
    before, after = runtime.run(pruned, feeds)["logits"], runtime.run(model, feeds)["logits"]
    assert after.shape == before.shape
    assert (after.argmax(1) == want).mean() > (before.argmax(1) == want).mean() + 0.2  # unseen images


def test_distill_pulls_perturbed_weights_back_with_an_intermediate_match(mnist_pruned):
    original, _, (fit, held), _ = mnist_pruned
    noisy = onnx.ModelProto()
    noisy.CopyFrom(original)
    rng = np.random.default_rng(0)
    for init in noisy.graph.initializer:
        if init.name == "3.weight":
            value = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(value + 2.0 * value.std() * rng.standard_normal(value.shape)
                                                  .astype(np.float32), init.name))
    tensor = "/5/Relu_output_0"
    _, report = distill(original, noisy, fit, held, seconds=5.0, match=[(tensor, tensor)])
    assert report["kept"] and report["kl_after"] < report["kl_before"]


def test_unsupported_op_is_skipped_with_a_reason():
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"]), helper.make_node("Hardmax", ["h"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    samples = {"x": np.ones((8, 4), np.float32)}
    out, report = distill(model, model, samples, samples, seconds=1.0)
    assert out is model and report == {"skipped": "no torch rule for Hardmax"}


def test_missing_torch_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    model = _decoder()
    samples = {"x": np.ones((2, 4, 6, 6), np.float32)}
    with pytest.raises(OnnxPruneError, match="pip install 'onnxprune\\[torch\\]'"):
        distill(model, model, samples, samples)
