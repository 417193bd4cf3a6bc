"""Verify: the pruned model is valid, runs, keeps its outputs' shapes, and its index maps are right.

The index-map proof (:func:`zero_filter_error`): in the unpruned model, zero every consumer's
input slice for the removed channels (so they carry nothing downstream; zeroing the producer is
not enough when a BN or bias follows), then compare with the pruned model. Equal outputs (to
float rounding) prove that every rule removed exactly the positions its map claims. When a plan
does not prove, :func:`prove` bisects it into the groups that do and those that break it.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import onnx
from onnx import numpy_helper

from . import calib, runtime
from .errors import OnnxPruneError
from .graph import ChannelGraph
from .rewrite import PrunePlan, apply_plan, channel_masks
from .sensitivity import classifier_like, distortion

PROOF_TOLERANCE = 1e-4  # max relative output error between the pruned and zero-filter models


def check_structure(model: onnx.ModelProto) -> None:
    """The full onnx checker (with shape inference), as a one-line OnnxPruneError."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise OnnxPruneError(f"internal: pruned model fails onnx.checker: {str(exc).splitlines()[0]}") from exc


def check_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                reference: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Full onnx check, load and run in onnxruntime; outputs keep the names and shapes of the
    ``reference`` outputs (the unpruned model's on the same feeds). Returns the outputs."""
    check_structure(model)
    out = runtime.run(runtime.session(model), feeds)
    if reference is not None:
        for name, value in reference.items():
            if name not in out or out[name].shape != value.shape:
                raise OnnxPruneError(f"internal: output {name!r} changed shape after pruning")
    return out


def zeroed_model(g: ChannelGraph, plan: PrunePlan) -> onnx.ModelProto:
    """``g.model`` with the consumer input slices of the removed channels set to zero."""
    model = copy.deepcopy(g.model)
    mask = channel_masks(g, plan)
    inits = {i.name: i for i in model.graph.initializer}
    arrays: dict[str, np.ndarray] = {}
    for p in g.params:
        if p.role != "in":
            continue
        gone = np.flatnonzero(~mask(p.tensor))
        if not len(gone):
            continue
        value = arrays.get(p.param, g.consts[p.param]).copy()
        index = [slice(None)] * value.ndim
        index[p.axis] = gone
        value[tuple(index)] = 0
        arrays[p.param] = value
    for name, value in arrays.items():
        inits[name].CopyFrom(numpy_helper.from_array(value, name))
    return model


def zero_filter_error(g: ChannelGraph, plan: PrunePlan, feeds: dict[str, np.ndarray],
                      pruned: onnx.ModelProto | None = None) -> float:
    """Max relative output error between the zeroed and the pruned model (should be ~1e-7);
    ``pruned`` is ``apply_plan(g, plan)`` when the caller already has it."""
    cfg = runtime.RuntimeConfig(opt_level="disable")
    ref = runtime.run(runtime.session(zeroed_model(g, plan), cfg), feeds)
    got = runtime.run(runtime.session(pruned or apply_plan(g, plan), cfg), feeds)
    return runtime.max_rel_error(ref, got)


class Proof(NamedTuple):
    """The outcome of proving a plan: ``why`` it is not proven ('' when it is), its zero-filter
    error (inf when the rewrite fails) and the pruned model (None when the rewrite fails)."""

    why: str
    error: float
    model: onnx.ModelProto | None


def check_plan(g: ChannelGraph, plan: PrunePlan, feeds: dict[str, np.ndarray]) -> Proof:
    """Prove ``plan``: it rewrites, passes the checker, runs in onnxruntime and matches the
    zero-filter model to :data:`PROOF_TOLERANCE`."""
    try:
        pruned = apply_plan(g, plan)
        check_structure(pruned)
        err = zero_filter_error(g, plan, feeds, pruned)
    except OnnxPruneError as exc:
        return Proof(str(exc).removeprefix("internal: "), float("inf"), None)
    if err > PROOF_TOLERANCE:
        return Proof(f"pruned outputs differ from the zero-filter model ({err:.1e})", err, pruned)
    return Proof("", err, pruned)


def prove(g: ChannelGraph, plan: PrunePlan, feeds: dict[str, np.ndarray]
          ) -> tuple[PrunePlan, list[tuple[int, str]]]:
    """Split ``plan`` into the largest part found to be proven and the groups that break it.

    Bisection over the plan's groups: with a proven base set, a failing set of groups is halved;
    a failing half is searched on its own, a passing half joins the base (so groups that fail
    only together are found too). Invariant: the returned plan passes :func:`check_plan`.
    Each failure is ``(group id, "index map not proven for <op types>: <why>")``.
    Raises OnnxPruneError (a refusal of the model) when even the empty plan fails."""
    gids = sorted(plan.removed(g))

    def why(subset: list[int]) -> str:
        return check_plan(g, PrunePlan({k: plan.keep[k] for k in subset}), feeds).why

    base_failure = why([])
    if base_failure:  # nothing to freeze: the model itself does not pass what pruned ones must
        raise OnnxPruneError(f"the model does not pass the checks a pruned model must pass, even "
                             f"unpruned: {base_failure}")
    reason = why(gids)
    bad = _culprits(why, [], gids, reason) if reason else []
    failed = {gid for gid, _ in bad}
    good = PrunePlan({k: plan.keep[k] for k in gids if k not in failed})
    return good, [(gid, f"index map not proven for {_op_types(g, gid)}: {r}") for gid, r in bad]


def _culprits(why: Callable[[list[int]], str], base: list[int], gids: list[int],
              reason: str) -> list[tuple[int, str]]:
    """Groups of ``gids`` to drop so that ``base`` plus the rest passes, given that ``base``
    passes and ``base + gids`` fails with ``reason``."""
    if len(gids) == 1:
        return [(gids[0], reason)]
    left, right = gids[:len(gids) // 2], gids[len(gids) // 2:]
    left_reason = why(base + left)
    if not left_reason:
        return _culprits(why, base + left, right, reason)
    bad = _culprits(why, base, left, left_reason)
    failed = {gid for gid, _ in bad}
    kept = base + [k for k in left if k not in failed]
    right_reason = why(kept + right)
    return bad + (_culprits(why, kept, right, right_reason) if right_reason else [])


def _op_types(g: ChannelGraph, gid: int) -> str:
    """The op types of the nodes that read the group's channels (where its index maps live)."""
    tensors = {t for t, _ in g.group_spaces()[gid]}
    return ", ".join(sorted({n.op_type for n in g.model.graph.node
                             if any(i in tensors for i in n.input)}))


@dataclass
class Fidelity:
    """How close a pruned model stays to the original on held-out calibration data.

    ``agreement``: top-1 agreement of the first classifier-like output ([N, K], K > 1), or None;
    ``top5``: share of samples whose original top-1 class is among the pruned model's top 5
    (K > 5), or None;
    ``distortion``: summed output distortion (KL for classifier-like outputs, squared relative
    L2 otherwise; see :func:`onnxprune.sensitivity.distortion`); ``cosine`` / ``rel_l2``: per output, mean per-sample cosine similarity and relative L2 error
    over the whole set; ``metric``: the user's evaluate callable on the pruned model, or None;
    ``embedding_cosine`` / ``neighbours``: for the first embedding output (token embeddings
    [N, S, H], a sentence encoder's or ViT's ``last_hidden_state``, mean-pooled by
    :func:`pooled`; or an [N, H] embedding that is not class scores, see
    :func:`onnxprune.sensitivity.classifier_like`), the mean per-sample cosine of the
    embeddings and the nearest-neighbour agreement among the samples
    (:func:`neighbour_agreement`), else None. ``samples``: how many samples it was measured
    on; ``clusters``: how many distinct clusters of near-duplicates they form, and
    ``interval``: a 95% interval of the agreement (top-1, else nearest-neighbour) with those
    clusters as the unit of evidence (see :func:`agreement_interval`), when they are known."""

    agreement: float | None
    cosine: dict[str, float]
    rel_l2: dict[str, float]
    metric: float | None = None
    top5: float | None = None
    distortion: float | None = None
    embedding_cosine: float | None = None
    neighbours: float | None = None
    samples: int = 0
    clusters: int | None = None
    interval: tuple[float, float] | None = None

    def drop(self, baseline_metric: float | None = None) -> float:
        """The fidelity loss ``--max-drop`` bounds: metric drop when a metric is given, else
        1 - agreement, else 1 - nearest-neighbour agreement of embeddings, else 1 - the worst
        output cosine."""
        if self.metric is not None and baseline_metric is not None:
            return baseline_metric - self.metric
        if self.agreement is not None:
            return 1.0 - self.agreement
        if self.neighbours is not None:
            return 1.0 - self.neighbours
        return 1.0 - min(self.cosine.values())

    def as_dict(self) -> dict:
        return {"agreement": self.agreement, "top5": self.top5, "distortion": self.distortion,
                "cosine": self.cosine, "rel_l2": self.rel_l2, "metric": self.metric,
                "embedding_cosine": self.embedding_cosine, "neighbours": self.neighbours,
                "samples": self.samples, "clusters": self.clusters,
                "interval": list(self.interval) if self.interval is not None else None}


def outputs_on(model: onnx.ModelProto, samples: calib.Samples) -> dict[str, np.ndarray]:
    """All graph outputs of ``model`` over the calibration samples."""
    names = [o.name for o in model.graph.output]
    return calib.Tap(model, []).collect(samples, names)


def fidelity(reference: dict[str, np.ndarray], pruned: onnx.ModelProto, samples: calib.Samples,
             evaluate: Callable[[str], float] | None = None,
             groups: np.ndarray | None = None) -> Fidelity:
    """Compare ``pruned`` with the reference outputs (from :func:`outputs_on`); ``groups``:
    the near-duplicate cluster of each sample, for the agreement's interval."""
    got = outputs_on(pruned, samples)
    agreement = top5 = None
    hits = None  # per-sample agreement (top-1, else nearest neighbour)
    cosine, rel = {}, {}
    for name, a in reference.items():
        b = got[name]
        a2 = a.reshape(len(a), -1).astype(np.float64)
        b2 = b.reshape(len(b), -1).astype(np.float64)
        cosine[name] = float(np.mean(calib.row_cosine(a2, b2)))
        rel[name] = float(np.linalg.norm(a2 - b2) / max(np.linalg.norm(a2), 1e-30))
        if agreement is None and classifier_like(name, a):
            agreement, top5 = top_agreement(a, b)
            hits = a.argmax(1) == b.argmax(1)
    metric = evaluate_model(pruned, evaluate) if evaluate is not None else None
    emb_cos = neighbours = None
    name = next((n for n, a in reference.items() if len(a) > 2 and (
        a.ndim == 3 or (a.ndim == 2 and not classifier_like(n, a)))), None)
    if name is not None:
        mask = calib.attention_mask(samples, reference[name].shape[:2]) if reference[name].ndim == 3 else None
        a, b = pooled(reference[name], mask), pooled(got[name], mask)
        emb_cos = float(np.mean(calib.row_cosine(a, b)))
        same = _nearest(a) == _nearest(b)
        neighbours = float(np.mean(same))
        hits = same if hits is None else hits
    n = calib.count(samples)
    interval = clusters = None
    if groups is not None and hits is not None and len(hits) == len(groups):
        clusters = len(np.unique(groups))
        interval = agreement_interval(hits, groups)
    return Fidelity(agreement, cosine, rel, metric, top5, distortion(reference, got, samples),
                    emb_cos, neighbours, n, clusters, interval)


T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)  # df 1..10


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (a table to 10, then
    the Cornish-Fisher expansion, within 0.002 of the exact value)."""
    if df <= len(T975):
        return T975[max(df, 1) - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def agreement_interval(hits: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """95% interval of the share of ``hits`` (0/1 per sample) when whole clusters
    (``groups``) are the unit of evidence: near-duplicates do not count as independent. A
    Wilson score interval on the effective sample size ``p (1 - p) / var``, with ``var`` the
    cluster-robust variance of the share, kept between the number of clusters ``k`` and of
    samples (``k`` when every cluster agrees alike), and Student's t with ``k - 1`` degrees
    of freedom for the normal quantile (a variance from few clusters is itself uncertain);
    one cluster vouches for nothing: ``[0, 1]``."""
    hits = np.asarray(hits, dtype=np.float64)
    _, index = np.unique(groups, return_inverse=True)
    k, n = int(index.max()) + 1, len(hits)
    if k < 2:
        return 0.0, 1.0
    p = float(hits.mean())
    size = np.bincount(index, minlength=k).astype(np.float64)
    share = np.bincount(index, weights=hits, minlength=k) / size
    var = k / (k - 1) * float(np.sum(size ** 2 * (share - p) ** 2)) / n ** 2
    n_eff = float(np.clip(p * (1 - p) / var, k, n)) if var > 0 else float(k)
    z = t975(k - 1)
    centre = (p + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z * np.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff ** 2)) / (1 + z * z / n_eff)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def pooled(tokens: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Sentence embeddings: the mean over axis 1 of ``tokens`` [N, S, H], over the real tokens
    only when ``mask`` [N, S] is given (sentence-transformers' mean pooling)."""
    w = np.ones(tokens.shape[:2]) if mask is None else mask.astype(np.float64)
    return (tokens * w[:, :, None]).sum(1) / np.maximum(w.sum(1, keepdims=True), 1.0)


def neighbour_agreement(reference: np.ndarray, got: np.ndarray) -> float:
    """Share of samples whose nearest other sample (cosine) is the same under ``got``'s
    embeddings as under ``reference``'s ([N, H] each)."""
    return float(np.mean(_nearest(reference) == _nearest(got)))


def _nearest(e: np.ndarray) -> np.ndarray:
    """Index of each row's nearest other row (cosine)."""
    e = e.astype(np.float64) / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-30)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


def top_agreement(reference: np.ndarray, got: np.ndarray) -> tuple[float, float | None]:
    """(top-1 agreement, share of reference top-1 classes within ``got``'s top 5) for
    ``[N, K]`` scores; the second is None when K <= 5."""
    top1 = reference.argmax(1)
    agree = float(np.mean(top1 == got.argmax(1)))
    if got.shape[1] <= 5:
        return agree, None
    top5 = np.argpartition(-got, 5, axis=1)[:, :5]
    return agree, float(np.mean((top5 == top1[:, None]).any(1)))


def evaluate_model(model: onnx.ModelProto, evaluate: Callable[[str], float]) -> float:
    """Call the user's ``evaluate(model_path)`` on a temporary copy of ``model``."""
    fd, path = tempfile.mkstemp(suffix=".onnx")
    os.close(fd)
    try:
        onnx.save(model, path)
        return float(evaluate(path))
    finally:
        os.unlink(path)
