"""ChannelGraph on conv -> BN -> Relu -> conv -> Relu -> conv (``tiny.conv_chain``): one group
per source, each with the weight slices that index its channels, the tensors its channels
occupy, who reads a tensor, and why channels are frozen."""

import numpy as np
import pytest
import tiny

from onnxprune import OnnxPruneError
from onnxprune.graph import ChannelGraph, Group, build_graph, matches


@pytest.fixture(scope="module")
def chain() -> ChannelGraph:
    return build_graph(tiny.conv_chain())


def _group(g: ChannelGraph, name: str) -> Group:
    return next(grp for grp in g.groups if grp.name == name)


def test_one_group_per_source_with_its_width(chain):
    assert [(grp.name, grp.width) for grp in chain.groups] == [
        ("graph input", 3), ("conv_0", 16), ("conv_1", 24), ("conv_2", 8)]
    assert [[(s.node, s.tensor, s.op_type) for s in grp.sources] for grp in chain.groups] == [
        [("graph input", "x", "Input")], [("conv_0", "conv_0", "Conv")],
        [("conv_1", "conv_1", "Conv")], [("conv_2", "y", "Conv")]]
    assert [grp.id for grp in chain.groups] == [0, 1, 2, 3]


def test_members_are_every_slice_indexed_by_the_channels(chain):
    members = {(m.param, m.axis, m.tensor, m.role, m.scored) for m in _group(chain, "conv_0").members}
    assert members == {
        ("conv_0.weight", 0, "conv_0", "out", True), ("conv_0.bias", 0, "conv_0", "channelwise", False),
        ("bn_0.scale", 0, "bn_0", "channelwise", False), ("bn_0.bias", 0, "bn_0", "channelwise", False),
        ("bn_0.mean", 0, "bn_0", "channelwise", False), ("bn_0.var", 0, "bn_0", "channelwise", False),
        ("conv_1.weight", 1, "relu_0", "in", True)}
    # the graph input's channels are only read (conv_0's input axis)
    assert {(m.param, m.axis, m.role) for m in _group(chain, "graph input").members} == {
        ("conv_0.weight", 1, "in")}


def test_channels_follow_through_bn_and_relu(chain):
    conv0 = _group(chain, "conv_0")
    for tensor in ("conv_0", "bn_0", "relu_0"):
        ch = chain.channels[tensor]
        assert ch.axis == 1 and ch.block is None
        assert list(chain.roots(ch.labels)) == list(conv0.classes)
    assert chain.spaces.edges[("conv_0", 1), ("bn_0", 1)]["how"] == "identity"
    assert sorted(chain.group_spaces()[conv0.id]) == [("bn_0", 1), ("conv_0", 1), ("relu_0", 1)]


def test_consumers_in_graph_order(chain):
    assert [n.name for n in chain.consumers("relu_0")] == ["conv_1"]
    assert [n.name for n in chain.consumers("x")] == ["conv_0"]
    assert chain.consumers("y") == [] and chain.consumers("no such tensor") == []


def test_frozen_reasons(chain):
    assert _group(chain, "graph input").frozen_reason == "graph input"
    assert _group(chain, "conv_2").frozen_reason == "reaches graph output"
    for name in ("conv_0", "conv_1"):
        grp = _group(chain, name)
        assert grp.frozen_reason == "" and list(grp.prunable) == list(range(grp.width))
    assert [grp.name for grp in chain.prunable_groups()] == ["conv_0", "conv_1"]
    assert chain.summary() == {"groups": 3, "prunable_groups": 2, "channels": 48,
                               "prunable_channels": 40, "prunable_share": 40 / 48}


def test_shapes_and_traced_values(chain):
    assert chain.shape("conv_1") == (1, 24, 16, 16)
    assert chain.shape("conv_1.weight") == (24, 16, 3, 3)  # initializers by their array
    assert chain.const("relu_0") is None and chain.const("") is None
    assert chain.ch("") is None and chain.ch("conv_1.weight") is None


def test_removal_and_keep_order():
    """Removal: prunable channels by ascending importance; keeping w channels keeps the
    frozen ones first, then the most important."""
    grp = Group(0, "g", [], np.arange(4), ["", "reason", "", ""],
                importance=np.array([3.0, 9.0, 1.0, 2.0]))
    assert list(grp.prunable) == [0, 2, 3] and grp.frozen_reason == "reason"
    assert list(grp.removal_order()) == [2, 3, 0]
    assert list(grp.keep_order()) == [1, 0, 3, 2]
    grp.order = np.array([0, 3, 2])  # a data-aware selection overrides the importance
    assert list(grp.removal_order()) == [0, 3, 2]


def test_a_model_without_nodes_is_refused():
    model = tiny.conv_chain()
    del model.graph.node[:]
    with pytest.raises(OnnxPruneError, match="no nodes"):
        build_graph(model)


def test_matches():
    assert matches("conv_1", [r"^conv_\d$"]) and not matches("conv_1", ["bn", "^1"])
