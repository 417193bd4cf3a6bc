"""Resize and Upsample: separable per-axis index / weight maps following the ONNX spec.

One rule per range, like the op specs of :mod:`onnxprune.ops.resize`: Upsample (opset 7 to 10:
``scales`` attribute or input 1) and Resize-10 (input 1) scale ``asymmetric``-ly with the
``simple`` nearest rounding of those opsets; Resize from opset 11 reads scales from input 2 or
sizes from input 3, ``coordinate_transformation_mode``, ``nearest_mode`` and ``axes``. Modes
nearest and linear.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .registry import register
from .tensors import Rule, Tensor, floats, ints, opt


def _source_coords(out: int, size: int, scale: float, mode: str) -> np.ndarray:
    o = np.arange(out, dtype=np.float64)
    if mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    if mode == "asymmetric":
        return o / scale
    if mode == "align_corners":
        return o * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    if mode == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    raise ValueError(f"Resize coordinate_transformation_mode {mode}")


def _nearest(c: np.ndarray, mode: str, scale: float) -> np.ndarray:
    if mode == "simple":  # opset < 11
        mode = "ceil" if scale < 1 else "floor"
    rounding = {"round_prefer_floor": lambda v: np.ceil(v - 0.5),
                "round_prefer_ceil": lambda v: np.floor(v + 0.5),
                "floor": np.floor, "ceil": np.ceil}.get(mode)
    if rounding is None:
        raise ValueError(f"Resize nearest_mode {mode}")
    return rounding(c)


def _linear(data: Tensor, axis: int, coords: np.ndarray) -> Tensor:
    """``data`` interpolated linearly along ``axis`` at the source positions ``coords``."""
    size = data.shape[axis]
    coords = np.clip(coords, 0, size - 1)
    lo = np.floor(coords).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    shape = [1] * data.dim()
    shape[axis] = len(coords)
    w = torch.from_numpy((coords - lo).reshape(shape)).to(data.device, data.dtype)
    low = data.index_select(axis, torch.from_numpy(lo).to(data.device))
    return low + (data.index_select(axis, torch.from_numpy(hi).to(data.device)) - low) * w


def _resize(old: bool) -> Rule:
    """The rule of Upsample and Resize-10 (``old``) or of Resize from opset 11."""
    def rule(x: list, a: dict) -> Tensor:
        data = x[0]
        rank = data.dim()
        scales = floats(opt(x, 1) if old and len(x) > 1 else opt(x, 2)) or a.get("scales")
        sizes = None if old else ints(opt(x, 3))
        axes = [ax % rank for ax in a.get("axes", range(rank))]
        if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise ValueError("Resize keep_aspect_ratio_policy")
        mode = a.get("mode", "nearest")
        ctm = "asymmetric" if old else a.get("coordinate_transformation_mode", "half_pixel")
        nearest = "simple" if old else a.get("nearest_mode", "round_prefer_floor")
        for k, axis in enumerate(axes):
            size = data.shape[axis]
            if sizes is not None:
                out, scale = sizes[k], sizes[k] / size
            else:
                scale = scales[k]
                out = math.floor(size * scale)
            if out == size and scale == 1.0:
                continue
            coords = _source_coords(out, size, scale, ctm)
            if mode == "nearest":
                index = np.clip(_nearest(coords, nearest, scale), 0, size - 1).astype(np.int64)
                data = data.index_select(axis, torch.from_numpy(index).to(data.device))
            elif mode == "linear":
                data = _linear(data, axis, coords)
            else:
                raise ValueError(f"Resize mode {mode}")
        return data
    return rule


register("Upsample", max_opset=10)(_resize(old=True))
register("Resize", min_opset=10, max_opset=10)(_resize(old=True))
register("Resize", min_opset=11)(_resize(old=False))
