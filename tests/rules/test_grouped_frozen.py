"""Grouped (non-depthwise) convs and control flow freeze the channels they touch."""

import tiny
from prunecheck import group_of, prove


def test_grouped_conv_freezes():
    prep = prove(tiny.grouped(), min_removed=0)
    assert "grouped Conv" in group_of(prep, "conv_0").frozen_reason


def test_control_flow_freezes_outer_scope_tensors():
    prep = prove(tiny.control_flow())
    assert "control-flow" in group_of(prep, "conv_0").frozen_reason
    assert len(group_of(prep, "conv_2").prunable) > 0
