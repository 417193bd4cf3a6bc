"""Typed results of a pruning run, each with ``to_dict()`` (the ``--report`` JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from . import bench, recover
from .fidelity import Fidelity
from .graph import ChannelGraph
from .rewrite import PrunePlan
from .search.algorithm import SearchResult, kept_importance
from .sensitivity import Table


@dataclass
class Quality:
    """Fidelity of the final model on held-out data (whole clusters of calibration samples, or
    the user's --val samples: ``data``), and what recovery did."""

    fidelity: Fidelity | None = None
    baseline_metric: float | None = None
    drop: float | None = None
    recovery: recover.RecoveryReport | None = None
    data: str = "held-out"  # what fidelity was judged on: held-out calibration clusters, or "val"
    precision: str = "fp32"  # what the judged (and written) model computes in: fp32, int8 METHOD
    float_nodes: list[str] = field(default_factory=list)  # nodes a quantized model keeps float

    def to_dict(self) -> dict:
        out: dict = {"precision": self.precision}
        if self.float_nodes:
            out["float_nodes"] = self.float_nodes
        if self.fidelity is not None:
            out["fidelity"] = {**self.fidelity.as_dict(), "drop": self.drop,
                               "baseline_metric": self.baseline_metric, "data": self.data}
        if self.recovery is not None:
            out["recovery"] = {"steps": self.recovery.steps, "layers": self.recovery.layers,
                               "skipped": self.recovery.skipped}
        return out


@dataclass
class PruneResult:
    """What a pruning run produced and measured. ``frozen``: groups left unpruned because their
    rewrite could not be proven (``(group id, reason)``, see :func:`onnxprune.verify.prove`)."""

    model: onnx.ModelProto
    plan: PrunePlan
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    zero_filter_error: float
    channels_removed: int
    quality: Quality = field(default_factory=Quality)
    frozen: list[tuple[int, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Sizes, the zero-filter error, frozen groups, fidelity and recovery, as plain data."""
        return {"params_before": self.params_before, "params_after": self.params_after,
                "macs_before": self.flops_before, "macs_after": self.flops_after,
                "channels_removed": self.channels_removed,
                "zero_filter_error": self.zero_filter_error,
                "frozen_groups": [{"group": gid, "reason": why} for gid, why in self.frozen],
                **self.quality.to_dict()}


@dataclass
class TargetResult:
    """What the latency-targeted search produced: the pruned model and its evidence.

    One baseline (``baseline_ms``, measured once) and interleaved ratios against it: the
    target is ``target_ms = baseline_ms / target_speedup``; ``speedup`` is the chosen model's
    pooled interleaved ratio (the loop's comparisons of it and ``final``, a fresh one) and its
    latency is ``baseline_ms / speedup``; every trade-off point's ``ms`` is derived the same
    way. ``stages``: how many progressive pruning stages produced it."""

    result: PruneResult | None
    baseline_ms: float
    target_ms: float
    final: bench.Comparison | None
    loop: SearchResult | None
    evolve_steps: list = field(default_factory=list)
    widths: dict[int, int] = field(default_factory=dict)
    already_met: bool = False
    profile_seconds: float = 0.0
    table: Table | None = None
    synthetic: bool = False
    points: list[dict] = field(default_factory=list)
    speedup: float | None = None
    warnings: list[str] = field(default_factory=list)
    stages: int = 1
    quantizer: list[dict] = field(default_factory=list)  # the runtime's own quantizer, measured

    @property
    def target_speedup(self) -> float:
        return self.baseline_ms / self.target_ms

    @property
    def after_ms(self) -> float | None:
        """The chosen model's latency on the run's one baseline scale."""
        return None if self.speedup is None else self.baseline_ms / self.speedup

    def to_dict(self, g: ChannelGraph) -> dict:
        """Everything the run measured (``g``: the channel graph the widths index)."""
        out = {"baseline_ms": self.baseline_ms, "target_ms": self.target_ms,
               "target_speedup": self.target_speedup,
               "already_met": self.already_met, "profile_seconds": self.profile_seconds,
               "warnings": self.warnings, "quantizer": self.quantizer}
        if self.result is None:
            return out
        r = self.result
        out["final"] = {
            "speedup": self.speedup, "ms": self.after_ms, "stages": self.stages,
            "independent_speedup": self.final.speedup, "ratio_p10": self.final.ratio_p10,
            "ratio_p90": self.final.ratio_p90, "rounds": self.final.rounds,
            "params_before": r.params_before,
            "params_after": r.params_after, "macs_before": r.flops_before,
            "macs_after": r.flops_after, "zero_filter_error": r.zero_filter_error,
        }
        groups = []
        for gid, w in sorted(self.widths.items()):
            if gid < 0:  # a precision item: quality.float_nodes names those kept float
                continue
            group = g.groups[gid]
            total = max(float(group.importance.sum()), 1e-12)
            groups.append({"group": gid, "name": group.name, "width_before": group.width,
                           "width_after": w,
                           "importance_kept": kept_importance(group, w) / total,
                           "distortion": (self.table.values.get(gid, {}).get(w)
                                          if self.table is not None else None)})
        out["groups"] = groups
        out["loop"] = [{"savings_asked": s.savings_asked, "predicted_ms": s.predicted_ms,
                        "measured_ms": s.measured_ms,
                        "speedup": self.baseline_ms / s.measured_ms, "importance": s.importance,
                        "accepted": s.accepted} for s in (self.loop.steps if self.loop else [])]
        out["quality"] = r.to_dict()
        out["tradeoff"] = self.points
        out["sensitivity"] = ({**self.table.to_dict(), "synthetic": self.synthetic}
                              if self.table is not None else None)
        out["evolve"] = [{"measured_ms": s.measured_ms, "importance": s.importance,
                          "feasible": s.accepted} for s in self.evolve_steps]
        return out


@dataclass
class Outcome:
    """What :func:`onnxprune.prune` returns: the pruned (and recovered) model, the typed result
    and its JSON-able report (``report == to_dict()``)."""

    model: onnx.ModelProto
    report: dict
    result: PruneResult | TargetResult | None = None

    def to_dict(self) -> dict:
        return self.report
