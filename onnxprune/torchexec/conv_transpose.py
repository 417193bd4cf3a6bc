"""ConvTranspose: ``output_shape`` / ``auto_pad`` resolved to pads, ``output_padding`` added at
the end of each spatial axis, asymmetric pads cropped after the transposed convolution."""

from __future__ import annotations

import torch.nn.functional as F

from .conv import geometry
from .registry import register
from .tensors import Tensor, opt

_DECONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@register("ConvTranspose")
def conv_transpose(x: list, a: dict) -> Tensor:
    data, w, b = x[0], x[1], opt(x, 2)
    nd, strides, dil = geometry(w, a)
    extra = list(a.get("output_padding", [0] * nd))
    full = [s * (i - 1) + e + (k - 1) * d + 1
            for s, i, e, k, d in zip(strides, data.shape[2:], extra, w.shape[2:], dil)]
    mode = a.get("auto_pad", "NOTSET")
    if "output_shape" in a or mode in ("SAME_UPPER", "SAME_LOWER"):
        shape = a.get("output_shape") or [i * s for i, s in zip(data.shape[2:], strides)]
        total = [f - o for f, o in zip(full, shape[-nd:])]
        upper = mode != "SAME_LOWER"
        begins = [t // 2 if upper else t - t // 2 for t in total]
        pads = begins + [t - bg for t, bg in zip(total, begins)]
    else:
        pads = list(a.get("pads", [0] * 2 * nd)) if mode == "NOTSET" else [0] * 2 * nd
    y = _DECONV[nd](data, w, None, strides, 0, 0, a.get("group", 1), dil)
    y = F.pad(y, [p for e in reversed(extra) for p in (0, e)])
    for axis in range(nd):
        y = y.narrow(axis + 2, pads[axis], full[axis] - pads[axis] - pads[nd + axis])
    return y if b is None else y + b.reshape(1, -1, *[1] * nd)
