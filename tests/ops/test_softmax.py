"""Ops normalising along ``axis`` (Softmax family, LayerNormalization, LpNormalization): the
channels pass unless they are normalised over; Softmax before opset 13 normalises from
``axis`` to the last axis."""

import numpy as np
import pytest
from opmodels import sandwich
from prunecheck import group_of, prove

CARRY = [("Softmax", {"axis": -1}, 13), ("LogSoftmax", {"axis": 2}, 13),
         ("Hardmax", {"axis": 3}, 11), ("LayerNormalization", {"axis": -1}, 17),
         ("LpNormalization", {"axis": 2}, 17)]
FREEZE = [("Softmax", {"axis": 1}, 13), ("Softmax", {}, 11), ("LogSoftmax", {"axis": 0}, 11),
          ("LayerNormalization", {"axis": 1}, 17), ("LpNormalization", {"axis": 1}, 17)]


def _model(op: str, attrs: dict, opset: int):
    """LayerNormalization's scale has the normalised axes' shape (of [1, 12, 8, 8])."""
    scale = [np.ones((1, 12, 8, 8)[attrs["axis"]:], np.float32)] if op == "LayerNormalization" else []
    return sandwich(op, attrs, opset=opset, consts=scale)


@pytest.mark.parametrize("op,attrs,opset", CARRY, ids=[f"{o}{a}@{v}" for o, a, v in CARRY])
def test_normalising_other_axes_carries_channels(op, attrs, opset):
    prep = prove(_model(op, attrs, opset))
    assert len(group_of(prep, "c1").prunable) == 12


@pytest.mark.parametrize("op,attrs,opset", FREEZE, ids=[f"{o}{a}@{v}" for o, a, v in FREEZE])
def test_normalising_over_the_channels_freezes(op, attrs, opset):
    prep = prove(_model(op, attrs, opset), min_removed=0)
    assert f"{op} normalises over the channels" in group_of(prep, "c1").frozen_reason
