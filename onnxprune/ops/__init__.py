"""One spec per op family: channel rule, index maps, weight layout, MACs, linear map.

Importing this package registers every spec (one module per family). Look a node up with
:func:`spec_for` (``None``: no spec, the node freezes every channel it touches). To add an op:
one spec + tests/ops/test_<family>.py -- an :class:`OpSpec` subclass in a module here
(``op_types``, ``domain`` for a non-ONNX op, opset range of that domain, ``rule``; for a
weight-bearing op subclass :class:`LinearSpec` and give its ``layout``; ``trainable_inputs`` for
inputs distill may tune besides a linear weight and bias), imported below; for distillation its
torch rule in the module of :mod:`onnxprune.torchexec` named like this one (``register`` with the
same domain and opset range; tests/test_torchexec.py checks every rule has a spec); and in
``tests/ops/test_<family>.py``, named after that module, a test running ``prunecheck.prove`` on a
small model using the op.
"""

from __future__ import annotations

from . import (  # noqa: F401 -- importing registers the specs
    broadcast,
    concat,
    conv,
    conv_transpose,
    elementwise,
    fused,
    gather,
    gemm,
    matmul,
    normalization,
    pad,
    reduce,
    reshape,
    resize,
    shape,
    slicing,
    softmax,
    split,
    transpose,
)
from .base import (
    MS_DOMAIN,
    ChannelSpace,
    Edit,
    EditContext,
    Opsets,
    OpSpec,
    RuleGraph,
    WeightLayout,
    attr,
    freeze_inputs,
    opset_version,
    opset_versions,
)
from .kinds import is_constant, is_foldable, quantized_ops
from .linear import LinearSpec
from .registry import LATEST_OPSETS, REGISTRY, Registry, linear_spec, register, spec_for

__all__ = [
    "LATEST_OPSETS", "MS_DOMAIN", "REGISTRY", "ChannelSpace", "Edit", "EditContext", "LinearSpec",
    "OpSpec", "Opsets", "Registry", "RuleGraph", "WeightLayout", "attr", "freeze_inputs",
    "is_constant", "is_foldable", "linear_spec", "opset_version", "opset_versions",
    "quantized_ops", "register", "spec_for",
]
