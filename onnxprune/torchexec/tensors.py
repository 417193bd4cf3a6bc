"""Tensor helpers the rule families share (no rules here): reading integer and float
arguments from constant tensors, optional inputs, operands on one device, window padding."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Rule = Callable[[list, dict], "Tensor | list[Tensor]"]


def ints(t: Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def floats(t: Tensor | None) -> list[float] | None:
    return None if t is None else [float(v) for v in t.reshape(-1).tolist()]


def opt(x: list, k: int) -> Tensor | None:
    """Optional input ``k`` (absent, empty name or empty tensor -> None)."""
    return x[k] if len(x) > k and x[k] is not None and x[k].numel() > 0 else None


def axes(x: list, a: dict, k: int = 1) -> list[int] | None:
    """Axes from input ``k`` (newer opsets) or the ``axes`` attribute (older ones)."""
    given = ints(opt(x, k))
    return given if given is not None else a.get("axes")


def aligned(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` and ``y`` on one device: a host operand (shape arithmetic, integer constants)
    joins the other's device when they differ."""
    if x.device == y.device:
        return x, y
    return (x.to(y.device), y) if x.device.type == "cpu" else (x, y.to(x.device))


def binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Rule:
    """The rule applying ``fn`` to inputs 0 and 1 (on one device)."""
    return lambda x, a: fn(*aligned(x[0], x[1]))


def window_pads(a: dict, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                dilations: Sequence[int]) -> list[int]:
    """ONNX pads of a convolution or pooling window (all begins, then all ends) with
    ``auto_pad`` resolved."""
    nd = len(kernel)
    mode = a.get("auto_pad", "NOTSET")
    if mode == "NOTSET":
        return list(a.get("pads", [0] * 2 * nd))
    if mode == "VALID":
        return [0] * 2 * nd
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        begins.append(small if mode == "SAME_UPPER" else total - small)
        ends.append(total - begins[-1])
    return begins + ends


def padded(x: Tensor, pads: list[int], value: float, kernel: Sequence[int]) -> tuple[Tensor, list[int]]:
    """(input, symmetric torch padding): pads torch cannot express are applied to the input."""
    nd = len(pads) // 2
    begins, ends = pads[:nd], pads[nd:]
    if begins == ends and all(2 * p <= k for p, k in zip(begins, kernel)):
        return x, begins
    flat = [p for axis in reversed(range(nd)) for p in (begins[axis], ends[axis])]
    return F.pad(x, flat, value=value), [0] * nd
