"""Slice on the channel axis rewrites its bounds; Squeeze/Unsqueeze move the axis."""

import numpy as np
import tiny
from onnx import numpy_helper
from prunecheck import group_of, prove

from onnxprune.rewrite import PrunePlan, apply_plan


def test_slice_bounds_follow_kept_channels():
    prep = prove(tiny.slice_ops())
    g = group_of(prep, "conv_0")
    keep = np.array([i for i in range(16) if i not in (1, 5, 6, 13)])
    pruned = apply_plan(prep.graph, PrunePlan({g.id: keep}))
    node = next(n for n in pruned.graph.node if n.name == "slice_0")
    init = {i.name: numpy_helper.to_array(i) for i in pruned.graph.initializer}
    assert int(init[node.input[1]][0]) == 3 and int(init[node.input[2]][0]) == 9
