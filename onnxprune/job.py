"""One typed job: what a run was asked, grouped by concern, declared once.

* :class:`Target` -- how much to prune, in the user's form (a latency in ms, a speedup, a
  ratio, or none: ``--max-drop`` alone), answering both forms against a measured baseline;
* :class:`Goal` -- the target and what bounds it (``max_drop``, ``floor``, ``exclude``, ...);
* :class:`Data` -- calibration and validation inputs, how files become inputs, ``--shape``;
* :class:`SearchSettings` -- the search method, progressive stages, the profile cache;
* :class:`Recovery` -- the recovery steps and the distill time budget;
* :class:`Deployment` -- where and how models are timed (a runtime configuration, here or in
  Ray actors; ``precision``);
* :class:`Job` -- all of them for one model; :meth:`Job.of` maps the keyword names of
  :func:`onnxprune.prune` onto the fields and :meth:`Job.validate` (prune) /
  :meth:`Job.validate_frontier` hold every check of what was asked, one line each, before
  any work is done.

A field that is a command-line option carries it in its metadata (``flag``, ``help``): one
option per field (checked by ``tests/test_job.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import onnx

from . import backends, load, recover, runtimes
from .errors import OnnxPruneError
from .output import check_output_dir, check_output_path
from .quantize import MODEL_PRECISIONS, PRECISIONS
from .sources import Options as DataOptions


def _opt(default: Any, flag: str, help: str) -> Any:
    """A field that is the command-line option ``flag`` (its help text, for one declaration)."""
    kind = "default_factory" if callable(default) else "default"
    return field(**{kind: default}, metadata={"flag": flag, "help": help})


@dataclass(frozen=True)
class Target:
    """How much to prune, as the user said it: ``target_ms`` (a latency), ``target_speedup``
    or ``ratio`` (baseline mode); none of them: the fastest model within ``--max-drop``."""

    target_ms: float | None = _opt(None, "--target-ms", "latency target in milliseconds")
    target_speedup: float | None = _opt(None, "--speedup", "target = measured baseline / SPEEDUP")
    ratio: float | None = _opt(None, "--ratio", "remove this share of every group (baseline mode)")

    @property
    def form(self) -> str:
        """``ms``, ``speedup``, ``ratio`` or ``drop`` (no target: the fastest within max_drop)."""
        if self.ratio is not None:
            return "ratio"
        if self.target_ms is not None:
            return "ms"
        return "speedup" if self.target_speedup is not None else "drop"

    @property
    def latency(self) -> bool:
        """Whether this is a latency target (ms or speedup)."""
        return self.form in ("ms", "speedup")

    def speedup(self, baseline_ms: float) -> float:
        """The target as a speedup over ``baseline_ms``."""
        if self.target_speedup is not None:
            return self.target_speedup
        return baseline_ms / self.target_ms

    def ms(self, baseline_ms: float) -> float:
        """The target as a latency (ms) against ``baseline_ms``."""
        if self.target_speedup is not None:
            return baseline_ms / self.target_speedup
        return self.target_ms

    def met_by(self, baseline_ms: float) -> bool:
        """Whether the unpruned model already meets it (a speedup of 1 or less)."""
        return self.speedup(baseline_ms) <= 1.0

    def power(self, baseline_ms: float, exponent: float) -> Target:
        """The speedup target ``speedup ** exponent`` (a stage of progressive pruning)."""
        return Target(target_speedup=self.speedup(baseline_ms) ** exponent)

    def check(self, max_drop: float | None) -> None:
        """Exactly one form (or ``max_drop`` alone), each in its range; one line each."""
        modes = [v for v in (self.target_ms, self.target_speedup, self.ratio) if v is not None]
        if len(modes) > 1 or not modes and max_drop is None:
            raise OnnxPruneError("say how much to prune: exactly one of --target-ms, --speedup, --ratio "
                                 "(or --max-drop alone for the fastest model within it)")
        if self.ratio is not None and not 0.0 <= self.ratio < 1.0:
            raise OnnxPruneError(f"--ratio must be in [0, 1), got {self.ratio}")
        if self.target_speedup is not None and self.target_speedup <= 0:
            raise OnnxPruneError(f"--speedup must be positive, got {self.target_speedup}")
        if self.target_ms is not None and self.target_ms <= 0:
            raise OnnxPruneError(f"--target-ms must be positive, got {self.target_ms}")


@dataclass(frozen=True)
class Goal:
    """The target and what bounds it. ``speedups``: the frontier's targets (numbers, or the
    ``--speedups`` comma text); ``value``: what the knapsack keeps."""

    target: Target = field(default_factory=Target)
    max_drop: float | None = None
    floor: float = 0.25
    exclude: tuple[str, ...] = ()
    value: str = "sensitivity"
    importance: str = "auto"
    speedups: tuple[float, ...] | str = ()


@dataclass(frozen=True)
class Data:
    """The run's inputs: ``calib`` / ``val`` (anything :func:`onnxprune.sources.load_samples`
    reads, as ``options`` says, each read announced to ``announce``), the user's metric
    ``evaluate(model_path)``, and ``shapes`` (a dict, or ``--shape NAME:DxD`` texts)."""

    calib: Any = None
    val: Any = None
    options: DataOptions | None = None
    evaluate: Callable[[str], float] | None = None
    shapes: dict[str, tuple[int, ...]] | tuple[str, ...] | None = None
    announce: Callable[[str], None] | None = None


@dataclass(frozen=True)
class SearchSettings:
    """How the latency search runs: ``method`` (knapsack, or refined by evolution), ``stages``
    (progressive pruning), ``cache_path`` (the profile cache; None: the default one),
    ``progress`` lines, and ``latency``: ratio mode also times the model."""

    method: str = "knapsack"
    stages: int = 1
    cache_path: str | None = None
    progress: bool = False
    latency: bool = False


@dataclass(frozen=True)
class Recovery:
    """The recovery steps (or ``--recover`` text) and the distill step's time budget."""

    steps: tuple[str, ...] | str = recover.STEPS
    distill_seconds: float = recover.DISTILL_SECONDS




