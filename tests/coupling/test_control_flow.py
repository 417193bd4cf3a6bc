"""Control flow (If/Loop) is left untouched: tensors its subgraphs read are frozen."""

import tiny
from prunecheck import group_of, prove


def test_control_flow_freezes_outer_scope_tensors():
    prep = prove(tiny.control_flow())
    assert "control-flow" in group_of(prep, "conv_0").frozen_reason
    assert len(group_of(prep, "conv_2").prunable) > 0
