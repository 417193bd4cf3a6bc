"""The registry: (domain, op type) and opset -> the spec describing that op at that opset.

Like onnxslim's pattern registry, each spec declares the opset range ``[min_opset, max_opset]``
it is written for; an op whose semantics changed across opsets (Split's sizes moving from an
attribute to an input, Softmax's axis semantics, Slice's bounds becoming inputs) has one spec
per range. Ranges of one op type may not overlap. A spec also names its ``domain`` (``""``,
the default ONNX domain, or ``com.microsoft`` for onnxruntime's contrib ops); its range is
checked against the version the model imports for that domain (:data:`Opsets`).
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from .base import MS_DOMAIN, Opsets, OpSpec, domain_of
from .linear import LinearSpec


class Registry:
    """Specs by domain and op type, each valid over an opset range of its domain."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], list[OpSpec]] = {}

    def register(self, cls: type[OpSpec]) -> type[OpSpec]:
        """Register one instance of ``cls`` for each of its ``op_types`` (a class decorator)."""
        spec = cls()
        for op in cls.op_types:
            key = (domain_of(cls.domain), op)
            for other in self._specs.get(key, []):
                if _overlap(spec, other):
                    raise ValueError(f"{cls.__name__} and {type(other).__name__} both describe "
                                     f"{op} at some opset")
            self._specs.setdefault(key, []).append(spec)
        return cls

    def lookup(self, op_type: str, opset: int, domain: str = "") -> OpSpec | None:
        """The spec for ``op_type`` of ``domain`` at version ``opset`` of that domain, or None
        (the op freezes what it touches)."""
        for spec in self._specs.get((domain_of(domain), op_type), []):
            if spec.min_opset <= opset and (spec.max_opset is None or opset <= spec.max_opset):
                return spec
        return None


def _overlap(a: OpSpec, b: OpSpec) -> bool:
    a_max = a.max_opset if a.max_opset is not None else 10**9
    b_max = b.max_opset if b.max_opset is not None else 10**9
    return a.min_opset <= b_max and b.min_opset <= a_max


LATEST_OPSETS: Opsets = {"": onnx.defs.onnx_opset_version(), MS_DOMAIN: 1}
REGISTRY = Registry()
register = REGISTRY.register


def spec_for(node: onnx.NodeProto, opsets: Mapping[str, int]) -> OpSpec | None:
    """The registered spec for ``node`` in a model importing ``opsets`` (domain -> version, see
    :func:`onnxprune.ops.opset_versions`); None when the model does not import its domain."""
    domain = domain_of(node.domain)
    if domain not in opsets:
        return None
    return REGISTRY.lookup(node.op_type, opsets[domain], domain)


def linear_spec(node: onnx.NodeProto, opsets: Mapping[str, int]) -> LinearSpec | None:
    """The node's spec when it is a weight-bearing (linear) op, else None."""
    spec = spec_for(node, opsets)
    return spec if isinstance(spec, LinearSpec) else None
