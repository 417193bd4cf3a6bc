"""Channel importance: weight norms summed over every coupled weight slice.

For each scored member slice (producer rows, consumer input slices, depthwise filters) the norm
of each channel's slice (times the BN scale ``|gamma|/sqrt(var)`` when a BatchNormalization
reads the producer's output) is divided by the mean norm over that member's channels, then
summed over members. A channel of typical magnitude therefore scores about 1 per weight tensor it touches:
scores are dimensionless and comparable across groups, and a channel coupled into many layers
(a residual stream) counts for each of them.
"""

from __future__ import annotations

import numpy as np

from .graph import ChannelGraph

NORMS = ("l1", "l2")
KINDS = ("auto", *NORMS, "activation", "reconstruction")


def weight_importance(g: ChannelGraph, norm: str = "l1") -> None:
    """Fill ``group.importance`` (one float per channel, aligned with ``group.classes``)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}")
    score: dict[int, float] = {}
    bn_scale = _bn_scales(g)
    for p in g.params:
        if not p.scored:
            continue
        w = np.moveaxis(g.consts[p.param].astype(np.float64), p.axis, 0).reshape(g.consts[p.param].shape[p.axis], -1)
        per_pos = np.abs(w).sum(1) if norm == "l1" else np.sqrt((w * w).sum(1))
        if p.role != "in" and p.tensor in bn_scale:
            with np.errstate(invalid="ignore"):  # an infinite weight times a zero BN scale
                per_pos = per_pos * bn_scale[p.tensor]
        _add(score, g.roots(g.channels[p.tensor].labels), per_pos)
    for group in g.groups:
        group.importance = np.array([score.get(int(r), 0.0) for r in group.classes])


def _add(score: dict[int, float], roots: np.ndarray, per_pos: np.ndarray) -> None:
    """Add ``per_pos`` over its mean (over finite entries) to the channels' scores; a channel
    with an infinite (or undefined) norm counts twice the largest finite one (scores stay
    finite). Nothing is added when the mean is not positive."""
    finite = np.isfinite(per_pos)
    mean = float(per_pos[finite].mean()) if finite.any() else 0.0
    if not mean > 0:
        return
    top = 2.0 * float(per_pos[finite].max())
    for root, value in zip(roots.tolist(), (np.where(finite, per_pos, top) / mean).tolist()):
        score[root] = score.get(root, 0.0) + value


def _bn_scales(g: ChannelGraph) -> dict[str, np.ndarray]:
    """``|gamma| / sqrt(var + eps)`` of a BatchNormalization that is the only reader of a
    tensor: the scale a producer's output channel really has (weight norms alone ignore it)."""
    out = {}
    for node in g.model.graph.node:
        reader = g.affine_reader(node.input[0]) if node.input else None
        if reader is not None:
            out[node.input[0]] = reader[1]
    return out


def activation_importance(g: ChannelGraph, samples) -> None:
    """Data-aware importance: a channel's contribution to each consumer's output, estimated as
    ``mean |x_c| * ||W[:, c]||_1`` on calibration activations, normalised per consumer by its
    mean over channels and summed (same scale as :func:`weight_importance`)."""
    from .calib import Tap

    consumers = [p for p in g.params if p.role == "in"]
    names = sorted({p.tensor for p in consumers})
    sums: dict[str, np.ndarray] = {}
    batches = 0
    for out in Tap(g.model, names).run(samples):
        batches += 1
        for name in names:
            x = np.abs(np.moveaxis(out[name].astype(np.float64), g.channels[name].axis, -1))
            sums[name] = sums.get(name, 0) + x.reshape(-1, x.shape[-1]).mean(0)
    score: dict[int, float] = {}
    for p in consumers:
        w = np.moveaxis(np.abs(g.consts[p.param].astype(np.float64)), p.axis, 0)
        with np.errstate(invalid="ignore"):  # an infinite weight on a channel that is always 0
            per_pos = w.reshape(w.shape[0], -1).sum(1) * sums[p.tensor] / max(batches, 1)
        _add(score, g.roots(g.channels[p.tensor].labels), per_pos)
    for group in g.groups:
        group.importance = np.array([score.get(int(r), 0.0) for r in group.classes])
