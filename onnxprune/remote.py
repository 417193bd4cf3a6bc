"""Measure on the machines the model will run on: a latency source backed by Ray actors.

:class:`RaySource` starts one warm actor per device: each actor asks for ``resources`` (e.g.
``{"GPU": 1}`` or ``{"edge_box": 1}``), so Ray places it on a node that has them, and there are
as many actors as the cluster has such units (or ``actors``). An actor wraps a
:class:`~onnxprune.backends.Local` source and runs one call at a time, so two timings never
share a device; the optimiser process only builds models, sends them as bytes and stores what
comes back in its own profile cache. The onnxprune package travels with the actors
(``py_modules``), so remote nodes need only the runtimes.

Failure: a call that does not return within ``timeout_s`` kills its actor and raises one
OnnxPruneError; an actor that dies is restarted and its call retried once by Ray, then the error
is reported. Nothing waits without a timeout.
"""

from __future__ import annotations

import os
import queue
import socket
from typing import Any

from . import backends, bench
from .errors import OnnxPruneError


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise OnnxPruneError("--ray needs the ray package (pip install 'onnxprune[ray]')") from exc
    return ray


class _Actor:
    """Runs a wrapped local source's methods on the node Ray placed it on."""

    def __init__(self, source: backends.Local):
        self.source = source

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.source, method)(*args)


def _request(resources: dict[str, float]) -> dict[str, Any]:
    """Ray actor options asking for ``resources`` (CPU and GPU have their own keywords)."""
    custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU")}
    return {"num_cpus": resources.get("CPU", 0), "num_gpus": resources.get("GPU", 0),
            "resources": custom}


class RaySource:
    """A latency source whose timings run in Ray actors (see the module docstring).

    ``address``: ``auto`` (a running cluster, or a new local Ray instance) or a cluster address;
    ignored when Ray is already initialised in this process (then the caller's ``runtime_env``
    must make this onnxprune importable on the nodes). ``resources``: what one actor (one
    device) asks for; default one CPU per inference thread."""

    def __init__(self, local: backends.Local, address: str = "auto",
                 resources: dict[str, float] | None = None, actors: int | None = None,
                 timeout_s: float = 600.0, start_timeout_s: float = 120.0):
        ray = _ray()
        self.timeout_s = timeout_s
        self.resources = resources or {"CPU": float(local.config.threads)}
        self._started = not ray.is_initialized()
        if self._started:
            package = os.path.dirname(os.path.abspath(__file__))
            _check_reachable(address, start_timeout_s)
            try:
                ray.init(address=None if address == "auto" else address, include_dashboard=False,
                         log_to_driver=False, runtime_env={"py_modules": [package]})
            except Exception as exc:
                raise OnnxPruneError(f"cannot start or reach Ray at {address}: {_last_line(exc)}") from exc
        total = ray.cluster_resources()
        fits = min(int(total.get(k, 0) // v) for k, v in self.resources.items() if v > 0)
        if fits < 1:
            self.close()
            raise OnnxPruneError(f"no Ray node offers {self.resources} (cluster: {total})")
        self.workers = min(fits, actors) if actors else fits
        cls = ray.remote(max_restarts=1, max_task_retries=1)(_Actor)
        self._actors = [cls.options(**_request(self.resources)).remote(local)
                        for _ in range(self.workers)]
        self._free: queue.Queue = queue.Queue()
        for actor in self._actors:
            self._free.put(actor)
        try:
            keys = set(ray.get([a.call.remote("key") for a in self._actors], timeout=start_timeout_s))
        except Exception as exc:
            self.close()
            raise OnnxPruneError(f"Ray actors asking for {self.resources} did not start within "
                                 f"{start_timeout_s:.0f} s: {_last_line(exc)}") from exc
        if len(keys) != 1:
            self.close()
            raise OnnxPruneError(f"Ray actors measure on different devices: {sorted(keys)}")
        self._key = keys.pop()

    def key(self) -> str:
        return self._key

    def _call(self, method: str, *args: Any) -> Any:
        """Run ``method`` on a free actor (one call per actor at a time), within the timeout."""
        ray = _ray()
        what = "layer" if method == "layers" else method  # a batch of layers is a layer timing
        try:
            actor = self._free.get(timeout=self.timeout_s)
        except queue.Empty as exc:
            raise OnnxPruneError(f"no Ray actor was free for {self.timeout_s:.0f} s") from exc
        try:
            return ray.get(actor.call.remote(method, *args), timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError as exc:
            ray.kill(actor, no_restart=False)  # Ray restarts it for the next call
            raise OnnxPruneError(f"Ray actor gave no {what} timing within {self.timeout_s:.0f} s "
                                 "(killed; see --ray-timeout)") from exc
        except ray.exceptions.RayError as exc:
            raise OnnxPruneError(f"Ray actor failed during {what}: {_last_line(exc)}") from exc
        finally:
            self._free.put(actor)

    def layer(self, model: bytes, feeds: backends.Feeds, count: int) -> float:
        return self._call("layer", model, feeds, count)

    def layers(self, items: list[tuple[bytes, backends.Feeds]], count: int = 1) -> list[float]:
        """A layer batch, timed together on one actor."""
        return self._call("layers", items, count)

    def measure(self, model: bytes, feeds: backends.Feeds, rounds: int = 30,
                warmup: int = 5) -> bench.Timing:
        return self._call("measure", model, feeds, rounds, warmup)

    def compare(self, a: bytes, b: bytes, feeds: backends.Feeds, rounds: int = 30,
                warmup: int = 5) -> bench.Comparison:
        return self._call("compare", a, b, feeds, rounds, warmup)

    def close(self) -> None:
        """Stop the actors, and Ray itself when this source started it."""
        ray = _ray()
        for actor in getattr(self, "_actors", []):
            ray.kill(actor)
        self._actors = []
        if self._started and ray.is_initialized():
            ray.shutdown()


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast on a ``[ray://]HOST:PORT`` nobody listens on (Ray itself retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout_s, 10.0)).close()
    except OSError as exc:
        raise OnnxPruneError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from exc


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
