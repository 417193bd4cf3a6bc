"""BatchNormalization and InstanceNormalization: per-channel statistics follow the channels
(every parameter's axis 0 is ``channelwise``) and shrink with them."""

import numpy as np
import pytest
from opmodels import initializer, sandwich
from prunecheck import group_of, prove

from onnxprune.rewrite import apply_plan, ratio_plan

RNG = np.random.default_rng(3)
GAMMA, BETA = RNG.uniform(0.5, 1.5, 12).astype(np.float32), RNG.standard_normal(12).astype(np.float32)
MEAN, VAR = RNG.standard_normal(12).astype(np.float32) * 0.1, RNG.uniform(0.5, 1.5, 12).astype(np.float32)


@pytest.mark.parametrize("op,consts", [("BatchNormalization", [GAMMA, BETA, MEAN, VAR]),
                                       ("InstanceNormalization", [GAMMA, BETA])])
def test_parameters_follow_the_kept_channels(op, consts):
    prep = prove(sandwich(op, consts=consts), ratio=0.5)
    group = group_of(prep, "c1")
    assert len(group.prunable) == 12
    params = {f"op_in{k + 1}" for k in range(len(consts))}
    assert {(m.param, m.role) for m in group.members if m.node == "op"} == {
        (p, "channelwise") for p in params}
    plan = ratio_plan(prep.graph, 0.5)
    pruned = apply_plan(prep.graph, plan)
    kept = plan.keep[group.id]
    for k, value in enumerate(consts, start=1):
        np.testing.assert_array_equal(initializer(pruned, "op", k), value[kept])
