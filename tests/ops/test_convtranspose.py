"""ConvTranspose: W axis 0 consumes input channels, axis 1 produces output channels."""

import tiny
from prunecheck import group_of, prove


def test_convtranspose_both_sides():
    prep = prove(tiny.convtranspose())
    up = group_of(prep, "deconv_0")
    assert len(up.prunable) == up.width
    assert any(p.node == "deconv_0" and p.role == "in" and p.axis == 0
               for g in prep.graph.groups for p in g.members)
