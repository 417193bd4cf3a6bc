"""Fidelity: how close a model's outputs stay to the unpruned model's, with no labels (the
metrics the sensitivity table, recovery, distillation and the held-out evaluation share).

Invariants:

* Every metric compares *all* graph outputs of a model (by name, :func:`outputs_on`) with the
  reference outputs of the unpruned model on the *same* calibration samples; outputs keep
  their batch axis first. Nothing here reads labels or the user's data beyond those samples.
* :func:`classifier_like` decides how an output is judged: class scores ``[N, K]`` (K > 1)
  unless its rows have unit norm or it is named like an embedding; deterministic in the name
  and values only.
* :func:`distortion` returns a float ``>= 0``, ``0.0`` for identical outputs, summed over
  outputs: mean KL(softmax(ref) || softmax(got)) for classifier-like outputs (scores that
  are already probabilities are used as such), else squared relative L2 error, over the real
  tokens only for token outputs of samples that carry an attention mask.
* :func:`fidelity` returns a :class:`Fidelity`: agreements and shares in ``[0, 1]``, cosines
  in ``[-1, 1]``, relative L2 and distortion ``>= 0``, the interval a sub-range of
  ``[0, 1]``; ``Fidelity.drop`` is the loss ``--max-drop`` bounds (0 for an identical model).
* :func:`evaluate_model` runs the user's callable on a temporary copy, removed afterwards.

Imports stay low in the pipeline (``calib`` only), so every stage can measure with it
without importing a search-stage module.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from . import calib

EMBEDDING_NAME = re.compile(r"embed|hidden|pooler", re.IGNORECASE)


def classifier_like(name: str, a: np.ndarray) -> bool:
    """True for class scores ``[N, K]`` (K > 1); an embedding is not: rows of unit norm
    (normalised sentence embeddings) or an output named like one (``sentence_embedding``,
    ``last_hidden_state``, ``pooler_output``)."""
    if a.ndim != 2 or a.shape[1] <= 1 or EMBEDDING_NAME.search(name):
        return False
    return not np.allclose(np.linalg.norm(a.astype(np.float64), axis=1), 1.0, atol=1e-3)


def distortion(reference: dict[str, np.ndarray], got: dict[str, np.ndarray],
               samples: calib.Samples | None = None) -> float:
    """Summed over outputs: mean KL(softmax(ref) || softmax(got)) for classifier-like outputs
    (:func:`classifier_like`), else squared relative L2 error; over the real tokens only for
    token outputs [N, S, H] of ``samples`` that carry an attention mask."""
    total = 0.0
    for name, a in reference.items():
        b = got[name]
        if classifier_like(name, a):
            total += float(np.mean(kl(a, b)))
        else:
            rows = calib.real_rows(samples, a) if samples is not None else None
            if rows is not None:
                a, b = a.reshape(len(rows), -1)[rows], b.reshape(len(rows), -1)[rows]
            total += float(_square_sum(a - b) / max(_square_sum(a), 1e-30))
    return total


def _square_sum(x: np.ndarray) -> float:
    """Sum of squares, accumulated in float64 row block by row block (no float64 copy of a
    large output)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    step = 1 << 16
    return float(sum(np.dot(c, c) for c in (flat[k:k + step].astype(np.float64)
                                              for k in range(0, len(flat), step))))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    if np.all(x >= 0) and np.allclose(x.sum(1), 1.0, atol=1e-3):  # already probabilities
        return np.log(np.maximum(x, 1e-12))
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, KL(softmax(a) || softmax(b)) (rows that are probabilities already taken as they are)."""
    la, lb = _log_softmax(a), _log_softmax(b)
    return (np.exp(la) * (la - lb)).sum(1)


@dataclass
class Fidelity:
    """How close a pruned model stays to the original on held-out calibration data.

    ``agreement``: top-1 agreement of the first classifier-like output ([N, K], K > 1), or None;
    ``top5``: share of samples whose original top-1 class is among the pruned model's top 5
    (K > 5), or None;
    ``distortion``: summed output distortion (KL for classifier-like outputs, squared relative
    L2 otherwise; see :func:`distortion`); ``cosine`` / ``rel_l2``: per output, mean
    per-sample cosine similarity and relative L2 error over the whole set; ``metric``: the
    user's evaluate callable on the pruned model, or None;
    ``embedding_cosine`` / ``neighbours``: for the first embedding output (token embeddings
    [N, S, H], a sentence encoder's or ViT's ``last_hidden_state``, mean-pooled by
    :func:`pooled`; or an [N, H] embedding that is not class scores, see
    :func:`classifier_like`), the mean per-sample cosine of the embeddings and the
    nearest-neighbour agreement among the samples
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
        same = _neighbour_hits(a, b)
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
    return float(np.mean(_neighbour_hits(reference, got)))


def _neighbour_hits(reference: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Per sample: is its nearest other sample the same under both embeddings?"""
    return _nearest(reference) == _nearest(got)


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
