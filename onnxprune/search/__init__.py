"""Search: the algorithm that chooses per-group widths under a measured latency target
(:mod:`.algorithm`: candidates at step edges, knapsack, hardware-in-the-loop correction,
evolution) and the store of the candidates it measures (:mod:`.store`)."""

from .algorithm import (
    BAND,
    WINDOW,
    Choice,
    SearchResult,
    Step,
    cannot_help,
    evolve,
    flops_choices,
    hilp,
    kept_importance,
    knapsack,
    latency_choices,
    plan_for,
    predicted_savings,
    solve,
    total_value,
    with_values,
)
from .store import CandidateStore

__all__ = ["BAND", "WINDOW", "CandidateStore", "Choice", "SearchResult", "Step", "cannot_help",
           "evolve", "flops_choices", "hilp", "kept_importance", "knapsack", "latency_choices",
           "plan_for", "predicted_savings", "solve", "total_value", "with_values"]
