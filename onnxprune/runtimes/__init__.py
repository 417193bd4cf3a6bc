"""Runtimes registered like the op specs: one module per runtime family (:mod:`.ort`:
onnxruntime's execution providers; :mod:`.openvino`: OpenVINO's own runtime), each a
:class:`Family` registered by name. Measuring on other machines (Ray actors) is a latency
source, :mod:`onnxprune.remote`, over any family.

Adding a runtime is one module here (a :class:`Family` subclass), one ``register`` line below
and one test; nothing else names runtimes.
"""

from __future__ import annotations

import platform

import onnx

from . import openvino, ort
from .base import (
    BaseRunner,
    Family,
    Feeds,
    RuntimeConfig,
    families,
    family,
    names,
    phrases,
    register,
)
from .ort import OPT_LEVELS, PROVIDERS, session

# registration order is the order ``--runtime`` lists them in: the default first
register(ort.Ort())
register(openvino.OpenVino())

__all__ = [
    "OPT_LEVELS",
    "PROVIDERS",
    "BaseRunner",
    "Family",
    "RuntimeConfig",
    "check_available",
    "check_request",
    "device_name",
    "families",
    "family",
    "names",
    "phrases",
    "register",
    "runner",
    "session",
    "version",
]


def check_request(config: RuntimeConfig) -> None:
    """One line for options ``config``'s family cannot take (--fp16, --device)."""
    family(config).check(config)


def check_available(config: RuntimeConfig) -> None:
    """One line when ``config`` cannot run here (its package or provider missing)."""
    family(config).available(config)


def runner(model: onnx.ModelProto | bytes | str, feeds: Feeds,
           config: RuntimeConfig | None = None) -> BaseRunner:
    """A runner for ``model`` (proto, serialized bytes or path) on ``config``'s runtime."""
    config = config or RuntimeConfig()
    return family(config).runner(model, feeds, config)


def device_name(config: RuntimeConfig) -> str:
    """What the cache key calls the machine: the family's device, or the host CPU's model."""
    named = family(config).device(config)
    if named is not None:
        return named
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(config: RuntimeConfig) -> str:
    """The runtime and its version, e.g. ``ort1.20.1`` or ``openvino2025.1.0``."""
    return family(config).version(config)
