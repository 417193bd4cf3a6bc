"""Channel importance: weight norms over every scored slice, normalised per slice (scores are
dimensionless), times the BN scale a producer's channel really has; activation importance
sees what the weights cannot (a channel the calibration data never switches on)."""

import numpy as np
import pytest
import tiny
from onnx import numpy_helper
from prunecheck import group_of, prove

from onnxprune.graph import build_graph
from onnxprune.importance import activation_importance, weight_importance


def _set(model, name: str, fn) -> None:
    """Replace initializer ``name`` by ``fn(its value)``."""
    w = next(i for i in model.graph.initializer if i.name == name)
    w.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(w).copy()).astype(np.float32), name))


def _uniform_chain():
    """``tiny.conv_chain`` with every conv_0 filter and conv_1 input slice of equal norm, and
    BN statistics that scale every channel alike."""
    model = tiny.conv_chain()
    _set(model, "conv_0.weight", np.ones_like)
    _set(model, "conv_1.weight", np.ones_like)
    _set(model, "bn_0.scale", np.ones_like)
    _set(model, "bn_0.var", np.ones_like)
    return model


def _conv0(g):
    return next(grp for grp in g.groups if grp.name == "conv_0")


def test_importance_ranks_a_dead_filter_last():
    model = tiny.conv_chain()
    w = next(i for i in model.graph.initializer if i.name == "conv_1.weight")
    arr = numpy_helper.to_array(w).copy()
    arr[5] = 0.0
    w.CopyFrom(numpy_helper.from_array(arr, w.name))
    prep = prove(model)
    g1 = group_of(prep, "conv_1")
    assert int(np.argmin(g1.importance)) == 5


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_equal_channels_score_one_per_scored_slice(norm):
    g = build_graph(_uniform_chain())
    weight_importance(g, norm)
    conv0 = _conv0(g)
    np.testing.assert_allclose(conv0.importance, 2.0)  # conv_0's rows and conv_1's input slices


def test_bn_scale_weighs_the_producer_rows():
    """Equal weights, but BN multiplies channel 3 by 0.01 and channel 7 by 4: channel 3 ranks
    lowest, channel 7 highest."""
    model = _uniform_chain()
    scale = np.ones(16)
    scale[[3, 7]] = 0.01, 4.0
    _set(model, "bn_0.scale", lambda _: scale)
    g = build_graph(model)
    weight_importance(g)
    conv0 = _conv0(g)
    assert int(np.argmin(conv0.importance)) == 3 and int(np.argmax(conv0.importance)) == 7
    assert conv0.removal_order()[0] == 3 and conv0.keep_order()[0] == 7


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="norm must be one of"):
        weight_importance(build_graph(tiny.conv_chain()), "l3")


def test_activation_importance_ranks_a_channel_that_never_fires_last():
    """Channel 5's weights are typical, but BN shifts it so far down that Relu always zeroes
    it: weight norms cannot tell, the calibration activations can."""
    model = _uniform_chain()
    _set(model, "bn_0.bias", lambda b: np.where(np.arange(16) == 5, -1e4, b))
    g = build_graph(model)
    samples = {"x": np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)}
    activation_importance(g, samples)
    conv0 = _conv0(g)
    assert conv0.importance[5] == 0.0 and np.all(np.delete(conv0.importance, 5) > 0.5)
