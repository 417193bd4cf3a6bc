"""Never fail whole: a plan whose proof fails is bisected into proven groups and the groups that
break it, which are left unpruned with a reason (``verify.prove``, ``pipeline.finish``)."""

import numpy as np
import onnx
import pytest
import tiny

from onnxprune import OnnxPruneError, ops, prune, verify
from onnxprune.ops.concat import Concat
from onnxprune.ops.conv import Conv
from onnxprune.pipeline import finish
from onnxprune.preparation import prepare
from onnxprune.rewrite import PrunePlan, ratio_plan


def _reversed_concat(self, g, node):
    """A deliberately wrong index map: Concat's output labels in reverse order."""
    parts = [g.ch(n).labels for n in node.input]
    g.set_channels(node.output[0], 1, np.concatenate(parts)[::-1], node.input[0])


def _concat_groups(prep):
    return {grp.id for grp in prep.graph.groups
            if any(s.node in ("conv_0", "deconv_0") for s in grp.sources)}


def test_wrong_index_map_is_found_and_frozen(monkeypatch):
    monkeypatch.setattr(Concat, "rule", _reversed_concat)
    prep = prepare(tiny.convtranspose())
    plan = ratio_plan(prep.graph, 0.3)
    assert verify.check_plan(prep.graph, plan, prep.feeds).why.startswith("pruned outputs differ")
    good, failures = verify.prove(prep.graph, plan, prep.feeds)
    bad = {gid for gid, _ in failures}
    assert bad and bad <= _concat_groups(prep)
    assert all(why.startswith("index map not proven for ") and "Concat" in why for _, why in failures)
    assert set(good.keep) == set(plan.removed(prep.graph)) - bad and good.keep
    assert verify.check_plan(prep.graph, good, prep.feeds).why == ""


def test_finish_continues_with_the_proven_groups(monkeypatch):
    monkeypatch.setattr(Concat, "rule", _reversed_concat)
    prep = prepare(tiny.convtranspose())
    result = finish(prep, ratio_plan(prep.graph, 0.3))
    assert result.frozen and {gid for gid, _ in result.frozen} <= _concat_groups(prep)
    assert result.channels_removed > 0 and result.zero_filter_error < 1e-5
    assert result.params_after < result.params_before
    onnx.checker.check_model(result.model, full_check=True)
    assert result.to_dict()["frozen_groups"][0]["reason"].startswith("index map not proven")
    again = finish(prep, ratio_plan(prep.graph, 0.3))  # remembered: no second bisection
    assert again.frozen == result.frozen


def test_a_rewrite_onnxruntime_rejects_is_frozen(monkeypatch):
    """An edit that writes an invalid attribute when channels go: only its group is frozen."""
    original = Conv.rule

    def bad_group(self, g, node):
        original(self, g, node)
        if node.name == "conv_1":
            g.edit(lambda r: None if r.mask(r.node.input[0]).all() else r.set_attr("group", 5))
    monkeypatch.setattr(Conv, "rule", bad_group)
    out = prune(tiny.conv_chain(), ratio=0.3)
    frozen = out.report["frozen_groups"]
    assert len(frozen) == 1 and "Conv" in frozen[0]["reason"]
    assert out.report["params_after"] < out.report["params_before"]


def test_prove_refuses_a_model_that_never_checks(monkeypatch):
    prep = prepare(tiny.conv_chain())
    monkeypatch.setattr(verify, "check_structure", lambda model: (_ for _ in ()).throw(
        OnnxPruneError("internal: pruned model fails onnx.checker: broken")))
    with pytest.raises(OnnxPruneError, match="broken"):
        verify.prove(prep.graph, ratio_plan(prep.graph, 0.3), prep.feeds)


def test_an_empty_plan_proves():
    prep = prepare(tiny.conv_chain())
    assert verify.prove(prep.graph, PrunePlan(), prep.feeds) == (PrunePlan(), [])
    assert ops.REGISTRY.lookup("Concat", 13) is not None
