"""The registry: (domain, op type) and opset -> the spec describing that op at that opset.

Like onnxslim's pattern registry, each spec declares the opset range ``[min_opset, max_opset]``
it is written for; an op whose semantics changed across opsets (Split's sizes moving from an
attribute to an input, Softmax's axis semantics, Slice's bounds becoming inputs) has one spec
per range. Ranges of one op type may not overlap. A spec also names its ``domain`` (``""``,
the default ONNX domain, or ``com.microsoft`` for onnxruntime's contrib ops); its range is
checked against the version the model imports for that domain (:data:`Opsets`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

import onnx

from .base import MS_DOMAIN, Opsets, OpSpec, domain_of
from .linear import LinearSpec

T = TypeVar("T")


class OpsetTable(Generic[T]):
    """Entries by (domain, op type), each valid over an opset range ``[low, high]`` of its
    domain (``high`` None: no upper bound); ranges of one op type may not overlap. The op specs
    (:class:`Registry`) and the torch rules (:mod:`onnxprune.torchexec.registry`) are two such
    tables."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], list[tuple[int, int | None, T]]] = {}

    def add(self, domain: str, op: str, low: int, high: int | None, entry: T,
            clash: Callable[[T], str]) -> None:
        """Add ``entry``; an overlap with an entry already there raises ``ValueError(clash(it))``."""
        key = (domain_of(domain), op)
        for other_low, other_high, other in self._entries.get(key, []):
            if low <= _top(other_high) and other_low <= _top(high):
                raise ValueError(clash(other))
        self._entries.setdefault(key, []).append((low, high, entry))

    def lookup(self, op_type: str, opset: int, domain: str = "") -> T | None:
        """The entry for ``op_type`` of ``domain`` at version ``opset`` of that domain, or None."""
        for low, high, entry in self._entries.get((domain_of(domain), op_type), []):
            if low <= opset <= _top(high):
                return entry
        return None

    def __iter__(self) -> Iterator[T]:
        return (entry for entries in self._entries.values() for _, _, entry in entries)


def _top(high: int | None) -> int:
    return high if high is not None else 10**9


class Registry(OpsetTable[OpSpec]):
    """Op specs by domain and op type, each valid over an opset range of its domain."""

    def register(self, cls: type[OpSpec]) -> type[OpSpec]:
        """Register one instance of ``cls`` for each of its ``op_types`` (a class decorator)."""
        spec = cls()
        for op in cls.op_types:
            self.add(cls.domain, op, spec.min_opset, spec.max_opset, spec,
                     lambda other, op=op: f"{cls.__name__} and {type(other).__name__} both "
                                          f"describe {op} at some opset")
        return cls


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
