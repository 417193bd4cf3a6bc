"""ReduceMean, ReduceSum, ReduceMax, ReduceMin: axes from the input (newer opsets) or the
attribute, ``keepdims``, ``noop_with_empty_axes``."""

from __future__ import annotations

from .registry import register
from .tensors import Rule, Tensor, axes


def _reduce(kind: str) -> Rule:
    def rule(x: list, a: dict) -> Tensor:
        data, over = x[0], axes(x, a)
        if not over:
            if a.get("noop_with_empty_axes", 0):
                return data
            over = list(range(data.dim()))
        dims, keep = tuple(ax % data.dim() for ax in over), bool(a.get("keepdims", 1))
        if kind == "mean":
            return data.mean(dims, keepdim=keep)
        if kind == "sum":
            return data.sum(dims, keepdim=keep)
        return (data.amax if kind == "max" else data.amin)(dims, keepdim=keep)
    return rule


for _kind in ("mean", "sum", "max", "min"):
    register(f"Reduce{_kind.capitalize()}")(_reduce(_kind))
