"""Numpy-broadcast binary and variadic ops (the family of :mod:`onnxprune.ops.broadcast`):
operands on one device first (a host-side integer constant joins the other's device)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .registry import register
from .tensors import Rule, Tensor, aligned, binary


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> Rule:
    def rule(x: list, a: dict) -> Tensor:
        out = x[0]
        for t in x[1:]:
            out = fn(*aligned(out, t))
        return out
    return rule


for _op, _rule in {"Add": binary(torch.add), "Sub": binary(torch.sub), "Mul": binary(torch.mul),
                   "Pow": binary(torch.pow), "Max": _variadic(torch.maximum),
                   "Min": _variadic(torch.minimum), "Sum": _variadic(torch.add)}.items():
    register(_op)(_rule)


@register("Div")
def div(x: list, a: dict) -> Tensor:
    p, q = aligned(x[0], x[1])
    if p.is_floating_point() or q.is_floating_point():
        return p / q
    return torch.div(p, q, rounding_mode="trunc")


@register("PRelu")
def prelu(x: list, a: dict) -> Tensor:
    return torch.where(x[0] >= 0, x[0], x[0] * x[1])
