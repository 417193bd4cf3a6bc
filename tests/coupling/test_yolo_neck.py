"""YOLO-style neck: SPPF (chained MaxPool + Concat), Resize + Concat, Split into two halves."""

import tiny
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan


def test_yolo_neck():
    prep = prove(tiny.yolo_neck())
    assert len(prep.graph.prunable_groups()) >= 10
    for head in ("conv_14", "conv_15"):
        assert group_of(prep, head).frozen_reason == "reaches graph output"
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.4))
    split = next(n for n in pruned.graph.node if n.op_type == "Split")
    from onnx import numpy_helper
    sizes = numpy_helper.to_array(next(i for i in pruned.graph.initializer if i.name == split.input[1]))
    assert sizes.sum() < 32
