"""Linear consumers as matrices, and the ridge least squares that refits them; shared by the
sensitivity stage (consumer statistics, local refits) and recovery (sequential refits).

The matrices come from each op's :class:`onnxprune.ops.LinearSpec`. Invariant: ``_features(node,
x)`` rows and ``_weight_rows(node, W)`` columns use the same fan-in order (Conv: input channel
major, kernel taps minor, i.e. ``W.reshape(out, -1)``), so ``_features @ _weight_rows.T`` is the
node's output (without bias) at the sampled positions.
"""

from __future__ import annotations

import numpy as np
import onnx

from . import calib, ops


def linear(node: onnx.NodeProto) -> ops.LinearSpec | None:
    """The linear spec of ``node``, or None when it has no linear map (linear maps do not
    change across opsets)."""
    return ops.linear_spec(node, ops.LATEST_OPSETS)


def _features(node: onnx.NodeProto, x: np.ndarray, rng: np.random.Generator,
              picks: np.ndarray | None = None):
    """Rows of the consumer's linear map: ``(F, positions)`` with F [rows, fan_in] ordered like
    the flattened weight rows; ``positions`` selects the matching output rows (see
    :meth:`onnxprune.ops.LinearSpec.features`)."""
    return linear(node).features(node, x, rng, picks)


def design_rows(node: onnx.NodeProto, x: np.ndarray, feed: dict[str, np.ndarray],
                rng: np.random.Generator, picks: np.ndarray | None = None):
    """``(F, picks, rows)``: the features of :func:`_features` in float32 with a constant
    column for the bias, keeping only real-token rows when the batch ``feed`` carries an
    attention mask over channel-last token rows (``rows``, else None; apply it to the targets
    too). Gram products of F are taken in float32 and summed in float64 by the callers."""
    x = x.astype(np.float32)
    f, picks = _features(node, x, rng, picks)
    rows = calib.real_rows(feed, x)
    if rows is not None and len(rows) == len(f):
        f = f[rows]
    else:
        rows = None
    return np.hstack([f, np.ones((len(f), 1), np.float32)]), picks, rows


def _targets(node: onnx.NodeProto, y: np.ndarray, picks) -> np.ndarray:
    return linear(node).targets(node, y, picks)


def _weight_rows(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """Weights as [out, fan_in] rows matching :func:`_features`."""
    return linear(node).weight_rows(node, w)


def _rows_to_weight(node: onnx.NodeProto, rows: np.ndarray, like: np.ndarray) -> np.ndarray:
    return linear(node).rows_to_weight(node, rows, like)


RIDGE_GRID = (0.003, 0.03, 0.3, 3.0)  # ridge strengths tried, relative to mean diag of the Gram


def fold_error(v: np.ndarray, a: np.ndarray, b: np.ndarray, tt: float) -> float:
    """``sum ||F V^T - Y||^2`` from the fold's ``A = F^T F``, ``B = F^T Y``, ``tt = ||Y||^2``."""
    return float(tt - 2 * np.sum(v * b.T) + np.sum((v @ a) * v))


def ridge_solve(a: np.ndarray, b: np.ndarray, prior: np.ndarray, rel: float) -> np.ndarray:
    """Rows ``V [out, d]`` minimising ``||F V^T - Y||^2 + lam ||V - prior||^2`` with
    ``lam = rel * mean(diag A)``: least squares pulled towards ``prior`` (the trained weights)."""
    lam = rel * float(np.mean(np.diag(a))) + 1e-12
    return np.linalg.solve(a + lam * np.eye(len(a)), b + lam * prior.T).T


def ridge_strength(folds: list[tuple[np.ndarray, np.ndarray, float]], prior: np.ndarray,
                   grid: tuple[float, ...] = RIDGE_GRID) -> float:
    """The relative ridge strength of ``grid`` chosen by two-fold cross-validation: fit on one
    half of the calibration samples, score on the other, both ways. Small calibration sets and
    wide fan-ins get a strong pull towards ``prior``; plentiful data gets a close fit."""
    (a0, b0, t0), (a1, b1, t1) = folds
    scores = [fold_error(ridge_solve(a0, b0, prior, rel), a1, b1, t1)
              + fold_error(ridge_solve(a1, b1, prior, rel), a0, b0, t0) for rel in grid]
    return grid[int(np.argmin(scores))]


def ridge_cv(folds: list[tuple[np.ndarray, np.ndarray, float]], prior: np.ndarray,
             grid: tuple[float, ...] = RIDGE_GRID) -> tuple[np.ndarray, float]:
    """Ridge least squares with the cross-validated strength (:func:`ridge_strength`), solved
    on both folds. Returns ``(rows, chosen relative strength)``."""
    (a0, b0, _), (a1, b1, _) = folds
    best = ridge_strength(folds, prior, grid)
    return ridge_solve(a0 + a1, b0 + b1, prior, best), best