@dataclass(frozen=True)
class Deployment:
    """Where and how models are timed: ``config`` (a runtime configuration measured here, or
    any latency source), here or in Ray actors; ``precision``: what the written model computes
    in, and so what every candidate is timed and judged in (:mod:`onnxprune.quantize`)."""

    config: runtimes.RuntimeConfig | backends.LatencySource | None = None
    ray_address: str | None = None
    ray_resources: dict[str, float] | None = None
    ray_actors: int | None = None
    ray_timeout: float = 600.0
    precision: str = _opt("fp32", "--precision",
                          "what the model ships in: fp32, int8 (onnxruntime's static QDQ "
                          "quantizer, calibrated on --calib), or auto (both searched, the more "
                          "faithful that meets the target kept); candidates are timed and judged in it")

    @classmethod
    def of(cls, runtime_name: str = "ort", provider: str = "cpu", ep_library: str = "",
           device: str = "", threads: int = 1, opt_level: str = "all", provider_options=(),
           fp16: bool = False, precision: str = "fp32", **ray) -> Deployment:
        """The command line's runtime options validated (one clear error each); ``ray``:
        ``ray_address``, ``ray_resources``, ``ray_actors``, ``ray_timeout``."""
        address, actors = ray.get("ray_address"), ray.get("ray_actors")
        timeout = ray.get("ray_timeout", 600.0)
        if threads < 1:
            raise OnnxPruneError("--threads must be at least 1")
        config = runtimes.RuntimeConfig(provider, threads, opt_level,
                                        _pairs(provider_options, "--provider-option"),
                                        runtime_name, device, fp16, ep_library)
        runtimes.check_request(config)
        resources = _amounts(ray.get("ray_resources") or ())
        if address is None and (resources or actors is not None):
            raise OnnxPruneError("--ray-resources and --ray-actors need --ray auto|ADDRESS")
        if (actors is not None and actors < 1) or timeout <= 0:
            raise OnnxPruneError("--ray-actors must be at least 1 and --ray-timeout positive")
        if address is None:  # before any work: a missing runtime is one line, nothing else
            runtimes.check_available(config)
        deployment = cls(config, address, resources or None, actors, timeout, precision)
        deployment.check()
        return deployment

    def check(self, auto: bool = True) -> None:
        """The precision is one this version ships (``auto`` too, where the command chooses
        for one target), and the only one asked."""
        known = PRECISIONS if auto else MODEL_PRECISIONS
        if self.precision not in known:
            raise OnnxPruneError(f"--precision must be one of {', '.join(known)} here, got {self.precision!r}")
        config = self.config if isinstance(self.config, runtimes.RuntimeConfig) else None
        if self.precision != "fp32" and config is not None and config.fp16:
            raise OnnxPruneError(f"--fp16 and --precision {self.precision} are two precisions: give one")

    def source(self) -> backends.LatencySource:
        """The latency source; Ray actors are stopped when the command ends."""
        if self.ray_address is None:
            return backends.source_for(self.config)
        import click

        from .remote import RaySource

        src = RaySource(backends.Local(self.config), self.ray_address, self.ray_resources,
                        self.ray_actors, self.ray_timeout)
        click.get_current_context().call_on_close(src.close)
        return src


