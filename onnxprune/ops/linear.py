"""Ops with a channel-indexed weight initializer (input 1): the shared linear-map knowledge.

Recovery refits a consumer ``Y = X W (+ b)`` as ``rows @ features`` where ``rows`` is the weight
as ``[out channels, fan_in]`` (:meth:`LinearSpec.weight_rows`: the ``w_out`` axis first, the rest
flattened row-major) and ``features`` are the matching input patches, one row per output position
(:meth:`LinearSpec.features`). The default is channel-last matrices (Gemm, MatMul); Conv overrides
the features with its kernel windows.
"""

from __future__ import annotations

import numpy as np
import onnx

from .base import OpSpec, WeightLayout, attr


class LinearSpec(OpSpec):
    """A weight-bearing op whose output is linear in its weight (input 1) and bias (input 2)."""

    bias_input: int | None = 2

    def layout(self, node: onnx.NodeProto, w_shape: tuple[int, ...], x_rank: int) -> WeightLayout:
        raise NotImplementedError

    def macs(self, node: onnx.NodeProto, w_shape: tuple[int, ...],
             shapes: dict[str, tuple[int, ...]]) -> int:
        """One multiply-accumulate per output element and weight element feeding it: the output
        size times the weight's fan-in (its size over the output-channel axis)."""
        y = shapes.get(node.output[0])
        if y is None:
            return 0
        fan_in = int(np.prod(w_shape)) // max(w_shape[self.layout(node, w_shape, len(y)).w_out], 1)
        return int(np.prod(y)) * fan_in

    def sweep_mode(self, node: onnx.NodeProto, role: str) -> str | None:
        return {"out": "out", "in": "in"}.get(role)

    def refit_skip(self, node: onnx.NodeProto, w_shape: tuple[int, ...]) -> str:
        if attr(node, "group", 1) != 1:
            return "grouped: left to BN recalibration"
        return ""

    # -- the linear map recovery refits ----------------------------------------------------------
    def out_size(self, node: onnx.NodeProto, w_shape: tuple[int, ...]) -> int:
        """Number of output channels (the bias length)."""
        return w_shape[self.layout(node, w_shape, 2).w_out]

    def bias_name(self, node: onnx.NodeProto) -> str | None:
        """The bias input's name, '' when the op takes a bias but has none, None if it cannot."""
        if self.bias_input is None:
            return None
        return node.input[self.bias_input] if len(node.input) > self.bias_input else ""

    def features(self, node: onnx.NodeProto, x: np.ndarray, rng: np.random.Generator,
                 picks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(F, picks)``: F [rows, fan_in] ordered like :meth:`weight_rows`' columns; ``picks``
        selects the output positions the rows stand for (None: all of them)."""
        return x.reshape(-1, x.shape[-1]), None

    def targets(self, node: onnx.NodeProto, y: np.ndarray, picks: np.ndarray | None) -> np.ndarray:
        """The output rows matching :meth:`features`: [rows, out channels]."""
        return y.reshape(-1, y.shape[-1])

    def weight_rows(self, node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
        """The weight as [out channels, fan_in]: axis ``w_out`` first, the rest row-major."""
        out = self.layout(node, w.shape, 2).w_out
        return np.moveaxis(w, out, 0).reshape(w.shape[out], -1)

    def rows_to_weight(self, node: onnx.NodeProto, rows: np.ndarray, like: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`weight_rows`, in ``like``'s shape and dtype."""
        out = self.layout(node, like.shape, 2).w_out
        moved = np.moveaxis(np.empty_like(like), out, 0).shape
        return np.moveaxis(rows.reshape(moved), 0, out).astype(like.dtype)
