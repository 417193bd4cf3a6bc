"""A differentiable PyTorch executor for (constant-folded) ONNX graphs, used by :mod:`.distill`.

This module imports torch at module level; only :mod:`.distill` imports it, inside a function,
after checking that torch is installed (torch is the optional ``onnxprune[torch]`` extra).

Invariants:

* the graph is executed in its stored (topological) order with one torch rule per op type
  (a Conv whose output only feeds an inference-mode BatchNormalization runs as one fused op
  with the same math); the ONNX graph is never changed, only initializer values can be trained;
* every initializer becomes a tensor of its own dtype: the ones named in ``trainable`` are
  ``torch.nn.Parameter`` objects (float only), all others are constant tensors;
* shapes, axes, pads and other integer arguments are read from constant tensors at run time,
  so ``Shape`` -> ``Gather`` -> ``Reshape`` chains work without constant folding; integer and
  0-d constants stay on the host whatever the device (reading them never waits for a GPU);
* an op without a rule raises :class:`UnsupportedOp` (a ``ValueError`` naming the op) when the
  executor is built, before anything runs; unsupported attributes raise ``ValueError``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from . import runtime

Tensor = torch.Tensor
Rule = Callable[[list, dict], "Tensor | list[Tensor]"]

# Input slots that hold tunable weights and biases: linear layers and normalisation affines.
TRAINABLE_SLOTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
    "BatchNormalization": (1, 2), "LayerNormalization": (1, 2), "InstanceNormalization": (1, 2),
}
TORCH_TYPES = {
    onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16, onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT32: torch.int32, onnx.TensorProto.BOOL: torch.bool,
    onnx.TensorProto.UINT8: torch.uint8, onnx.TensorProto.INT8: torch.int8,
}


class UnsupportedOp(ValueError):
    """The graph holds an op the executor has no torch rule for."""

    def __init__(self, op: str):
        super().__init__(f"no torch rule for {op}")
        self.op = op


def trainable_names(model: onnx.ModelProto) -> list[str]:
    """Float initializers in a :data:`TRAINABLE_SLOTS` position, plus the constant operand of an
    ``Add`` fed by a ``MatMul`` (a linear layer's bias), in initializer order."""
    inits = {i.name: i for i in model.graph.initializer}
    floats = {n for n, i in inits.items() if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)}
    matmul_out = {n.output[0] for n in model.graph.node if n.op_type == "MatMul"}
    chosen: set[str] = set()
    for node in model.graph.node:
        slots = TRAINABLE_SLOTS.get(node.op_type, ())
        if node.op_type == "Add" and any(i in matmul_out for i in node.input):
            slots = (0, 1)
        chosen.update(node.input[k] for k in slots if k < len(node.input) and node.input[k] in floats)
    return [n for n in inits if n in chosen]


