"""The executor: runs a whole graph with the registered torch rules; which initializers it may
train (:func:`trainable_names`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from ..inputs import graph_inputs
from ..ops import LinearSpec, opset_versions, spec_for
from .conv import conv_bn
from .registry import TorchRule, UnsupportedOp, rule_for
from .tensors import Tensor


def trainable_names(model: onnx.ModelProto) -> list[str]:
    """Float initializers the executor may train, in initializer order: for every node it has a
    rule for, the weight (input 1) and bias of a :class:`~onnxprune.ops.LinearSpec` op and the
    inputs its spec lists in ``trainable_inputs`` (Gemm's and MatMul's input 0, a
    normalisation's scale and bias); plus the constant operand of an ``Add`` fed by a
    ``MatMul`` (a linear layer's bias)."""
    opsets = opset_versions(model)
    inits = {i.name: i for i in model.graph.initializer}
    floats = {n for n, i in inits.items() if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)}
    matmul_out = {n.output[0] for n in model.graph.node if n.op_type == "MatMul"}
    chosen: set[str] = set()
    for node in model.graph.node:
        spec = spec_for(node, opsets) if rule_for(node, opsets) else None
        slots = list(spec.trainable_inputs) if spec is not None else []
        names = [node.input[k] for k in slots if k < len(node.input)]
        if isinstance(spec, LinearSpec):
            names += [node.input[1], spec.bias_name(node) or ""]
        if node.op_type == "Add" and any(i in matmul_out for i in node.input):
            names += node.input[:2]
        chosen.update(n for n in names if n in floats)
    return [n for n in inits if n in chosen]


class Executor(torch.nn.Module):
    """Runs ``model`` with torch ops; ``forward(feeds)`` returns the graph outputs and the
    intermediate tensors named in ``taps`` (fixed when it is built).

    Built once into a flat list of steps over a register file (list slots, no per-node name
    lookups); a value is dropped after its last reader unless it is returned. A
    Conv whose output only feeds an inference-mode BatchNormalization runs as one convolution
    with the BN folded into its weight and bias at every call (the same math, gradients reach
    the Conv weight and bias and the BN scale and bias as before). ``channels_last``: 4-D float
    feeds are laid out channels-last (faster convolutions on some CPUs and GPUs; the values
    are the same). :meth:`place` moves the executor to a device: float tensors go there, integer
    and 0-d constants (shapes, axes, scalars) stay on the host, where reading them is free."""

    def __init__(self, model: onnx.ModelProto, trainable: Sequence[str] = (),
                 taps: Sequence[str] = (), channels_last: bool = False):
        super().__init__()
        self.inputs = [i.name for i in graph_inputs(model)]
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
        opsets = opset_versions(model)
        rules = [rule_for(node, opsets) for node in nodes]
        for node, rule in zip(nodes, rules):
            if rule is None:
                raise UnsupportedOp(node.op_type)
        folded = _conv_bn_pairs(nodes, {*self.outputs, *self.taps})
        steps, known = _plan(nodes, rules, folded, slot, set(slots))
        for name in [*self.outputs, *self.taps]:
            if name not in known:
                raise ValueError(f"tensor {name!r} is not computed by a supported rule (or was folded)")
        self._results = [(n, slots[n]) for n in [*self.outputs, *self.taps]]
        self._steps = _with_drops(steps, {s for _, s in self._results})
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


Step = tuple[Callable, list[int], list[int]]  # (rule with its attributes, input slots, output slots)


def _plan(nodes: list[onnx.NodeProto], rules: list[TorchRule], folded: dict[int, int],
          slot: Callable[[str], int], known: set[str]) -> tuple[list[Step], set[str]]:
    """One step per node in graph order (a folded Conv + BatchNormalization pair as one), and
    every tensor name known after them (``known``: the initializers and graph inputs)."""
    steps: list[Step] = []
    for k, (node, rule) in enumerate(zip(nodes, rules)):
        if k in folded.values():
            continue
        attrs = {a.name: _attr(a) for a in node.attribute}
        attrs["_outputs"] = len(node.output)
        fn, ins, made = rule.fn, list(node.input), list(node.output)
        made = made if rule.multi_output else made[:1]
        if k in folded:  # Conv + BatchNormalization as one op
            bn = nodes[folded[k]]
            ins = [*ins, *[""] * (3 - len(ins)), *bn.input[1:5]]
            attrs["_epsilon"] = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
            fn, made = conv_bn, [bn.output[0]]
        for name in ins:
            if name and name not in known:
                raise ValueError(f"{node.op_type} {node.name!r}: input {name!r} is not computed "
                                 "before it (graph not topologically sorted, or an optional output)")
        known.update(o for o in made if o)
        steps.append((functools.partial(fn, a=attrs), [slot(n) if n else -1 for n in ins],
                      [slot(o) if o else -1 for o in made]))
    return steps, known


def _with_drops(steps: list[Step], returned: set[int]) -> list[tuple[Callable, list[int], list[int], list[int]]]:
    """``steps`` with, for each, the computed slots to clear after it (their last reader), none
    of them ``returned``."""
    last: dict[int, int] = {}  # computed value -> the last step that reads it
    for k, (_, ins, _) in enumerate(steps):
        last.update((s, k) for s in ins if s >= 0)
    computed = {s for _, _, outs in steps for s in outs}
    dead: dict[int, list[int]] = {}
    for s, k in last.items():
        if s in computed and s not in returned:
            dead.setdefault(k, []).append(s)
    return [(fn, ins, outs, dead.get(k, [])) for k, (fn, ins, outs) in enumerate(steps)]


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
