"""Transpose (``perm`` defaults to reversing the axes)."""

from __future__ import annotations

from .registry import register
from .tensors import Tensor


@register("Transpose")
def transpose(x: list, a: dict) -> Tensor:
    return x[0].permute(a.get("perm", list(reversed(range(x[0].dim())))))