class Executor(torch.nn.Module):
    """Runs ``model`` with torch ops; ``forward(feeds)`` returns the graph outputs and the
    intermediate tensors named in ``taps`` (fixed when it is built).

    Built once into a flat list of steps over a register file (list slots, no per-node name
    lookups); a value is dropped after its last reader unless it is returned. With ``fuse``, a
    Conv whose output only feeds an inference-mode BatchNormalization runs as one convolution
    with the BN folded into its weight and bias at every call (the same math, gradients reach
    the Conv weight and bias and the BN scale and bias as before). ``channels_last``: 4-D float
    feeds are laid out channels-last (faster convolutions on some CPUs and GPUs; the values
    are the same). :meth:`place` moves the executor to a device: float tensors go there, integer
    and 0-d constants (shapes, axes, scalars) stay on the host, where reading them is free."""

    def __init__(self, model: onnx.ModelProto, trainable: Sequence[str] = (),
                 taps: Sequence[str] = (), fuse: bool = True, channels_last: bool = False):
        super().__init__()
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.inputs = [i.name for i in runtime.graph_inputs(model)]
        self.outputs = [o.name for o in model.graph.output]
        self.taps = [t for t in dict.fromkeys(taps) if t not in self.outputs]
        self.channels_last = channels_last
        wanted = set(trainable)
        self.trainable: list[str] = []  # parameter names, in initializer order like self.params
        self.params = torch.nn.ParameterList()
        slots: dict[str, int] = {}

        def slot(name: str) -> int:
            return slots.setdefault(name, len(slots))

        self._consts: list[tuple[int, Tensor]] = []
        for init in model.graph.initializer:
            value = torch.from_numpy(np.array(numpy_helper.to_array(init)))
            if init.name in wanted and value.is_floating_point():
                self.trainable.append(init.name)
                self.params.append(torch.nn.Parameter(value))
            else:
                self._consts.append((slot(init.name), value))
        self._param_slots = [slot(n) for n in self.trainable]
        self._input_slots = [(n, slot(n)) for n in self.inputs]
        nodes = list(model.graph.node)
        for node in nodes:
            if (RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None) is None:
                raise UnsupportedOp(node.op_type)
        folded = _conv_bn_pairs(nodes, {*self.outputs, *self.taps}) if fuse else {}
        known = set(slots)
        steps: list[tuple[Callable, list[int], list[int]]] = []
        for k, node in enumerate(nodes):
            if k in folded.values():
                continue
            attrs = {a.name: _attr(a) for a in node.attribute}
            attrs.update(_op=node.op_type, _opset=opset, _outputs=len(node.output))
            rule, ins, made = RULES[node.op_type], list(node.input), list(node.output)
            if k in folded:  # Conv + BatchNormalization as one op
                bn = nodes[folded[k]]
                ins = [*ins, *[""] * (3 - len(ins)), *bn.input[1:5]]
                attrs["_epsilon"] = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
                rule, made = _conv_bn, [bn.output[0]]
            for name in ins:
                if name and name not in known:
                    raise ValueError(f"{node.op_type} {node.name!r}: input {name!r} is not computed "
                                     "before it (graph not topologically sorted, or an optional output)")
            made = made if node.op_type in MULTI_OUTPUT else made[:1]
            known.update(o for o in made if o)
            steps.append((functools.partial(rule, a=attrs), [slot(n) if n else -1 for n in ins],
                          [slot(o) if o else -1 for o in made]))
        for name in [*self.outputs, *self.taps]:
            if name not in known:
                raise ValueError(f"tensor {name!r} is not computed by a supported rule (or was folded)")
        self._results = [(n, slots[n]) for n in [*self.outputs, *self.taps]]
        returned = {s for _, s in self._results}
        last: dict[int, int] = {}  # computed value -> the last step that reads it
        for k, (_, ins, _) in enumerate(steps):
            last.update((s, k) for s in ins if s >= 0)
        computed = {s for _, _, outs in steps for s in outs}
        dead: dict[int, list[int]] = {}
        for s, k in last.items():
            if s in computed and s not in returned:
                dead.setdefault(k, []).append(s)
        self._steps = [(fn, ins, outs, dead.get(k, [])) for k, (fn, ins, outs) in enumerate(steps)]
        self._size = len(slots)
        self.fused = len(folded)
        self.place(torch.device("cpu"))

    def place(self, device) -> Executor:
        """Move the executor to ``device`` (see the class docstring); returns it."""
        self.to(device)
        self.device = torch.device(device)
        self._env: list = [None] * self._size
        for s, value in self._consts:
            on_device = value.is_floating_point() and value.dim() > 0
            self._env[s] = value.to(self.device) if on_device else value
        return self

    def forward(self, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        env = self._env.copy()
        for s, p in zip(self._param_slots, self.params):
            env[s] = p
        for name, s in self._input_slots:
            value = feeds[name]
            if self.channels_last and value.dim() == 4 and value.is_floating_point():
                value = value.contiguous(memory_format=torch.channels_last)
            env[s] = value
        for fn, ins, outs, dead in self._steps:
            result = fn([env[s] if s >= 0 else None for s in ins])
            if isinstance(result, Tensor):
                env[outs[0]] = result
            else:
                for s, v in zip(outs, result):
                    if s >= 0:
                        env[s] = v
            for s in dead:
                env[s] = None
        return {n: env[s] for n, s in self._results}

    def trained(self) -> dict[str, np.ndarray]:
        """Current values of the trainable initializers, keyed by initializer name."""
        return {n: p.detach().cpu().numpy().copy() for n, p in zip(self.trainable, self.params)}


def _conv_bn_pairs(nodes: list[onnx.NodeProto], keep: set[str]) -> dict[int, int]:
    """``{Conv index: BatchNormalization index}`` for every Conv whose output is read only by
    an inference-mode BatchNormalization (as its data input) and is not in ``keep``."""
    readers: dict[str, list[int]] = {}
    for k, node in enumerate(nodes):
        for name in node.input:
            readers.setdefault(name, []).append(k)
    pairs = {}
    for k, node in enumerate(nodes):
        y = node.output[0] if node.op_type == "Conv" and node.domain in ("", "ai.onnx") else ""
        users = readers.get(y, [])
        if not y or y in keep or len(users) != 1:
            continue
        bn = nodes[users[0]]
        training = any(a.name == "training_mode" and a.i for a in bn.attribute)
        if (bn.op_type == "BatchNormalization" and bn.domain in ("", "ai.onnx") and not training
                and list(bn.input[:1]) == [y] and len(bn.input) >= 5 and not any(bn.output[1:])):
            pairs[k] = users[0]
    return pairs


def _attr(a: onnx.AttributeProto):
    value = helper.get_attribute_value(a)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode()
    return value


def _ints(t: Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _floats(t: Tensor | None) -> list[float] | None:
    return None if t is None else [float(v) for v in t.reshape(-1).tolist()]


def _opt(x: list, k: int) -> Tensor | None:
    """Optional input ``k`` (absent, empty name or empty tensor -> None)."""
    return x[k] if len(x) > k and x[k] is not None and x[k].numel() > 0 else None


# -- convolution and pooling ---------------------------------------------------------------------

def _pads(a: dict, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
          dilations: Sequence[int]) -> list[int]:
    """ONNX pads (all begins, then all ends) with ``auto_pad`` resolved."""
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


def _padded(x: Tensor, pads: list[int], value: float, kernel: Sequence[int]) -> tuple[Tensor, list[int]]:
    """(input, symmetric torch padding): pads torch cannot express are applied to the input."""
    nd = len(pads) // 2
    begins, ends = pads[:nd], pads[nd:]
    if begins == ends and all(2 * p <= k for p, k in zip(begins, kernel)):
        return x, begins
    flat = [p for axis in reversed(range(nd)) for p in (begins[axis], ends[axis])]
    return F.pad(x, flat, value=value), [0] * nd


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_DECONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVGPOOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _conv(x: list, a: dict) -> Tensor:
    data, w, b = x[0], x[1], _opt(x, 2)
    nd = w.dim() - 2
    strides, dil = a.get("strides", [1] * nd), a.get("dilations", [1] * nd)
    kernel = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], dil)]
    pads = _pads(a, data.shape[2:], w.shape[2:], strides, dil)
    data, pad = _padded(data, pads, 0.0, kernel)
    return _CONV[nd](data, w, b, strides, pad, dil, a.get("group", 1))


