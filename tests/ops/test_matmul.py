"""Transformer FFN: MatMul hidden units are prunable, the residual stream reaches the output."""

import tiny
from prunecheck import group_of, prove


def test_ffn_hidden_units():
    prep = prove(tiny.mlp())
    hidden = group_of(prep, "linear_0")
    assert hidden.width == 64 and len(hidden.prunable) == 64
    assert {(p.node, p.role) for p in hidden.members} >= {("linear_0", "out"), ("linear_1", "in"), ("add_0", "channelwise")}
