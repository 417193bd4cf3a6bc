"""The torch rule registry: every rule's op has an op spec at the same domain and opsets, ranges
of one op never overlap, an op outside its rule's range (or domain) is refused like an op
without a rule, the opset picks the rule (Softmax's axis semantics), and the trainable
initializers follow the op specs."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import ops

torch = pytest.importorskip("torch")
from onnxprune.torchexec import REGISTRY, Executor, UnsupportedOp, trainable_names
from onnxprune.torchexec.registry import Registry


def test_every_rule_has_an_op_spec_at_its_domain_and_opsets():
    rules = list(REGISTRY)
    assert len(rules) > 50
    for rule in rules:
        node = helper.make_node(rule.op_type, [], [], domain=rule.domain)
        top = rule.max_opset or ops.LATEST_OPSETS[rule.domain]
        for opset in range(rule.min_opset, top + 1):
            found = ops.spec_for(node, {rule.domain: opset}) is not None or ops.is_constant(node)
            assert found, f"torch rule for {rule.op_type} at opset {opset} has no op spec"


def test_overlapping_ranges_are_refused():
    registry = Registry()
    registry.register("Op", max_opset=12)(lambda x, a: x[0])
    registry.register("Op", min_opset=13)(lambda x, a: x[0])
    with pytest.raises(ValueError, match="two torch rules for Op"):
        registry.register("Op", min_opset=10, max_opset=11)(lambda x, a: x[0])
    assert registry.lookup("Op", 12).max_opset == 12 and registry.lookup("Op", 20).min_opset == 13
    assert registry.lookup("Op", 12, domain="com.microsoft") is None


def _model(nodes, inits, opset=17, domains=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    imports = [helper.make_opsetid("", opset), *[helper.make_opsetid(d, 1) for d in domains]]
    return helper.make_model(graph, opset_imports=imports)


def test_an_op_outside_its_range_or_domain_is_unsupported():
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")
    upsample = helper.make_node("Upsample", ["x", "s"], ["y"])
    assert Executor(_model([upsample], [scales], opset=9)).outputs == ["y"]
    with pytest.raises(UnsupportedOp, match="no torch rule for Upsample"):
        Executor(_model([upsample], [scales], opset=13))  # Upsample's last opset is 10
    relu = helper.make_node("Relu", ["x"], ["y"], domain="com.example")
    with pytest.raises(UnsupportedOp, match="no torch rule for Relu"):
        Executor(_model([relu], [], domains=["com.example"]))


@pytest.mark.parametrize("opset", [12, 13])
def test_the_model_opset_picks_the_softmax_rule(opset):
    """Before opset 13 Softmax normalises over ``axis`` and every axis after it."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    net = Executor(_model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [], opset=opset))
    y = net({"x": torch.from_numpy(x)})["y"].numpy()
    over = (1, 2, 3) if opset < 13 else (1,)
    e = np.exp(x - x.max(axis=over, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=over, keepdims=True), rtol=1e-5, atol=1e-6)


def test_trainable_names_follow_the_op_specs():
    """Linear weights and biases, normalisation scales and biases, either Gemm/MatMul operand,
    an Add's operand after a MatMul; not running statistics, integer tensors, or the
    initializers of an op without a torch rule (com.microsoft Attention). The graph is not run."""
    rng = np.random.default_rng(0)

    def init(name, *shape, dtype=np.float32):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(dtype), name)

    inits = [init("w", 3, 3, 1, 1), init("b", 3), init("g", 3), init("beta", 3), init("mean", 3),
             init("var", 3), init("a", 2, 48), init("wg", 48, 4), init("c", 4), init("wm", 4, 4),
             init("bm", 4), init("ln_g", 4), init("ln_b", 4), init("aw", 4, 12), init("ab", 12),
             init("shape", 2, dtype=np.int64)]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c1"]),
             helper.make_node("BatchNormalization", ["c1", "g", "beta", "mean", "var"], ["n"]),
             helper.make_node("Reshape", ["n", "shape"], ["f"]),
             helper.make_node("Gemm", ["a", "wg", "c"], ["gm"]),  # the constant is A
             helper.make_node("Add", ["gm", "f"], ["s"]),  # not after a MatMul: not a bias
             helper.make_node("MatMul", ["s", "wm"], ["m"]),
             helper.make_node("Add", ["m", "bm"], ["mb"]),
             helper.make_node("LayerNormalization", ["mb", "ln_g", "ln_b"], ["ln"]),
             helper.make_node("Attention", ["ln", "aw", "ab"], ["y"], domain=ops.MS_DOMAIN, num_heads=2)]
    model = _model(nodes, inits, domains=[ops.MS_DOMAIN])
    assert trainable_names(model) == ["w", "b", "g", "beta", "a", "wg", "c", "wm", "bm", "ln_g", "ln_b"]
