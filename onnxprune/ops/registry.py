"""The registry: op type and opset -> the spec describing that op at that opset.

Like onnxslim's pattern registry, each spec declares the opset range ``[min_opset, max_opset]``
it is written for; an op whose semantics changed across opsets (Split's sizes moving from an
attribute to an input, Softmax's axis semantics, Slice's bounds becoming inputs) has one spec
per range. Ranges of one op type may not overlap.
"""

from __future__ import annotations

import onnx

from .base import OpSpec
from .linear import LinearSpec


class Registry:
    """Specs by op type (default ONNX domain), each valid over an opset range."""

    def __init__(self) -> None:
        self._specs: dict[str, list[OpSpec]] = {}

    def register(self, cls: type[OpSpec]) -> type[OpSpec]:
        """Register one instance of ``cls`` for each of its ``op_types`` (a class decorator)."""
        spec = cls()
        for op in cls.op_types:
            for other in self._specs.get(op, []):
                if _overlap(spec, other):
                    raise ValueError(f"{cls.__name__} and {type(other).__name__} both describe "
                                     f"{op} at some opset")
            self._specs.setdefault(op, []).append(spec)
        return cls

    def lookup(self, op_type: str, opset: int, domain: str = "") -> OpSpec | None:
        """The spec for ``op_type`` at ``opset``, or None (the op freezes what it touches)."""
        if domain not in ("", "ai.onnx"):
            return None
        for spec in self._specs.get(op_type, []):
            if spec.min_opset <= opset and (spec.max_opset is None or opset <= spec.max_opset):
                return spec
        return None


def _overlap(a: OpSpec, b: OpSpec) -> bool:
    a_max = a.max_opset if a.max_opset is not None else 10**9
    b_max = b.max_opset if b.max_opset is not None else 10**9
    return a.min_opset <= b_max and b.min_opset <= a_max


LATEST_OPSET = onnx.defs.onnx_opset_version()
REGISTRY = Registry()
register = REGISTRY.register


def spec_for(node: onnx.NodeProto, opset: int) -> OpSpec | None:
    """The registered spec for ``node`` in a model importing ``opset`` of the default domain."""
    return REGISTRY.lookup(node.op_type, opset, node.domain)


def linear_spec(node: onnx.NodeProto, opset: int) -> LinearSpec | None:
    """The node's spec when it is a weight-bearing (linear) op, else None."""
    spec = spec_for(node, opset)
    return spec if isinstance(spec, LinearSpec) else None