def _pairs(items, option: str) -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OnnxPruneError(f"bad {option} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _amounts(items) -> dict[str, float]:
    """``--ray-resources KEY=N`` as positive numbers."""
    out = {}
    for key, value in _pairs(items, "--ray-resources").items():
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = 0.0
        if out[key] <= 0:
            raise OnnxPruneError(f"bad --ray-resources {key}={value}: expected a positive number")
    return out


def parse_recovery(text: str) -> tuple[str, ...]:
    """The recovery steps of ``--recover`` text (a comma list, or none)."""
    steps = tuple(s.strip() for s in text.split(",") if s.strip() and s.strip() != "none")
    unknown = set(steps) - set(recover.ALL_STEPS)
    if unknown:
        raise OnnxPruneError(f"--recover: unknown step(s) {sorted(unknown)}; use {', '.join(recover.ALL_STEPS)} or none")
    return steps


def check_floor(floor: float) -> None:
    """The share of a group's width a search may go down to: in (0, 1]."""
    if not 0.0 < floor <= 1.0:
        raise OnnxPruneError(f"--floor must be in (0, 1], got {floor}")


def parse_shapes(shapes: dict[str, tuple[int, ...]] | tuple[str, ...] | list[str] | None):
    """``--shape NAME:DxD`` texts parsed; a dict (or None) as given."""
    return load.parse_shape_overrides(shapes) if isinstance(shapes, (tuple, list)) else shapes


# Job.of's keyword names (those of onnxprune.prune and the command line) -> (part, field).
KEYWORDS = {
    "target_ms": ("target", "target_ms"), "speedup": ("target", "target_speedup"),
    "ratio": ("target", "ratio"),
    "max_drop": ("goal", "max_drop"), "floor": ("goal", "floor"), "exclude": ("goal", "exclude"),
    "value": ("goal", "value"), "importance": ("goal", "importance"),
    "speedups": ("goal", "speedups"),
    "calib": ("data", "calib"), "val": ("data", "val"), "data_options": ("data", "options"),
    "evaluate": ("data", "evaluate"), "shapes": ("data", "shapes"), "announce": ("data", "announce"),
    "method": ("search", "method"), "stages": ("search", "stages"),
    "cache_path": ("search", "cache_path"), "progress": ("search", "progress"),
    "latency": ("search", "latency"),
    "recovery": ("recovery", "steps"), "distill_seconds": ("recovery", "distill_seconds"),
    "config": ("deployment", "config"), "deployment": ("deployment", None),
    "outputs": ("job", "outputs"), "output_dir": ("job", "output_dir"),
}


@dataclass(frozen=True)
class Job:
    """One run as asked, by the command line or the Python API: ``model`` (a proto or a path)
    and its parts; ``outputs``: paths the caller will write (checked up front);
    ``output_dir``: where the frontier's caller writes one model per point."""

    model: onnx.ModelProto | str
    goal: Goal = field(default_factory=Goal)
    data: Data = field(default_factory=Data)
    search: SearchSettings = field(default_factory=SearchSettings)
    recovery: Recovery = field(default_factory=Recovery)
    deployment: Deployment = field(default_factory=Deployment)
    outputs: tuple[str, ...] = ()
    output_dir: str | None = None

    @classmethod
    def of(cls, model: onnx.ModelProto | str, **kw) -> Job:
        """The job of ``model`` from keyword names (see :data:`KEYWORDS`): ``speedup=1.3``
        is ``goal.target.target_speedup``, ``calib=...`` is ``data.calib``, ``recovery`` the
        recovery steps, ``config`` the deployment's runtime (or latency source), ``deployment``
        a whole :class:`Deployment`."""
        unknown = sorted(set(kw) - set(KEYWORDS))
        if unknown:
            raise TypeError(f"Job.of: unknown keyword(s) {', '.join(unknown)}")
        parts: dict[str, dict] = {}
        for name, value in kw.items():
            part, attr = KEYWORDS[name]
            if name == "exclude":
                value = tuple(value or ())
            parts.setdefault(part, {})[attr] = value
        deployment = parts.get("deployment", {}).pop(None, None) or Deployment()
        job_fields = parts.pop("job", {})
        return cls(model, replace(Goal(Target(**parts.pop("target", {}))), **parts.pop("goal", {})),
                   Data(**parts.pop("data", {})), SearchSettings(**parts.pop("search", {})),
                   Recovery(**parts.pop("recovery", {})),
                   replace(deployment, **parts.pop("deployment", {})), **job_fields)

    @property
    def target(self) -> Target:
        return self.goal.target

    def _model_path(self) -> str | None:
        return self.model if isinstance(self.model, str) else None

    def _parsed(self, **goal) -> Job:
        steps = self.recovery.steps
        steps = parse_recovery(steps) if isinstance(steps, str) else steps
        return replace(self, goal=replace(self.goal, **goal),
                       data=replace(self.data, shapes=parse_shapes(self.data.shapes)),
                       recovery=replace(self.recovery, steps=steps))

    def validate(self) -> Job:
        """The prune job checked, with ``shapes`` and the recovery steps parsed; the first
        problem raises OnnxPruneError with its one line."""
        goal = self.goal
        goal.target.check(goal.max_drop)
        shapes = parse_shapes(self.data.shapes)
        for path in self.outputs:
            check_output_path(path, self._model_path())
        steps = self.recovery.steps
        steps = parse_recovery(steps) if isinstance(steps, str) else steps
        if goal.max_drop is not None and self.data.calib is None and self.data.evaluate is None:
            raise OnnxPruneError("--max-drop needs calibration data (--calib data.npz)")
        if self.search.stages < 1:
            raise OnnxPruneError(f"--stages must be at least 1, got {self.search.stages}")
        if self.search.stages > 1 and self.deployment.precision != "fp32":
            raise OnnxPruneError(f"--stages with --precision {self.deployment.precision}: progressive "
                                 "pruning runs in fp32 only in this version")
        if self.deployment.precision == "auto" and goal.target.target_ms is None and goal.target.target_speedup is None:
            raise OnnxPruneError("--precision auto chooses for a latency target: give --speedup or --target-ms")
        if goal.target.ratio is None:
            check_floor(goal.floor)
        self.deployment.check()
        return replace(self, data=replace(self.data, shapes=shapes),
                       recovery=replace(self.recovery, steps=steps))

    def validate_frontier(self) -> Job:
        """The frontier job checked, speedups sorted, ``shapes`` and the recovery steps parsed."""
        wanted = self.goal.speedups
        if isinstance(wanted, str):
            try:
                wanted = [float(v) for v in wanted.split(",") if v.strip()]
            except ValueError:
                wanted = []
        if not wanted or min(wanted) <= 1.0:
            raise OnnxPruneError(f"--speedups must be a comma list of numbers above 1, got {self.goal.speedups!r}")
        if self.output_dir:
            check_output_dir(self.output_dir)
        for path in self.outputs:
            check_output_path(path, self._model_path())
        check_floor(self.goal.floor)
        self.deployment.check(auto=False)
        return self._parsed(speedups=tuple(sorted(wanted)))


def option_fields() -> list[tuple[type, str, str, str]]:
    """(class, field, flag, help) of every job field that is a command-line option."""
    out = []
    for cls in (Target, Goal, Data, SearchSettings, Recovery, Deployment, Job):
        for f in fields(cls):
            if "flag" in f.metadata:
                out.append((cls, f.name, f.metadata["flag"], f.metadata["help"]))
    return out
