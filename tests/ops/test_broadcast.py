"""Per-channel constants (bias Add, PRelu slope, Mul), InstanceNorm, Pad, pools, SiLU, Dropout."""

import tiny
from prunecheck import group_of, prove


def test_per_channel_chain():
    prep = prove(tiny.misc_ops())
    g = group_of(prep, "conv_0")
    nodes = {p.node for p in g.members}
    assert {"add_0", "prelu_0", "instancenormalization_0", "mul_1", "conv_1"} <= nodes