def _conv_bn(x: list, a: dict) -> Tensor:
    """Conv followed by an inference-mode BatchNormalization (inputs: the Conv's three, then
    the BN's scale, bias, mean, variance), the BN folded into the Conv's weight and bias."""
    data, w, b, scale, shift, mean, var = x
    s = scale / torch.sqrt(var + a["_epsilon"])
    bias = shift - mean * s if b is None or b.numel() == 0 else (b - mean) * s + shift
    return _conv([data, w * s.reshape(-1, *[1] * (w.dim() - 1)), bias], a)


def _conv_transpose(x: list, a: dict) -> Tensor:
    data, w, b = x[0], x[1], _opt(x, 2)
    nd = w.dim() - 2
    strides, dil = a.get("strides", [1] * nd), a.get("dilations", [1] * nd)
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


def _max_pool(x: list, a: dict) -> Tensor:
    if a["_outputs"] > 1:
        raise ValueError("MaxPool with an Indices output")
    data = x[0]
    kernel = a["kernel_shape"]
    nd = len(kernel)
    strides, dil = a.get("strides", [1] * nd), a.get("dilations", [1] * nd)
    pads = _pads(a, data.shape[2:], kernel, strides, dil)
    data, pad = _padded(data, pads, -math.inf, kernel)
    return _MAXPOOL[nd](data, kernel, strides, pad, dil, bool(a.get("ceil_mode", 0)))


