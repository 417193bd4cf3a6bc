"""Residual Add couples both producers into one group; the downsample shortcut too."""

import tiny
from prunecheck import group_of, prove


def test_residual_couples_block_and_stem():
    prep = prove(tiny.residual())
    stem = group_of(prep, "conv_0")
    assert {s.node for s in stem.sources} >= {"conv_0", "conv_2"}
    down = group_of(prep, "conv_4")
    assert {s.node for s in down.sources} == {"conv_4", "conv_5"}
    inner = group_of(prep, "conv_1")
    assert [s.node for s in inner.sources] == ["conv_1"]
