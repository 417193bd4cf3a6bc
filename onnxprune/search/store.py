"""The measured-candidate store: every candidate the search algorithm
(:mod:`onnxprune.search.algorithm`) asks about is built once, timed by interleaved A/B
comparisons against the one baseline (pooled while imprecise, remembered on disk), and, when
finished, joins the measured trade-off points.

Invariant: a candidate's latency is always ``baseline_ms / speedup`` of its pooled ratio, so
no figure of a run can contradict another. Candidates are timed in the precision the run
ships (:meth:`~onnxprune.preparation.Prepared.deployable`); the baseline is always the
user's float model: a speedup is what the user gets.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import backends, cachefile, sensitivity
from ..preparation import Prepared
from ..progress import line as progress_line
from ..results import PruneResult
from ..rewrite import PrunePlan, apply_plan
from .algorithm import INT8, WINDOW, Choice, float_nodes, plan_for, total_value

MAX_COMPARISONS = 4  # interleaved comparisons pooled for one decision about one candidate
PRECISION = 0.005  # relative standard error of a pooled speedup that needs no more rounds


@dataclass
class Candidate:
    """One measured model: its widths, predicted value, and the interleaved A/B comparisons
    against the baseline, ``(median ratio, p10, p90, rounds)`` each, pooled into one speedup."""

    widths: dict[int, int]
    value: float
    runs: list[tuple[float, float, float, int]] = field(default_factory=list)
    used: int = 0  # comparisons the decisions of this run have pooled so far

    def pooled(self, k: int) -> tuple[float, float]:
        """(speedup, relative standard error) of the first ``k`` comparisons: rounds-weighted
        medians; the error from the p10..p90 spread (a normal spread of 2.56 sigma) and the
        standard error of a median."""
        runs = self.runs[:k]
        n = sum(r[3] for r in runs)
        speedup = sum(r[0] * r[3] for r in runs) / n
        sigma = sum((r[2] - r[1]) / 2.563 * r[3] for r in runs) / n
        return speedup, 1.2533 * sigma / math.sqrt(n) / speedup

    @property
    def speedup(self) -> float:
        return self.pooled(max(self.used, 1))[0]


@dataclass
class CandidateStore:
    """What every latency-targeted run shares: the one baseline, the measured options, every
    measured candidate (pooled interleaved ratios, remembered on disk so that the same run
    again makes the same decisions), and ``judge``, how a candidate's plan becomes a finished
    result (the pipeline's rewrite, recovery and verification)."""

    prep: Prepared
    source: backends.LatencySource
    base: bytes  # the unpruned model, serialised once: every ratio is taken against it
    baseline_ms: float
    choices: list[Choice]
    table: sensitivity.Table | None
    synthetic: bool
    profile_seconds: float
    judge: Callable[[PrunePlan, tuple[str, ...]], PruneResult] | None = None  # build, recover,
    # verify and judge a plan, the named nodes kept float
    cache_path: str | None = None
    quantizer: list[dict] = field(default_factory=list)  # the runtime quantizer's measured rows
    points: list[dict] = field(default_factory=list)
    candidates: dict[str, Candidate] = field(default_factory=dict, repr=False)
    finished: dict[str, PruneResult] = field(default_factory=dict, repr=False)
    last_built: tuple[str, str, bytes] | None = field(default=None, repr=False)
    _point_of: dict[int, dict] = field(default_factory=dict, repr=False)
    _base_digest: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._base_digest = hashlib.sha256(self.base).digest()  # hashed once, not per candidate

    def speedup_of(self, widths: dict[int, int]) -> float:
        """Measured speedup of the pruned model over the baseline: interleaved comparisons,
        one more per call for the same model (a confirmation pools), and more while the pooled
        figure is imprecise (a busy machine), up to :data:`MAX_COMPARISONS` per decision.
        Comparisons are remembered (``comparisons.json`` beside the profile cache), so a run
        with the same cache replays them and decides the same way."""
        key, model = self._built(widths)
        cand = self.candidates.setdefault(key, Candidate(dict(widths), total_value(self.choices, widths)))
        if not cand.runs:
            cand.runs = [tuple(r) for r in self._stored().get(key, [])]
        k = cand.used + 1
        while True:
            while len(cand.runs) < k:
                cmp = self.source.compare(self.base, model, self.prep.feeds, rounds=30)
                cand.runs.append((cmp.speedup, cmp.ratio_p10, cmp.ratio_p90, cmp.rounds))
                self._store(key, cand.runs)
            speedup, error = cand.pooled(k)
            progress_line(f"search: candidate measured {self.baseline_ms / speedup:.3f} ms "
                          f"({speedup:.2f}x, {k} comparison{'s' if k > 1 else ''})")
            if error <= PRECISION or k >= cand.used + MAX_COMPARISONS:
                break
            k += 1
        cand.used = k
        return cand.pooled(k)[0]

    def measure(self, widths: dict[int, int]) -> float:
        """Measured latency (ms) of the pruned model: ``baseline_ms / speedup``."""
        return self.baseline_ms / self.speedup_of(widths)

    def unpruned(self) -> dict[int, int]:
        """Every group at its full width (every precision item int8): the baseline in fp32,
        the quantized unpruned model in another precision (what the runtime's quantizer alone
        gives)."""
        return {ch.group: INT8 if ch.group < 0 else ch.widths[-1] for ch in self.choices}

    def start_ms(self) -> float:
        """Measured latency of :meth:`unpruned` (``baseline_ms`` itself in fp32)."""
        return self.baseline_ms if self.prep.precision == "fp32" else self.measure(self.unpruned())

    def top_ms(self) -> float:
        """Measured latency of every option at its costliest (full widths, precision items
        float): where the search's savings are counted from (:meth:`start_ms` without
        items)."""
        if not any(ch.group < 0 for ch in self.choices):
            return self.start_ms()
        return self.measure({ch.group: ch.widths[-1] for ch in self.choices})

    def _built(self, widths: dict[int, int]) -> tuple[str, bytes]:
        """(comparison key, serialised model in the run's precision, timed as shipped) of
        ``widths``; the last one is kept, so a
        confirmation of the same widths does not rebuild and re-serialise the model."""
        wanted = json.dumps(sorted(widths.items()))
        if self.last_built is None or self.last_built[0] != wanted:
            pruned = apply_plan(self.prep.graph, plan_for(self.prep.graph, widths))
            keep = float_nodes(self.prep.float_items, widths)
            model = self.prep.deployable(pruned, timing=True, keep_float=keep).model.SerializeToString()
            self.last_built = (wanted, self._key(model), model)
        return self.last_built[1], self.last_built[2]

    def _key(self, model: bytes) -> str:
        h = hashlib.sha256(self.source.key().encode())
        h.update(self._base_digest)
        h.update(hashlib.sha256(model).digest())
        return h.hexdigest()[:32]

    def _file(self) -> str | None:
        if not self.cache_path:
            return None
        return os.path.join(os.path.dirname(os.path.abspath(self.cache_path)), "comparisons.json")

    def _stored(self) -> dict[str, list]:
        return cachefile.read(self._file())

    def _store(self, key: str, runs: list) -> None:
        path = self._file()
        if path is not None:
            cachefile.update(path, {key: [list(r) for r in runs]})

    def pick(self, target_speedup: float) -> dict[int, int] | None:
        """The most faithful measured candidate whose speedup meets the target with room for
        the noise of a later measurement (``WINDOW[0]`` x target): a faster one only
        when it is also more faithful; None when no candidate meets it."""
        meets = [c for c in self.candidates.values()
                 if c.used and c.speedup >= WINDOW[0] * target_speedup]
        if not meets:
            return None
        return max(meets, key=lambda c: (c.value, -c.speedup)).widths

    def finish(self, widths: dict[int, int]) -> PruneResult:
        """Build, recover and judge a candidate (once per widths); it joins the measured
        trade-off ``points``."""
        key = json.dumps(sorted(widths.items()))
        if key in self.finished:
            return self.finished[key]
        result = self.judge(plan_for(self.prep.graph, widths), float_nodes(self.prep.float_items, widths))
        self.finished[key] = result
        cand = self._candidate(widths)
        speedup = cand.speedup if cand is not None else self.speedup_of(widths)
        fid = result.quality.fidelity
        point = {
            "ms": self.baseline_ms / speedup, "speedup": speedup, "drop": result.quality.drop,
            "agreement": fid.agreement if fid else None, "top5": fid.top5 if fid else None,
            "distortion": fid.distortion if fid else None,
            "predicted_distortion": -total_value(self.choices, widths) if self.table else None,
            "chosen": False}
        self.points.append(point)
        self._point_of[id(result)] = point
        return result

    def _candidate(self, widths: dict[int, int]) -> Candidate | None:
        return next((c for c in self.candidates.values() if c.widths == widths and c.used), None)

    def points_choosing(self, result: PruneResult) -> list[dict]:
        """Copies of the measured points, ``result``'s marked as the chosen one (and no
        other)."""
        mine = self._point_of.get(id(result))
        return [{**point, "chosen": point is mine} for point in self.points]
