"""Gather along ``axis`` (negative indices wrap; the index tensor joins the data's device)."""

from __future__ import annotations

import torch

from .registry import register
from .tensors import Tensor


@register("Gather")
def gather(x: list, a: dict) -> Tensor:
    data, index = x[0], x[1].long().to(x[0].device)
    axis = a.get("axis", 0) % data.dim()
    index = torch.where(index < 0, index + data.shape[axis], index)
    picked = data.index_select(axis, index.reshape(-1))
    return picked.reshape(*data.shape[:axis], *index.shape, *data.shape[axis + 1:])
