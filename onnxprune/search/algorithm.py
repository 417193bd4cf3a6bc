"""The search algorithm: per-group widths that keep the most importance under a measured latency target.

* Candidate widths per group are the right edges of its measured latency steps (LACP), at or
  above the floor (default: a quarter of the group).
* The widths of all groups are chosen together by a multiple-choice knapsack (HALP): maximise
  the kept importance subject to the predicted latency. A group's cost at width ``w`` is the
  measured latency of every layer it touches (producers over their outputs, consumers over their
  inputs), so one group changing both sides of a layer is accounted for.
* Hardware in the loop (HILP): each chosen model is built and measured end to end (interleaved
  against the original: a speedup ratio). The isolated-layer predictions are corrected with
  those measurements: the knapsack's savings requirement is moved by secant steps on measured
  latency until the measured speedup lands in :data:`BAND` x the target speedup.
* ``evolve`` (LACP-style) then mutates widths along step edges, keeping measured-feasible
  candidates that keep more importance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..graph import ChannelGraph, Group
from ..profile import GroupProfile
from ..rewrite import PrunePlan


@dataclass
class Choice:
    """One group's options: candidate widths (ascending), predicted cost and value of each.
    A ``group`` below 0 is a precision item (:func:`item_key`), not a channel group: its
    options are :data:`INT8` and :data:`FLOAT` (:mod:`onnxprune.mixed`)."""

    group: int
    widths: list[int]
    cost: list[float]
    value: list[float]


INT8, FLOAT = 0, 1  # a precision item's options: the node quantized, or kept float


def item_key(k: int) -> int:
    """The widths-dict key of precision item ``k`` (an index into the run's item names)."""
    return -1 - k


def float_nodes(items: Sequence[Sequence[str]], widths: Mapping[int, int]) -> tuple[str, ...]:
    """The node names that ``widths`` keeps in float (``items[k]``: item ``k``'s nodes), each
    once, in item order."""
    kept = [items[-1 - key] for key, option in sorted(widths.items(), reverse=True)
            if key < 0 and option == FLOAT]
    return tuple(dict.fromkeys(n for nodes in kept for n in nodes))


def knapsack(choices: list[Choice], budget: float, bins: int = 4000) -> list[int] | None:
    """Pick one option per group maximising total value with total cost <= budget.

    Costs are discretised into ``bins`` steps of ``budget / bins`` (rounded up, so a returned
    solution never exceeds the budget). Among solutions of equal value (to 1e-9 relative) the
    costliest wins: a cut that loses nothing is still not made unless the budget needs it.
    Returns the chosen option index per group, or None when
    even the cheapest options exceed the budget."""
    if budget < 0:
        return None
    res = budget / bins if budget > 0 else 1.0
    neg = -np.inf
    dp = np.full(bins + 1, neg)
    dp[0] = 0.0
    back = []
    for ch in choices:
        new = np.full(bins + 1, neg)
        arg = np.full(bins + 1, -1, dtype=np.int64)
        for k, (c, v) in enumerate(zip(ch.cost, ch.value)):
            step = math.ceil(c / res - 1e-9) if budget > 0 else (0 if c <= 0 else bins + 1)
            if step > bins:
                continue
            shifted = np.full(bins + 1, neg)
            shifted[step:] = dp[:bins + 1 - step] + v
            better = shifted > new
            new[better] = shifted[better]
            arg[better] = k
        dp = new
        back.append(arg)
    if not np.isfinite(dp).any():
        return None
    top = float(np.max(dp))  # ties (equal value, e.g. cuts that cost nothing): the least cut
    b = int(np.flatnonzero(dp >= top - 1e-9 * max(1.0, abs(top)))[-1])
    picks = []
    for ch, arg in zip(reversed(choices), reversed(back)):
        k = int(arg[b])
        picks.append(k)
        c = ch.cost[k]
        b -= math.ceil(c / res - 1e-9) if budget > 0 else 0
    return list(reversed(picks))


def kept_importance(group: Group, width: int) -> float:
    return float(kept_curve(group)[width])


def kept_curve(group: Group) -> np.ndarray:
    """``kept_curve(group)[w]``: importance kept at width ``w`` (``[0] = 0``)."""
    return np.concatenate([[0.0], np.cumsum(group.importance[group.keep_order()])])


def plan_for(g: ChannelGraph, widths: dict[int, int]) -> PrunePlan:
    """Keep the ``widths[gid]`` most important channels (frozen ones first) of each group
    (precision items, keys below 0, are not channels: left out)."""
    plan = PrunePlan()
    for gid, w in widths.items():
        if gid < 0:
            continue
        group = g.groups[gid]
        if w < group.width:
            plan.keep[gid] = np.sort(group.keep_order()[:w])
    return plan


def floor_width(group: Group, floor: float) -> int:
    return max(1, math.ceil(floor * group.width), group.width - len(group.prunable))


def latency_choices(g: ChannelGraph, profiles: list[GroupProfile], floor: float) -> list[Choice]:
    """Step-edge candidates at or above the floor, costed by the group's measured curve."""
    out = []
    for prof in profiles:
        group = g.groups[prof.group]
        low = floor_width(group, floor)
        widths = sorted({w for w in prof.candidates if w >= low} | {group.width})
        if len(widths) < 2:
            continue
        kept = kept_curve(group)
        out.append(Choice(group.id, widths, [prof.curve[w] for w in widths],
                          [float(kept[w]) for w in widths]))
    return out


def with_values(choices: list[Choice], table: dict[int, dict[int, float]]) -> list[Choice]:
    """The same options valued by measured distortion: value = -distortion (0 at full width),
    so the knapsack keeps the least summed distortion under the latency budget. Options the
    table lacks are dropped."""
    out = []
    for ch in choices:
        row = table.get(ch.group, {})
        keep = [k for k, w in enumerate(ch.widths) if w in row]
        if len(keep) >= 2:
            out.append(Choice(ch.group, [ch.widths[k] for k in keep], [ch.cost[k] for k in keep],
                              [-row[ch.widths[k]] for k in keep]))
    return out


def flops_choices(g: ChannelGraph, flops_per_channel: dict[int, float], floor: float) -> list[Choice]:
    """Every width at or above the floor, costed by FLOPs (the FLOPs-proportional baseline)."""
    out = []
    for gid, per in flops_per_channel.items():
        group = g.groups[gid]
        widths = list(range(floor_width(group, floor), group.width + 1))
        if len(widths) < 2:
            continue
        kept = kept_curve(group)
        out.append(Choice(gid, widths, [per * w for w in widths], [float(kept[w]) for w in widths]))
    return out


def solve(choices: list[Choice], savings: float) -> dict[int, int] | None:
    """Widths whose predicted cost is at least ``savings`` below the full-width cost."""
    full = sum(ch.cost[-1] for ch in choices)
    picks = knapsack(choices, full - savings)
    if picks is None:
        return None
    return {ch.group: ch.widths[k] for ch, k in zip(choices, picks)}


def predicted_savings(choices: list[Choice], widths: dict[int, int]) -> float:
    return sum(ch.cost[-1] - ch.cost[ch.widths.index(widths[ch.group])] for ch in choices)


def total_value(choices: list[Choice], widths: dict[int, int]) -> float:
    return sum(ch.value[ch.widths.index(widths[ch.group])] for ch in choices)


@dataclass
class Step:
    """One hardware-in-the-loop iteration: the savings asked of the knapsack, the latency the
    isolated-layer costs predict for its widths (baseline - predicted savings), the measured
    latency (baseline / interleaved speedup) and the kept value."""

    savings_asked: float
    predicted_ms: float
    measured_ms: float
    importance: float
    accepted: bool
    widths: dict[int, int] = field(default_factory=dict)


@dataclass
class SearchResult:
    """The loop's outcome: chosen widths, every step, and the steps of an ``evolve``
    refinement (when asked for)."""

    widths: dict[int, int]
    steps: list[Step]
    measured_ms: float
    at_floor: bool
    evolved: list[Step] = field(default_factory=list)


BAND = (1.0, 1.05)  # the delivered speedup, in units of the target speedup
WINDOW = (1.01, 1.04)  # where the loop accepts a confirmed measurement: the band less the noise


def hilp(choices: list[Choice], baseline_ms: float, target_ms: float,
         measure: Callable[[dict[int, int]], float], window: tuple[float, float] = WINDOW,
         max_steps: int = 12) -> SearchResult:
    """Hardware-in-the-loop search for widths whose measured speedup over the baseline is in
    :data:`BAND` x the target speedup (``baseline_ms / target_ms``). ``measure(widths) -> ms``
    builds and times a candidate (``baseline_ms`` / interleaved ratio; repeated calls for the
    same widths may pool more rounds). A step is accepted when its speedup is in ``window`` x
    the target speedup, confirmed by a second measurement, so the final figure of the same
    model (noise of 1-3%) stays in the band.

    The isolated-layer cost model only ranks options; how much predicted saving is needed is
    found on the real runtime: secant steps on (predicted savings asked, measured latency),
    bracketed by the baseline (0 savings) and the all-floor model. Without a confirmed step,
    the most faithful (highest value) candidate that meets the target wins, a faster one only
    when it is also more faithful. Raises ValueError naming the measured floor latency when the
    target is below it."""
    floor = _floor_step(choices, target_ms, measure)
    steps = [floor]
    best = _secant_search(choices, baseline_ms, target_ms, measure, window, max_steps, steps)
    if best is None:
        best = most_faithful([s for s in steps if s.measured_ms <= target_ms])
    return SearchResult(best.widths, steps, best.measured_ms, best is steps[0])


def _floor_step(choices: list[Choice], target_ms: float,
                measure: Callable[[dict[int, int]], float]) -> Step:
    """The all-floor step (every group at its narrowest width, all the predicted savings
    asked, no prediction): measured once; accepted when it meets ``target_ms``. Raises
    ValueError naming the measured floor latency (``f"{ms:.3f}"``) when it does not."""
    floor_widths = {ch.group: ch.widths[0] for ch in choices}
    max_savings = predicted_savings(choices, floor_widths)
    floor_ms = measure(floor_widths)
    step = Step(max_savings, float("nan"), floor_ms,
                total_value(choices, floor_widths), floor_ms <= target_ms, floor_widths)
    if floor_ms > target_ms:
        raise ValueError(f"{floor_ms:.3f}")
    return step


def _secant_search(choices: list[Choice], baseline_ms: float, target_ms: float,
                   measure: Callable[[dict[int, int]], float], window: tuple[float, float],
                   max_steps: int, steps: list[Step]) -> Step | None:
    """At most ``max_steps`` secant steps on (savings asked, measured ms) towards the middle of
    ``window`` x the target speedup, bracketed by the baseline (0 savings) and ``steps[0]``
    (the all-floor step); every step is appended to ``steps``. Returns the first step whose
    confirmed measurement is in the window, or None when the knapsack finds no widths, the
    bracket closes (below 1e-6 of the floor's savings) or the steps run out."""
    max_savings, floor_ms = steps[0].savings_asked, steps[0].measured_ms
    lo, hi = (0.0, baseline_ms), (max_savings, floor_ms)  # (savings asked, measured ms)
    low, high = target_ms / window[1], target_ms / window[0]
    goal = target_ms / ((window[0] + window[1]) / 2)
    for _ in range(max_steps):
        ask = _next_ask(lo, hi, goal)
        widths = solve(choices, ask)
        if widths is None:
            return None
        ms, ok = _confirmed(measure, widths, low, high)
        predicted = baseline_ms - predicted_savings(choices, widths)  # the layer model's own guess
        step = Step(ask, predicted, ms, total_value(choices, widths), ok, widths)
        steps.append(step)
        if ok:
            return step
        if ms > goal:  # bracket the goal, not the target: a slow-but-feasible point is "lo"
            lo = (ask, ms)
        else:
            hi = (ask, ms)
        if hi[0] - lo[0] < 1e-6 * max(max_savings, 1e-9):
            return None
    return None


def _next_ask(lo: tuple[float, float], hi: tuple[float, float], goal: float) -> float:
    """The savings to ask next: where the secant through the bracket ends ``lo`` and ``hi``
    (savings asked, measured ms) reaches ``goal`` ms (the bracket's midpoint when the measured
    latency does not fall from ``lo`` to ``hi``), kept 2% of the bracket inside it."""
    if hi[1] >= lo[1]:
        ask = (lo[0] + hi[0]) / 2
    else:
        ask = lo[0] + (hi[0] - lo[0]) * (lo[1] - goal) / (lo[1] - hi[1])
    return min(max(ask, lo[0] + 0.02 * (hi[0] - lo[0])), hi[0] - 0.02 * (hi[0] - lo[0]))


def _confirmed(measure: Callable[[dict[int, int]], float], widths: dict[int, int],
               low: float, high: float) -> tuple[float, bool]:
    """``(ms, ok)``: ``widths`` measured, and whether that is in ``[low, high]``; a measurement
    in the range is repeated (a second, independent one) and the second decides."""
    ms = measure(widths)
    ok = low <= ms <= high
    if ok:  # confirm with a second, independent measurement before accepting
        ms = measure(widths)
        ok = low <= ms <= high
    return ms, ok


def most_faithful(candidates: list[Step]) -> Step:
    """The candidate with the highest value (least predicted distortion, or most importance
    kept); on a tie the slowest (the least cut)."""
    return max(candidates, key=lambda s: (s.importance, s.measured_ms))


def evolve(choices: list[Choice], start: dict[int, int], start_ms: float, target_ms: float,
           measure: Callable[[dict[int, int]], float], generations: int = 4,
           population: int = 24, measured_per_generation: int = 2,
           seed: int = 0) -> tuple[dict[int, int], float, list[Step]]:
    """LACP-style refinement: mutate widths one step edge up or down (several groups at a
    time), rank the mutants by kept importance among those the calibrated cost model predicts
    no slower than the current best, measure the top few, keep a measured-feasible improvement."""
    rng = np.random.default_rng(seed)
    by_group = {ch.group: ch for ch in choices}
    best, best_ms = dict(start), start_ms
    best_value = total_value(choices, best)
    steps: list[Step] = []
    for _ in range(generations):
        budget = predicted_savings(choices, best)
        mutants = []
        for _ in range(population):
            cand = dict(best)
            for gid in rng.choice(list(by_group), size=min(3, len(by_group)), replace=False):
                ch = by_group[int(gid)]
                k = ch.widths.index(cand[int(gid)]) + int(rng.choice([-1, 1]))
                cand[int(gid)] = ch.widths[min(max(k, 0), len(ch.widths) - 1)]
            if predicted_savings(choices, cand) >= budget * 0.98:
                value = total_value(choices, cand)
                if value > best_value:
                    mutants.append((value, cand))
        mutants.sort(key=lambda m: -m[0])
        for value, cand in mutants[:measured_per_generation]:
            ms = measure(cand)
            ok = ms <= target_ms
            steps.append(Step(0.0, 0.0, ms, value, ok, cand))
            if ok and value > best_value:
                best, best_ms, best_value = cand, ms, value
                break
    return best, best_ms, steps


def cannot_help(g: ChannelGraph, profiles: list[GroupProfile], floor: float, baseline_ms: float,
                measure: Callable[[dict[int, int]], float], flat: float = 0.1,
                helps: float = 1.1, choices: list[Choice] = ()) -> str | None:
    """The one-line notice when pruning cannot help on this runtime, else None.

    Decided from measurements: when the groups' measured curves predict that every group at
    its floor saves less than ``flat`` of the baseline (flat staircases: a launch-bound GPU at
    batch 1), the all-floor model is built and measured (interleaved with the original); if it
    is less than ``helps`` times faster than ``baseline_ms`` (the unpruned model in the run's
    precision), the notice gives that measured floor. A group among ``choices`` is at its
    narrowest option there. Runtimes whose curves promise savings (CPUs) pay nothing for the
    check."""
    widths = {p.group: floor_width(g.groups[p.group], floor) for p in profiles if p.curve}
    widths.update({ch.group: ch.widths[0] for ch in choices})
    if not widths:
        return None
    predicted = sum(p.curve[max(p.curve)] - min(t for w, t in p.curve.items() if w >= widths[p.group])
                    for p in profiles if p.group in widths)
    if predicted >= flat * baseline_ms:
        return None
    floor_ms = measure(widths)
    if baseline_ms / floor_ms >= helps:
        return None
    return (f"pruning cannot help on this runtime: with every group at its floor ({floor:.0%} of "
            f"its channels) the model measures {floor_ms:.3f} ms against {baseline_ms:.3f} ms "
            f"({baseline_ms / floor_ms:.2f}x); latency hardly depends on channel counts here "
            "(launch-bound, e.g. a GPU at batch 1): try a larger batch (--shape)")
