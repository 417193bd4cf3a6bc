"""Concrete inputs of a model: its real graph inputs, one concrete shape per input, and
deterministic random feeds.

Invariant: every concrete shape the tool uses comes from :func:`input_shapes`, so a model is
always run with the same resolution of its dynamic dimensions (batch 1, spatial 224 unless the
user passes ``--shape``).
"""

from __future__ import annotations

import numpy as np
import onnx

from .errors import OnnxPruneError

NP_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.BOOL: np.bool_,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT8: np.int8,
}


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The real inputs of the graph (initializers listed as inputs are not inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_shapes(
    model: onnx.ModelProto, overrides: dict[str, tuple[int, ...]] | None = None
) -> dict[str, tuple[int, ...]]:
    """Concrete shape per graph input: overrides first, then static dims; dynamic dims become
    1 on axis 0 (batch), 224 on the spatial axes of rank-4 inputs and 1 elsewhere."""
    overrides = overrides or {}
    names = [i.name for i in graph_inputs(model)]
    unknown = set(overrides) - set(names)
    if unknown:
        raise OnnxPruneError(f"--shape names unknown input(s) {sorted(unknown)}; inputs: {names}")
    shapes = {}
    for inp in graph_inputs(model):
        if inp.name in overrides:
            shapes[inp.name] = overrides[inp.name]
            continue
        dims = inp.type.tensor_type.shape.dim
        shape = []
        for axis, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(d.dim_value)
            elif axis == 0:
                shape.append(1)
            else:
                shape.append(224 if len(dims) == 4 and axis >= 2 else 1)
        shapes[inp.name] = tuple(shape)
    return shapes


def random_feeds(
    model: onnx.ModelProto,
    overrides: dict[str, tuple[int, ...]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Deterministic random inputs: standard normal for floats, ones for integers/bools (a
    token id in any vocabulary; an attention mask with every token real: full-length
    sequences, the case latency is measured for)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    shapes = input_shapes(model, overrides)
    for inp in graph_inputs(model):
        dtype = NP_TYPES.get(inp.type.tensor_type.elem_type, np.float32)
        shape = shapes[inp.name]
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[inp.name] = np.ones(shape, dtype=dtype)
    return feeds
