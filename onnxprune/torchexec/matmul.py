"""MatMul (numpy semantics, operands on one device)."""

from __future__ import annotations

import torch

from .registry import register
from .tensors import binary

register("MatMul")(binary(torch.matmul))
