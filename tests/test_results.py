"""The typed results of a run and their ``to_dict()`` (the ``--report`` JSON): every field
lands under its documented key, and the dict survives a JSON round trip unchanged."""

import json

import numpy as np
import pytest
import tiny

from onnxprune import prune
from onnxprune.bench import Comparison, Timing
from onnxprune.preparation import prepare
from onnxprune.results import PruneResult, Quality, TargetResult
from onnxprune.search import SearchResult, Step
from onnxprune.sensitivity import Table


def _round_trip(d: dict) -> dict:
    return json.loads(json.dumps(d))


@pytest.fixture(scope="module")
def outcome():
    calib = {"x": np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)}
    return prune(tiny.conv_chain(), ratio=0.3, calib=calib)


def test_prune_result_fields_and_keys(outcome):
    r = outcome.result
    assert isinstance(r, PruneResult) and r.model is outcome.model
    d = r.to_dict()
    assert (d["params_before"], d["params_after"], d["macs_before"], d["macs_after"]) == (
        r.params_before, r.params_after, r.flops_before, r.flops_after)
    assert r.params_after < r.params_before and r.flops_after < r.flops_before
    assert d["channels_removed"] == r.channels_removed > 0
    assert d["zero_filter_error"] == r.zero_filter_error < 1e-5
    assert d["frozen_groups"] == [{"group": gid, "reason": why} for gid, why in r.frozen]
    assert _round_trip(d) == d


def test_quality_reports_fidelity_and_recovery(outcome):
    q = outcome.result.quality
    d = q.to_dict()
    assert d["fidelity"]["drop"] == q.drop and d["fidelity"]["data"] == "held-out"
    assert d["fidelity"]["samples"] == q.fidelity.samples > 0
    assert d["recovery"]["steps"][0]["step"] == "none"
    assert d["recovery"]["layers"] == q.recovery.layers
    assert set(d["recovery"]) == {"steps", "layers", "skipped"}
    assert _round_trip(d) == d
    assert Quality().to_dict() == {"precision": "fp32"}  # what the written model computes in


def test_outcome_report_holds_the_result(outcome):
    assert outcome.to_dict() is outcome.report
    d = outcome.result.to_dict()
    assert {k: outcome.report[k] for k in d} == d


def test_target_result_without_a_model():
    t = TargetResult(result=None, baseline_ms=10.0, target_ms=4.0, final=None, loop=None,
                     already_met=True, warnings=["w"])
    assert t.target_speedup == 2.5 and t.after_ms is None
    assert t.to_dict(None) == {"baseline_ms": 10.0, "target_ms": 4.0, "target_speedup": 2.5,
                               "already_met": True, "profile_seconds": 0.0, "warnings": ["w"],
                                 "quantizer": []}


def test_target_result_reports_groups_loop_and_table(outcome):
    prep = prepare(tiny.conv_chain())
    g = prep.graph
    gid = next(grp.id for grp in g.groups if grp.name == "conv_1")
    final = Comparison(Timing.of([10.0, 11.0]), Timing.of([5.0, 5.5]), 2.0, 1.9, 2.1, 8)
    loop = SearchResult({gid: 12}, [Step(0.5, 5.2, 5.0, 0.8, True)], 5.0, False)
    table = Table({gid: {12: 0.25, 24: 0.0}}, samples=16)
    t = TargetResult(outcome.result, baseline_ms=10.0, target_ms=5.0, final=final, loop=loop,
                     widths={gid: 12}, table=table, speedup=2.0, points=[{"ms": 5.0}])
    d = t.to_dict(g)
    assert t.after_ms == 5.0
    assert d["final"]["speedup"] == 2.0 and d["final"]["ms"] == 5.0
    assert d["final"]["independent_speedup"] == 2.0 and d["final"]["rounds"] == 8
    assert d["final"]["params_after"] == outcome.result.params_after
    [group] = d["groups"]
    assert (group["group"], group["name"], group["width_before"], group["width_after"]) == (
        gid, "conv_1", 24, 12)
    assert 0.0 < group["importance_kept"] < 1.0 and group["distortion"] == 0.25
    assert d["loop"] == [{"savings_asked": 0.5, "predicted_ms": 5.2, "measured_ms": 5.0,
                          "speedup": 2.0, "importance": 0.8, "accepted": True}]
    assert d["quality"] == outcome.result.to_dict() and d["tradeoff"] == [{"ms": 5.0}]
    assert d["sensitivity"]["values"] == {str(gid): {"12": 0.25, "24": 0.0}}
    assert d["sensitivity"]["synthetic"] is False and d["evolve"] == []
    assert _round_trip(d) == d
