"""The torch rules by (domain, op type) and opset range, registered like the op specs
(:mod:`onnxprune.ops.registry`).

A rule is ``fn(inputs, attrs) -> Tensor | list[Tensor]``: ``inputs`` are the node's input tensors
in order (None for an absent optional input), ``attrs`` its attributes by name plus ``_outputs``
(how many outputs the node names). Each registration names the op's ``domain`` (``""``: the
default ONNX domain), the opset range ``[min_opset, max_opset]`` of that domain it is written
for, and whether the rule returns every output of the node (``multi_output``) or only output 0.
Ranges of one op may not overlap; an op whose semantics changed across opsets (Softmax's axis,
Resize's inputs) has one rule per range, so no rule reads the opset. Every registered op also
has an op spec at the same domain and opsets (tests/test_torchexec.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import onnx

from ..ops.base import domain_of
from ..ops.registry import OpsetTable
from .tensors import Rule


class UnsupportedOp(ValueError):
    """The graph holds an op the executor has no torch rule for (at the model's opset)."""

    def __init__(self, op: str):
        super().__init__(f"no torch rule for {op}")
        self.op = op


@dataclass(frozen=True)
class TorchRule:
    """One registration: ``fn`` runs ``op_type`` of ``domain`` at opsets ``[min_opset,
    max_opset]`` (None: no upper bound) of that domain."""

    fn: Rule
    op_type: str
    domain: str = ""
    min_opset: int = 1
    max_opset: int | None = None
    multi_output: bool = False


class Registry(OpsetTable[TorchRule]):
    """Torch rules by domain and op type, each valid over an opset range of its domain."""

    def register(self, *op_types: str, domain: str = "", min_opset: int = 1,
                 max_opset: int | None = None, multi_output: bool = False) -> Callable[[Rule], Rule]:
        """A decorator registering a rule function for each of ``op_types``."""
        def add(fn: Rule) -> Rule:
            for op in op_types:
                rule = TorchRule(fn, op, domain_of(domain), min_opset, max_opset, multi_output)
                self.add(rule.domain, op, min_opset, max_opset, rule,
                         lambda other, op=op: f"two torch rules for {op} at some opset")
            return fn
        return add


REGISTRY = Registry()
register = REGISTRY.register


def rule_for(node: onnx.NodeProto, opsets: Mapping[str, int]) -> TorchRule | None:
    """The rule for ``node`` in a model importing ``opsets`` (see
    :func:`onnxprune.ops.opset_versions`); None when the model does not import its domain."""
    domain = domain_of(node.domain)
    return REGISTRY.lookup(node.op_type, opsets[domain], domain) if domain in opsets else None
