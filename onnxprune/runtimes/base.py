"""The runtime registry's parts: :class:`RuntimeConfig` (how the deployment session runs a
model), :class:`Family` (what one runtime family declares) and :class:`BaseRunner` (a model
built with its feeds bound, timed by the measuring seam, :mod:`onnxprune.backends`).

Invariant: everything that differs between runtimes is answered by the family registered under
``RuntimeConfig.runtime`` (:func:`family`); no other module compares runtime or provider names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..errors import OnnxPruneError

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class RuntimeConfig:
    """How a model is run: mirrors the deployment session.

    ``runtime``: the family's name (:func:`names`): ``ort`` (onnxruntime; ``provider`` is an
    alias of its provider table or any execution provider's full name, registered from
    ``ep_library`` for plugin EPs) or ``openvino`` (OpenVINO's own runtime on ``device``, e.g.
    CPU or GPU). ``device`` is the device id for onnxruntime's device providers. ``fp16``: half
    precision where the family takes it."""

    provider: str = "cpu"
    threads: int = 1
    opt_level: str = "all"
    provider_options: dict = field(default_factory=dict)
    runtime: str = "ort"
    device: str = ""
    fp16: bool = False
    ep_library: str = ""

    def options(self) -> dict[str, str]:
        """The user's provider options with the family's conventions filled in (recorded in
        :meth:`key`)."""
        return family(self).options(self)

    def key(self) -> str:
        """A stable string naming this configuration (used in cache keys)."""
        return family(self).key(self)


class BaseRunner:
    """A built model with its inputs bound; subclasses define one inference (:meth:`run_once`).

    ``clock``: wall time, or the calling thread's CPU time where the whole inference runs on
    that thread (onnxruntime's CPU provider with one thread): the same figure on a quiet
    machine, but other processes taking the cores (a shared, busy machine) no longer add to
    it (measured on a 2-core machine at load 15: a conv staircase's spread over repeats
    1.04-1.12x instead of 1.2-3.5x of wall time)."""

    clock = staticmethod(time.perf_counter)

    def run_once(self) -> None:
        raise NotImplementedError

    def time_once(self, repeat: int = 1) -> float:
        """Run ``repeat`` times; milliseconds per run."""
        start = self.clock()
        for _ in range(repeat):
            self.run_once()
        return (self.clock() - start) * 1e3 / repeat

    def calibrate(self, budget_ms: float = 10.0) -> int:
        """Runs per round so that one round lasts about ``budget_ms`` (at least 1)."""
        self.time_once()
        one = min(self.time_once() for _ in range(3))
        return max(1, int(budget_ms / max(one, 1e-3)))


class Family:
    """One runtime family, registered by name (:func:`register`). A subclass declares what
    differs between runtimes; the defaults are those of a host-CPU runtime without options."""

    name = ""
    help = ""  # how ``--runtime`` describes it
    device_help = ""  # what ``--device`` names on this family ("" = it takes none)
    fp16_help = ""  # the option that gives this family half precision ("" = none does)
    options_help = ""  # whose options ``--provider-option`` sets on this family

    def check(self, config: RuntimeConfig) -> None:
        """Refuse, in one line, a configuration this family cannot take (--fp16, --device)."""

    def available(self, config: RuntimeConfig) -> None:
        """Refuse, in one line, a configuration that cannot run here (package or provider
        missing); cheap, called before any work."""

    def options(self, config: RuntimeConfig) -> dict[str, str]:
        """Provider options with this family's conventions filled in."""
        return {k: str(v) for k, v in config.provider_options.items()}

    def key(self, config: RuntimeConfig) -> str:
        """The configuration's cache-key string (stable: profile caches are keyed by it)."""
        raise NotImplementedError

    def _key(self, config: RuntimeConfig, where: str, setting: str) -> str:
        """``NAME:WHERE[options]/tTHREADS/SETTING[/fp16]``: the form every family's key takes."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options(config).items()))
        fp16 = "/fp16" if config.fp16 else ""
        return f"{self.name}:{where}[{opts}]/t{config.threads}/{setting}{fp16}"

    def runner(self, model: onnx.ModelProto | bytes | str, feeds: Feeds,
               config: RuntimeConfig) -> BaseRunner:
        """``model`` (proto, serialized bytes or path) built for ``config``, ``feeds`` bound."""
        raise NotImplementedError

    def device(self, config: RuntimeConfig) -> str | None:
        """What the cache key calls the device; None for the host CPU (named by its model)."""
        return None

    def version(self, config: RuntimeConfig) -> str:
        """The runtime and its version, e.g. ``ort1.20.1``."""
        raise NotImplementedError

    def sweep_options(self, config: RuntimeConfig) -> dict[str, str]:
        """Options that make a layer sweep cheap (a quick algorithm search on device
        providers; the deployment setting confirms the chosen edges); none by default."""
        return {}


_FAMILIES: dict[str, Family] = {}


def register(fam: Family) -> Family:
    """Add ``fam`` under its name (a second family of one name is refused)."""
    if fam.name in _FAMILIES:
        raise ValueError(f"runtime {fam.name!r} registered twice")
    _FAMILIES[fam.name] = fam
    return fam


def families() -> tuple[Family, ...]:
    """The registered families, in registration order."""
    return tuple(_FAMILIES.values())


def phrases(field: str, sep: str = " or ") -> str:
    """The registered families' ``field`` help phrases (those they declare), joined by ``sep``."""
    return sep.join(getattr(f, field) for f in families() if getattr(f, field))


def names() -> tuple[str, ...]:
    """The registered runtime names, in registration order (``--runtime`` choices)."""
    return tuple(_FAMILIES)


def family(config: RuntimeConfig) -> Family:
    """The family that runs ``config``; one line for an unknown runtime."""
    fam = _FAMILIES.get(config.runtime)
    if fam is None:
        raise OnnxPruneError(f"unknown runtime {config.runtime!r}; use one of {', '.join(names())}")
    return fam
