"""Shape (``start`` / ``end``), an int64 tensor on the host, and Constant (the numeric value
attributes), so that ``Shape`` -> ``Gather`` -> ``Reshape`` chains run without folding."""

from __future__ import annotations

import numpy as np
import torch

from .registry import register
from .tensors import Tensor


@register("Shape")
def shape(x: list, a: dict) -> Tensor:
    dims = list(x[0].shape)
    return torch.tensor(dims[a.get("start", 0):a.get("end", len(dims))], dtype=torch.int64)


@register("Constant")
def constant(x: list, a: dict) -> Tensor:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            dtype = np.float32 if "float" in key else None
            return torch.from_numpy(np.array(a[key], dtype=dtype))
    raise ValueError("Constant without a numeric value attribute")
