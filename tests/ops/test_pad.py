"""Pad: padding only spatial axes carries the channels (pads as an input, or restricted by
``axes`` from opset 18); padding the channel axis freezes."""

import numpy as np
from opmodels import sandwich
from prunecheck import group_of, prove


def test_spatial_pad_carries_channels():
    prep = prove(sandwich("Pad", {"mode": "reflect"}, consts=[np.array([0, 0, 1, 1, 0, 0, 1, 1])]))
    assert len(group_of(prep, "c1").prunable) == 12


def test_pad_restricted_by_axes_carries_channels():
    pads, axes = np.array([2, 0, 2, 1]), np.array([2, 3])
    prep = prove(sandwich("Pad", consts=[pads, np.array(0.5, np.float32), axes], opset=18))
    assert len(group_of(prep, "c1").prunable) == 12


def test_pad_on_the_channel_axis_freezes():
    prep = prove(sandwich("Pad", consts=[np.array([0, 1, 0, 0, 0, 1, 0, 0])], c2_in=14),
                 min_removed=0)
    assert "Pad on the channel axis" in group_of(prep, "c1").frozen_reason
