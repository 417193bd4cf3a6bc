"""Linear consumers as matrices: the fan-in features and weight rows of Conv (group 1), Gemm
and MatMul, shared by the sensitivity stage (consumer statistics) and recovery (refits).

Invariant: ``_features(node, x)`` rows and ``_weight_rows(node, W)`` columns use the same
fan-in order (Conv: input channel major, kernel taps minor, i.e. ``W.reshape(out, -1)``), so
``_features @ _weight_rows.T`` is the node's output (without bias) at the sampled positions.
"""

from __future__ import annotations

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view

from .rules import attr

_POSITIONS = 128  # output positions sampled per image for conv refits


def _features(node: onnx.NodeProto, x: np.ndarray, rng: np.random.Generator,
              picks: np.ndarray | None = None):
    """Rows of the consumer's linear map: ``(F, positions)`` with F [rows, fan_in] ordered like
    the flattened weight rows; ``positions`` selects the matching output rows."""
    if node.op_type == "Conv":
        kh, kw = [int(k) for k in attr(node, "kernel_shape", [1, 1])]
        sh, sw = attr(node, "strides", [1, 1])
        dh, dw = attr(node, "dilations", [1, 1])
        pads = attr(node, "pads", [0, 0, 0, 0])
        xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
        win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # [N, C, Ho, Wo, kh, kw]
        n, c, ho, wo = win.shape[:4]
        if picks is None:
            picks = rng.choice(ho * wo, size=min(_POSITIONS, ho * wo), replace=False)
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho * wo, c * kh * kw)[:, picks]
        return cols.reshape(-1, c * kh * kw), picks
    flat = x.reshape(-1, x.shape[-1]) if node.op_type == "MatMul" else x
    return flat, None


def _targets(node: onnx.NodeProto, y: np.ndarray, picks) -> np.ndarray:
    if node.op_type == "Conv":
        n, c = y.shape[:2]
        return y.reshape(n, c, -1)[:, :, picks].transpose(0, 2, 1).reshape(-1, c)
    return y.reshape(-1, y.shape[-1])


def _weight_rows(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """Weights as [out, fan_in] rows matching :func:`_features`."""
    if node.op_type == "Conv":
        return w.reshape(w.shape[0], -1)
    if node.op_type == "Gemm" and attr(node, "transB", 0):
        return w
    return w.T


def _rows_to_weight(node: onnx.NodeProto, rows: np.ndarray, like: np.ndarray) -> np.ndarray:
    if node.op_type == "Conv":
        return rows.reshape(like.shape).astype(like.dtype)
    if node.op_type == "Gemm" and attr(node, "transB", 0):
        return rows.astype(like.dtype)
    return rows.T.astype(like.dtype)


RIDGE_GRID = (0.003, 0.03, 0.3, 3.0)  # ridge strengths tried, relative to mean diag of the Gram


def fold_error(v: np.ndarray, a: np.ndarray, b: np.ndarray, tt: float) -> float:
    """``sum ||F V^T - Y||^2`` from the fold's ``A = F^T F``, ``B = F^T Y``, ``tt = ||Y||^2``."""
    return float(tt - 2 * np.sum(v * b.T) + np.sum((v @ a) * v))


def ridge_solve(a: np.ndarray, b: np.ndarray, prior: np.ndarray, rel: float) -> np.ndarray:
    """Rows ``V [out, d]`` minimising ``||F V^T - Y||^2 + lam ||V - prior||^2`` with
    ``lam = rel * mean(diag A)``: least squares pulled towards ``prior`` (the trained weights)."""
    lam = rel * float(np.mean(np.diag(a))) + 1e-12
    return np.linalg.solve(a + lam * np.eye(len(a)), b + lam * prior.T).T


def ridge_cv(folds: list[tuple[np.ndarray, np.ndarray, float]], prior: np.ndarray,
             grid: tuple[float, ...] = RIDGE_GRID) -> tuple[np.ndarray, float]:
    """Ridge least squares whose strength is chosen by two-fold cross-validation (fit on one
    half of the calibration samples, score on the other, both ways), then solved on all of it.
    Returns ``(rows, chosen relative strength)``. Small calibration sets and wide fan-ins get a
    strong pull towards ``prior``; plentiful data gets a close fit."""
    (a0, b0, t0), (a1, b1, t1) = folds
    scores = [fold_error(ridge_solve(a0, b0, prior, rel), a1, b1, t1)
              + fold_error(ridge_solve(a1, b1, prior, rel), a0, b0, t0) for rel in grid]
    best = grid[int(np.argmin(scores))]
    return ridge_solve(a0 + a1, b0 + b1, prior, best), best
