"""A differentiable PyTorch executor for (constant-folded) ONNX graphs, used by :mod:`onnxprune.distill`.

This package imports torch at module level; only :mod:`onnxprune.distill` imports it, inside a
function, after checking that torch is installed (torch is the optional ``onnxprune[torch]``
extra).

Layout: one module per op family, named like the :mod:`onnxprune.ops` module of that family
(``conv``, ``normalization``, ``elementwise`` ...), registers its torch rules in
:mod:`.registry` by domain, op type and opset range; :mod:`.tensors` holds the helpers they
share; :mod:`.executor` runs a graph with them. Importing the package registers every rule. To
add an op: its spec under :mod:`onnxprune.ops` first, then its rule in the module here named
like the spec's (``@register("Op", min_opset=..)``), and a test.

Invariants:

* the graph is executed in its stored (topological) order with the rule registered for each
  node's domain, op type and the model's opset of that domain (a Conv whose output only feeds
  an inference-mode BatchNormalization runs as one fused op with the same math); the ONNX graph
  is never changed, only initializer values can be trained;
* every initializer becomes a tensor of its own dtype: the ones named in ``trainable`` are
  ``torch.nn.Parameter`` objects (float only), all others are constant tensors; which ones
  distill trains follows the op specs (:func:`trainable_names`);
* shapes, axes, pads and other integer arguments are read from constant tensors at run time,
  so ``Shape`` -> ``Gather`` -> ``Reshape`` chains work without constant folding; integer and
  0-d constants stay on the host whatever the device (reading them never waits for a GPU);
* an op without a rule at the model's opset raises :class:`UnsupportedOp` (a ``ValueError``
  naming the op) when the executor is built, before anything runs; unsupported attributes
  raise ``ValueError``.
"""

from __future__ import annotations

import importlib
import pkgutil

from .executor import Executor, trainable_names
from .registry import REGISTRY, TorchRule, UnsupportedOp, register, rule_for

# Importing every family module registers its rules (a new family module needs no entry here).
for _family in pkgutil.iter_modules(__path__):
    if _family.name not in ("executor", "registry", "tensors"):
        importlib.import_module(f".{_family.name}", __name__)

__all__ = ["REGISTRY", "Executor", "TorchRule", "UnsupportedOp", "register", "rule_for",
           "trainable_names"]