def _avg_pool(x: list, a: dict) -> Tensor:
    data = x[0]
    kernel = a["kernel_shape"]
    nd = len(kernel)
    strides = a.get("strides", [1] * nd)
    if any(d != 1 for d in a.get("dilations", [1] * nd)):
        raise ValueError("AveragePool with dilations")
    pads = _pads(a, data.shape[2:], kernel, strides, [1] * nd)
    ceil, include = bool(a.get("ceil_mode", 0)), bool(a.get("count_include_pad", 0))
    padded, pad = _padded(data, pads, 0.0, kernel)
    if padded is data:
        return _AVGPOOL[nd](data, kernel, strides, pad, ceil, include)
    if ceil:
        raise ValueError("AveragePool with asymmetric pads and ceil_mode")
    mean = _AVGPOOL[nd](padded, kernel, strides)
    if include:
        return mean
    ones = torch.ones((1, 1, *data.shape[2:]), dtype=data.dtype, device=data.device)
    return mean / _AVGPOOL[nd](_padded(ones, pads, 0.0, kernel)[0], kernel, strides)


def _batch_norm(x: list, a: dict) -> Tensor:
    if a.get("training_mode", 0):
        raise ValueError("BatchNormalization in training mode")
    data, scale, bias, mean, var = x[:5]
    return F.batch_norm(data, mean, var, scale, bias, False, 0.0, a.get("epsilon", 1e-5))


def _layer_norm(x: list, a: dict) -> Tensor:
    if a["_outputs"] > 1:
        raise ValueError("LayerNormalization with Mean/InvStdDev outputs")
    data = x[0]
    axis = a.get("axis", -1) % data.dim()
    return F.layer_norm(data, data.shape[axis:], x[1], _opt(x, 2), a.get("epsilon", 1e-5))


# -- shape and indexing --------------------------------------------------------------------------

def _axes(x: list, a: dict, k: int = 1) -> list[int] | None:
    """Axes from input ``k`` (newer opsets) or the ``axes`` attribute (older ones)."""
    axes = _ints(_opt(x, k))
    return axes if axes is not None else a.get("axes")


def _flatten(x: list, a: dict) -> Tensor:
    data = x[0]
    axis = a.get("axis", 1) % (data.dim() + 1) if data.dim() else 0
    return data.reshape(int(np.prod(data.shape[:axis], dtype=np.int64)), -1)


def _reshape(x: list, a: dict) -> Tensor:
    data, shape = x[0], _ints(x[1])
    keep_zero = a.get("allowzero", 0)
    return data.reshape([data.shape[i] if d == 0 and not keep_zero else d for i, d in enumerate(shape)])


def _transpose(x: list, a: dict) -> Tensor:
    return x[0].permute(a.get("perm", list(reversed(range(x[0].dim())))))


def _squeeze(x: list, a: dict) -> Tensor:
    axes = _axes(x, a)
    if axes is None:
        return x[0].squeeze()
    return x[0].squeeze(tuple(ax % x[0].dim() for ax in axes))


def _unsqueeze(x: list, a: dict) -> Tensor:
    data, axes = x[0], _axes(x, a)
    rank = data.dim() + len(axes)
    for axis in sorted(ax % rank for ax in axes):
        data = data.unsqueeze(axis)
    return data


def _split(x: list, a: dict) -> list[Tensor]:
    data = x[0]
    axis = a.get("axis", 0) % data.dim()
    sizes = _ints(_opt(x, 1)) or a.get("split")
    if not sizes:
        parts = a.get("num_outputs", a["_outputs"])
        each = math.ceil(data.shape[axis] / parts)
        sizes = [min(each, data.shape[axis] - k * each) for k in range(parts)]
    return list(torch.split(data, sizes, axis))


def _slice(x: list, a: dict) -> Tensor:
    data = x[0]
    if len(x) > 1:
        starts, ends = _ints(x[1]), _ints(x[2])
        axes, steps = _ints(_opt(x, 3)), _ints(_opt(x, 4))
    else:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= data.dim()
        picked = range(*slice(start, end, step).indices(data.shape[axis]))
        if step == 1:
            data = data.narrow(axis, picked.start, len(picked))
        else:
            data = data.index_select(axis, torch.tensor(list(picked), dtype=torch.long, device=data.device))
    return data


