"""Conv (group=1) with bias and BN: producer rows, BN parameters and consumer slices follow."""

import tiny
from prunecheck import group_of, prove


def test_conv_chain_groups_and_proof():
    prep = prove(tiny.conv_chain())
    g0 = group_of(prep, "conv_0")
    assert g0.width == 16 and len(g0.prunable) == 16
    params = {(p.node, p.role) for p in g0.members}
    assert ("conv_0", "out") in params and ("bn_0", "channelwise") in params
    assert ("conv_1", "in") in params
    assert group_of(prep, "conv_2").frozen_reason == "reaches graph output"


def test_importance_ranks_a_dead_filter_last():
    model = tiny.conv_chain()
    w = next(i for i in model.graph.initializer if i.name == "conv_1.weight")
    import numpy as np
    from onnx import numpy_helper
    arr = numpy_helper.to_array(w).copy()
    arr[5] = 0.0
    w.CopyFrom(numpy_helper.from_array(arr, w.name))
    prep = prove(model)
    g1 = group_of(prep, "conv_1")
    assert int(np.argmin(g1.importance)) == 5
