"""Search: the knapsack against brute force, the hardware loop's convergence, clear failures."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import tiny

from onnxprune import runtimes
from onnxprune.search import Choice, evolve, hilp, knapsack, total_value


def _random_choices(rng, groups, options):
    out = []
    for gid in range(groups):
        widths = sorted(rng.choice(np.arange(1, 64), size=options, replace=False).tolist())
        cost = np.cumsum(rng.uniform(0.1, 1.0, options)).tolist()
        value = np.cumsum(rng.uniform(0.0, 1.0, options)).tolist()
        out.append(Choice(gid, widths, cost, value))
    return out


@pytest.mark.parametrize("seed", range(25))
def test_knapsack_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    choices = _random_choices(rng, groups=4, options=4)
    budget = float(rng.uniform(0.3, 1.0)) * sum(c.cost[-1] for c in choices)
    best = -1.0
    for combo in itertools.product(*[range(len(c.widths)) for c in choices]):
        cost = sum(c.cost[k] for c, k in zip(choices, combo))
        if cost <= budget:
            best = max(best, sum(c.value[k] for c, k in zip(choices, combo)))
    picks = knapsack(choices, budget, bins=20000)
    if best < 0:
        assert picks is None
        return
    assert sum(c.cost[k] for c, k in zip(choices, picks)) <= budget + 1e-9
    got = sum(c.value[k] for c, k in zip(choices, picks))
    assert got == pytest.approx(best, rel=1e-3, abs=1e-3)


def test_knapsack_infeasible_budget():
    assert knapsack([Choice(0, [1, 2], [1.0, 2.0], [1.0, 2.0])], 0.5) is None


def test_knapsack_ties_keep_the_least_cut():
    """Cuts that cost nothing (equal values) are made only as far as the budget needs."""
    choices = [Choice(g, [8, 16, 32], [1.0, 2.0, 4.0], [0.0, 0.0, 0.0]) for g in range(3)]
    assert knapsack(choices, 12.5) == [2, 2, 2]
    picks = knapsack(choices, 10.0)
    assert sum(c.cost[k] for c, k in zip(choices, picks)) == pytest.approx(10.0)


def _synthetic(choices, base, scale, noise, seed=0):
    """A 'runtime' whose true latency is a scaled version of the isolated costs, with noise."""
    rng = np.random.default_rng(seed)
    calls = []

    def measure(widths):
        saved = sum(c.cost[-1] - c.cost[c.widths.index(widths[c.group])] for c in choices)
        calls.append(widths)
        return (base - scale * saved) * (1 + rng.normal(0, noise))
    return measure, calls


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_hardware_loop_converges_despite_a_wrong_cost_model(scale):
    rng = np.random.default_rng(1)
    choices = _random_choices(rng, groups=12, options=6)
    full = sum(c.cost[-1] for c in choices)
    base = 2.0 * scale * full
    measure, calls = _synthetic(choices, base, scale, noise=0.004)
    target = base / 1.25
    result = hilp(choices, base, target, measure)
    assert 0.93 * target <= result.measured_ms <= target
    assert result.steps[-1].accepted and len(calls) <= 12


def test_hardware_loop_lands_in_the_window_when_every_cut_is_free():
    """All-zero values (a model whose channels are interchangeable): the loop still moves
    towards the target instead of re-measuring the all-floor widths."""
    rng = np.random.default_rng(4)
    choices = [Choice(c.group, c.widths, c.cost, [0.0] * len(c.value))
               for c in _random_choices(rng, groups=12, options=6)]
    base = 2.0 * sum(c.cost[-1] for c in choices)
    measure, _ = _synthetic(choices, base, 1.0, noise=0.0)
    target = base / 1.3
    result = hilp(choices, base, target, measure)
    assert result.steps[-1].accepted
    assert target / 1.04 <= result.measured_ms <= target / 1.01


def test_target_below_floor_names_the_floor():
    choices = _random_choices(np.random.default_rng(2), groups=3, options=3)
    measure, _ = _synthetic(choices, 100.0, 1.0, noise=0.0)
    with pytest.raises(ValueError) as info:
        hilp(choices, 100.0, 1.0, measure)
    assert float(str(info.value)) > 1.0


def test_evolve_never_returns_an_infeasible_or_worse_solution():
    rng = np.random.default_rng(3)
    choices = _random_choices(rng, groups=8, options=5)
    base = 3.0 * sum(c.cost[-1] for c in choices)
    measure, _ = _synthetic(choices, base, 1.0, noise=0.0)
    target = base / 1.2
    start = hilp(choices, base, target, measure)
    widths, ms, _ = evolve(choices, start.widths, start.measured_ms, target, measure)
    assert ms <= target
    assert total_value(choices, widths) >= total_value(choices, start.widths)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "onnxprune", *args], capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_unreachable_target_fails_clearly_and_writes_nothing(tmp_path):
    path, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(tiny.residual(), path)
    proc = _cli(str(path), "--target-ms", "0.000001", "-o", str(out), "--cache", str(tmp_path / "c.json"),
                "--quiet")  # refused after profiling: without --quiet, progress lines come first
    assert proc.returncode == 2, proc.stderr
    assert "below the reachable floor" in proc.stderr and "measured" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()


def test_target_already_met_writes_unchanged_copy(tmp_path):
    path, out, report = tmp_path / "m.onnx", tmp_path / "out.onnx", tmp_path / "r.json"
    onnx.save(tiny.residual(), path)
    proc = _cli(str(path), "--target-ms", "10000", "-o", str(out), "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert "already meets" in proc.stdout
    assert onnx.load(out).graph == onnx.load(path).graph
    assert json.loads(report.read_text())["already_met"] is True


def test_two_modes_at_once_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.residual(), path)
    proc = _cli(str(path), "--ratio", "0.2", "--speedup", "1.5", "-o", str(tmp_path / "o.onnx"))
    assert proc.returncode == 2 and "exactly one of" in proc.stderr


def test_real_loop_on_a_small_model(tmp_path):
    """End to end on ORT CPU: the staircase conv model reaches a 1.5x target (coarse check)."""
    from onnxprune.job import Job
    from onnxprune.pipeline import prune_to_target
    from onnxprune.preparation import prepare

    prep = prepare(tiny.single_conv(cin=64, cout=128, hw=28))
    tr = prune_to_target(prep, runtimes.RuntimeConfig(), Job.of(prep.original, speedup=1.5,
                                                               cache_path=str(tmp_path / "c.json"),
                                                               progress=False))
    widths = list(tr.widths.values())
    assert tr.final.speedup > 1.3
    assert all(w % 8 == 0 for w in widths), widths  # step edges, not arbitrary widths
    assert tr.loop.steps[0].measured_ms < tr.baseline_ms


def test_exclude_freezes_matching_layers():
    """A layer left alone keeps both its input and its output channels."""
    from onnxprune.preparation import prepare
    from onnxprune.rewrite import apply_plan, ratio_plan

    prep = prepare(tiny.conv_chain(), exclude=["^conv_2$"])
    frozen = next(g for g in prep.graph.groups if g.name == "conv_1")  # conv_2 reads it
    assert len(frozen.prunable) == 0 and "excluded" in frozen.frozen_reason
    pruned = apply_plan(prep.graph, ratio_plan(prep.graph, 0.5))
    dims = {i.name: tuple(i.dims) for i in pruned.graph.initializer}
    assert dims["conv_2.weight"][1] == 24 and dims["conv_1.weight"][0] == 24
    assert dims["conv_0.weight"][0] == 8  # the other group is still pruned