def _gather(x: list, a: dict) -> Tensor:
    data, index = x[0], x[1].long().to(x[0].device)
    axis = a.get("axis", 0) % data.dim()
    index = torch.where(index < 0, index + data.shape[axis], index)
    picked = data.index_select(axis, index.reshape(-1))
    return picked.reshape(*data.shape[:axis], *index.shape, *data.shape[axis + 1:])


def _shape(x: list, a: dict) -> Tensor:
    dims = list(x[0].shape)
    return torch.tensor(dims[a.get("start", 0):a.get("end", len(dims))], dtype=torch.int64)


def _constant(x: list, a: dict) -> Tensor:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            dtype = np.float32 if "float" in key else None
            return torch.from_numpy(np.array(a[key], dtype=dtype))
    raise ValueError("Constant without a numeric value attribute")


def _cast(x: list, a: dict) -> Tensor:
    if a["to"] not in TORCH_TYPES:
        raise ValueError(f"Cast to ONNX type {a['to']}")
    return x[0].to(TORCH_TYPES[a["to"]])


def _pad(x: list, a: dict) -> Tensor:
    data = x[0]
    pads = _ints(_opt(x, 1)) if len(x) > 1 else a["pads"]
    value = float(x[2]) if _opt(x, 2) is not None else a.get("value", 0.0)
    axes = _ints(_opt(x, 3)) or list(range(data.dim()))
    n = len(axes)
    per_axis = {ax % data.dim(): (pads[k], pads[n + k]) for k, ax in enumerate(axes)}
    last = min((ax for ax, p in per_axis.items() if any(p)), default=data.dim())
    flat = [p for ax in reversed(range(last, data.dim())) for p in per_axis.get(ax, (0, 0))]
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(a.get("mode", "constant"))
    if mode is None:
        raise ValueError(f"Pad mode {a.get('mode')}")
    return F.pad(data, flat, mode=mode, value=value) if mode == "constant" else F.pad(data, flat, mode=mode)


# -- Resize: separable per-axis index/weight maps following the ONNX spec ------------------------

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


def _resize(x: list, a: dict) -> Tensor:
    data = x[0]
    rank = data.dim()
    old = a["_op"] == "Upsample" or a["_opset"] < 11
    scales = _floats(_opt(x, 1) if old and len(x) > 1 else _opt(x, 2)) or a.get("scales")
    sizes = None if old else _ints(_opt(x, 3))
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
            coords = np.clip(coords, 0, size - 1)
            lo = np.floor(coords).astype(np.int64)
            hi = np.minimum(lo + 1, size - 1)
            shape = [1] * rank
            shape[axis] = out
            w = torch.from_numpy((coords - lo).reshape(shape)).to(data.device, data.dtype)
            low = data.index_select(axis, torch.from_numpy(lo).to(data.device))
            data = low + (data.index_select(axis, torch.from_numpy(hi).to(data.device)) - low) * w
        else:
            raise ValueError(f"Resize mode {mode}")
    return data


# -- elementwise, reductions, linear algebra -----------------------------------------------------

def _div(x: list, a: dict) -> Tensor:
    p, q = _aligned(x[0], x[1])
    if p.is_floating_point() or q.is_floating_point():
        return p / q
    return torch.div(p, q, rounding_mode="trunc")


def _clip(x: list, a: dict) -> Tensor:
    low = float(_opt(x, 1)) if _opt(x, 1) is not None else a.get("min")
    high = float(_opt(x, 2)) if _opt(x, 2) is not None else a.get("max")
    return x[0] if low is None and high is None else torch.clamp(x[0], low, high)


def _gemm(x: list, a: dict) -> Tensor:
    p, q, c = x[0], x[1], _opt(x, 2)
    p = p.t() if a.get("transA", 0) else p
    q = q.t() if a.get("transB", 0) else q
    y = a.get("alpha", 1.0) * (p @ q)
    return y if c is None else y + a.get("beta", 1.0) * c


