"""Concat on the channel axis is an offset map: branches stay separate groups."""

import numpy as np
import tiny
from prunecheck import group_of, prove


def test_concat_offsets_and_separate_groups():
    prep = prove(tiny.concat())
    a, b = group_of(prep, "conv_0"), group_of(prep, "conv_1")
    assert a.id != b.id and (a.width, b.width) == (8, 12)
    labels = prep.graph.channels[prep.model.graph.node[4].output[0]].labels
    roots = prep.graph.roots(labels)
    assert list(roots[:8]) == list(a.classes) and list(roots[8:]) == list(b.classes)


def test_self_concat_repeats_the_same_channels():
    prep = prove(tiny.concat())
    c = group_of(prep, "conv_3")
    out = prep.graph.channels["concat_1" if "concat_1" in prep.graph.channels else
                              prep.model.graph.node[8].output[0]]
    roots = prep.graph.roots(out.labels)
    half = len(roots) // 2
    assert np.array_equal(roots[:half], roots[half:]) and set(roots) == set(c.classes)
