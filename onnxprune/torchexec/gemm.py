"""Gemm: ``alpha * A' B' + beta * C`` (``transA`` / ``transB``, C optional)."""

from __future__ import annotations

from .registry import register
from .tensors import Tensor, opt


@register("Gemm")
def gemm(x: list, a: dict) -> Tensor:
    p, q, c = x[0], x[1], opt(x, 2)
    p = p.t() if a.get("transA", 0) else p
    q = q.t() if a.get("transB", 0) else q
    y = a.get("alpha", 1.0) * (p @ q)
    return y if c is None else y + a.get("beta", 1.0) * c