def _softmax(log: bool) -> Rule:
    def rule(x: list, a: dict) -> Tensor:
        data = x[0]
        fn = torch.log_softmax if log else torch.softmax
        if a["_opset"] >= 13:
            return fn(data, a.get("axis", -1))
        axis = a.get("axis", 1) % data.dim()
        flat = data.reshape(int(np.prod(data.shape[:axis], dtype=np.int64)), -1)
        return fn(flat, 1).reshape(data.shape)
    return rule


def _reduce(kind: str) -> Rule:
    def rule(x: list, a: dict) -> Tensor:
        data, axes = x[0], _axes(x, a)
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return data
            axes = list(range(data.dim()))
        dims, keep = tuple(ax % data.dim() for ax in axes), bool(a.get("keepdims", 1))
        if kind == "mean":
            return data.mean(dims, keepdim=keep)
        if kind == "sum":
            return data.sum(dims, keepdim=keep)
        return (data.amax if kind == "max" else data.amin)(dims, keepdim=keep)
    return rule


def _aligned(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` and ``y`` on one device: a host operand (shape arithmetic, integer constants)
    joins the other's device when they differ."""
    if x.device == y.device:
        return x, y
    return (x.to(y.device), y) if x.device.type == "cpu" else (x, y.to(x.device))


def _unary(fn: Callable[[Tensor], Tensor]) -> Rule:
    return lambda x, a: fn(x[0])


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Rule:
    return lambda x, a: fn(*_aligned(x[0], x[1]))


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> Rule:
    def rule(x: list, a: dict) -> Tensor:
        out = x[0]
        for t in x[1:]:
            out = fn(*_aligned(out, t))
        return out
    return rule


RULES: dict[str, Rule] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "BatchNormalization": _batch_norm,
    "InstanceNormalization": lambda x, a: F.instance_norm(x[0], weight=x[1], bias=x[2],
                                                          eps=a.get("epsilon", 1e-5)),
    "LayerNormalization": _layer_norm,
    "MaxPool": _max_pool, "AveragePool": _avg_pool,
    "GlobalAveragePool": lambda x, a: x[0].mean(tuple(range(2, x[0].dim())), keepdim=True),
    "GlobalMaxPool": lambda x, a: x[0].amax(tuple(range(2, x[0].dim())), keepdim=True),
    "Relu": _unary(torch.relu), "Sigmoid": _unary(torch.sigmoid), "Tanh": _unary(torch.tanh),
    "Erf": _unary(torch.erf), "Sqrt": _unary(torch.sqrt), "Exp": _unary(torch.exp),
    "Log": _unary(torch.log), "Neg": _unary(torch.neg), "Abs": _unary(torch.abs),
    "Reciprocal": _unary(torch.reciprocal), "Softplus": _unary(F.softplus),
    "HardSwish": _unary(F.hardswish), "Identity": _unary(lambda t: t),
    "Dropout": _unary(lambda t: t),
    "LeakyRelu": lambda x, a: F.leaky_relu(x[0], a.get("alpha", 0.01)),
    "Elu": lambda x, a: F.elu(x[0], a.get("alpha", 1.0)),
    "HardSigmoid": lambda x, a: torch.clamp(a.get("alpha", 0.2) * x[0] + a.get("beta", 0.5), 0.0, 1.0),
    "PRelu": lambda x, a: torch.where(x[0] >= 0, x[0], x[0] * x[1]),
    "Clip": _clip,
    "Add": _binary(torch.add), "Sub": _binary(torch.sub), "Mul": _binary(torch.mul), "Div": _div,
    "Pow": _binary(torch.pow), "Max": _variadic(torch.maximum), "Min": _variadic(torch.minimum),
    "Sum": _variadic(torch.add),
    "MatMul": _binary(torch.matmul), "Gemm": _gemm,
    "Softmax": _softmax(False), "LogSoftmax": _softmax(True),
    "ReduceMean": _reduce("mean"), "ReduceSum": _reduce("sum"), "ReduceMax": _reduce("max"),
    "ReduceMin": _reduce("min"),
    "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Concat": lambda x, a: torch.cat([_aligned(t, x[-1])[0] for t in x], a["axis"]),
    "Split": _split, "Slice": _slice, "Gather": _gather, "Shape": _shape, "Constant": _constant,
    "Cast": _cast, "Pad": _pad, "Resize": _resize, "Upsample": _resize,
}
MULTI_OUTPUT = {"Split"}
