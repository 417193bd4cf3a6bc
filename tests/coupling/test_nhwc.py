"""Transposes move the channel axis: NHWC per-channel constants on the last axis are sliced."""

import tiny
from prunecheck import group_of, prove


def test_nhwc_transposes():
    prep = prove(tiny.nhwc())
    g = group_of(prep, "conv_0")
    assert len(g.prunable) == g.width
    assert any(p.node == "add_0" and p.axis == 0 for p in g.members)
