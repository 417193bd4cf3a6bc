"""Command line: ``onnxprune IN -o OUT --ratio R``, ``onnxprune analyze IN``, and friends.

Every failure the user can cause ends as one line on stderr and exit status 2; no traceback,
no partial output file (set ONNXPRUNE_DEBUG=1 to see tracebacks).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass

import click

from . import backends, calib, guard, pipeline, profile, recover, runtime, verify
from .errors import OnnxPruneError
from .importance import KINDS
from .load import load_model
from .output import check_output_path, write_model, write_text
from .report import (
    console,
    plot_heatmap,
    plot_tradeoff,
    print_analysis,
    print_frontier,
    print_frozen,
    print_kv,
    print_kv_single,
    print_profiles,
    print_quality,
    print_target,
    share,
)


class _DefaultToPrune(click.Group):
    """``onnxprune IN ...`` means ``onnxprune prune IN ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["prune", *args]
        return super().parse_args(ctx, args)


def max_memory_option(fn):
    """``--max-memory SIZE``: the memory budget of the run's cost guard (:mod:`onnxprune.guard`)."""
    return click.option("--max-memory", metavar="SIZE", expose_value=False,
                        callback=lambda ctx, param, value: guard.set_max_memory(value),
                        help="refuse runs estimated to need more memory [half the available]")(fn)


def runtime_options(fn):
    """Options that describe the deployment session (shared by every measuring command); the
    command receives them as one :class:`Deployment` argument, ``deploy``."""
    options = [
        click.option("--runtime", "runtime_name", type=click.Choice(runtime.RUNTIMES), default="ort",
                     show_default=True, help="onnxruntime, or OpenVINO's own runtime"),
        click.option("--provider", default="cpu", show_default=True,
                     help=f"onnxruntime execution provider: {', '.join(sorted(runtime.PROVIDERS))} "
                          "or any EP's full name"),
        click.option("--ep-library", default="", metavar="PATH",
                     help="register --provider from this plugin EP library"),
        click.option("--device", default="", help="OpenVINO device (CPU, GPU) or CUDA device id"),
        click.option("--threads", type=int, default=1, show_default=True, help="intra-op threads"),
        click.option("--opt-level", type=click.Choice(sorted(runtime.OPT_LEVELS)), default="all",
                     show_default=True, help="graph optimisation level"),
        click.option("--provider-option", "provider_options", multiple=True, metavar="KEY=VALUE",
                     help="provider (or OpenVINO) option, repeatable (e.g. device_id=0)"),
        click.option("--fp16", is_flag=True, help="half precision (TensorRT, OpenVINO)"),
        click.option("--shape", "shape_specs", multiple=True, metavar="NAME:DxD...",
                     help="concrete shape for a dynamic input, e.g. input:1x3x224x224"),
        click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
                     help="measure in Ray actors (one per device) instead of this process"),
        click.option("--ray-resources", multiple=True, metavar="KEY=N",
                     help="what one Ray actor (device) needs, repeatable, e.g. GPU=1 [CPU=threads]"),
        click.option("--ray-actors", type=int, default=None,
                     help="at most this many Ray actors [as many as the resources allow]"),
        click.option("--ray-timeout", type=float, default=600.0, show_default=True,
                     help="seconds one Ray measurement may take"),
    ]
    names = ("runtime_name", "provider", "ep_library", "device", "threads", "opt_level",
             "provider_options", "fp16", "ray_address", "ray_resources", "ray_actors", "ray_timeout")

    @functools.wraps(fn)
    def wrapper(**kwargs):
        return fn(deploy=Deployment.of(**{k: kwargs.pop(k) for k in names}), **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return max_memory_option(wrapper)


@dataclass
class Deployment:
    """Where and how models are timed: a runtime configuration, measured here or in Ray actors."""

    config: runtime.RuntimeConfig
    ray_address: str | None = None
    ray_resources: dict[str, float] | None = None
    ray_actors: int | None = None
    ray_timeout: float = 600.0

    @classmethod
    def of(cls, runtime_name: str, provider: str, ep_library: str, device: str, threads: int,
           opt_level: str, provider_options, fp16: bool, ray_address: str | None, ray_resources,
           ray_actors: int | None, ray_timeout: float) -> Deployment:
        """Validate the command line's runtime options (one clear error each)."""
        if threads < 1:
            raise OnnxPruneError("--threads must be at least 1")
        if fp16 and not (runtime_name == "openvino" or provider == "tensorrt"):
            raise OnnxPruneError("--fp16 needs --provider tensorrt or --runtime openvino")
        if device and runtime_name == "ort" and provider not in runtime.GPU_PROVIDERS:
            raise OnnxPruneError("--device is an OpenVINO device or a CUDA/TensorRT device id")
        if runtime_name == "openvino" and ray_address is None:
            backends.openvino()
        resources = _amounts(ray_resources)
        if ray_address is None and (resources or ray_actors is not None):
            raise OnnxPruneError("--ray-resources and --ray-actors need --ray auto|ADDRESS")
        if (ray_actors is not None and ray_actors < 1) or ray_timeout <= 0:
            raise OnnxPruneError("--ray-actors must be at least 1 and --ray-timeout positive")
        config = runtime.RuntimeConfig(provider, threads, opt_level,
                                       _pairs(provider_options, "--provider-option"),
                                       runtime_name, device, fp16, ep_library)
        return cls(config, ray_address, resources or None, ray_actors, ray_timeout)

    def source(self) -> backends.LatencySource:
        """The latency source; Ray actors are stopped when the command ends."""
        local = backends.Local(self.config)
        if self.ray_address is None:
            return local
        from .remote import RaySource

        src = RaySource(local, self.ray_address, self.ray_resources, self.ray_actors,
                        self.ray_timeout)
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


@click.group(cls=_DefaultToPrune, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onnxprune")
def cli() -> None:
    """Latency-aware channel pruning for ONNX models."""


@cli.command()
@click.argument("model", type=str)
@click.option("-o", "--output", required=True, help="where to write the pruned model")
@click.option("--target-ms", type=float, default=None, help="latency target in milliseconds")
@click.option("--speedup", type=float, default=None, help="target = measured baseline / SPEEDUP")
@click.option("--ratio", type=float, default=None, help="remove this share of every group (baseline mode)")
@click.option("--floor", type=float, default=0.25, show_default=True,
              help="keep at least this share of every group")
@click.option("--search", "method", type=click.Choice(["knapsack", "evolve"]), default="knapsack",
              show_default=True, help="knapsack + hardware loop, optionally refined by evolution")
@click.option("--report", "report_path", type=str, default=None, help="write a JSON report here")
@click.option("--cache", "cache_path", type=str, default=None, help="profile cache file")
@click.option("--importance", type=click.Choice(list(KINDS)), default="auto", show_default=True,
              help="which channels go first: reconstruction (least-squares refit cost, needs "
                   "--calib; the auto choice with --calib), l1/l2 weight norms (auto without), activation")
@click.option("--value", type=click.Choice(["sensitivity", "importance"]), default="sensitivity",
              show_default=True, help="what the search keeps: least measured output distortion "
                                      "(synthetic images without --calib), or summed importance")
@click.option("--calib", "calib_path", type=str, default=None,
              help=".npz of inputs keyed by input name (first axis = samples)")
@click.option("--recover", "recover_steps", type=str, default="bias,lsq,bn", show_default=True,
              help="recovery steps with --calib (comma list of bias, lsq, bn, distill; or none)")
@click.option("--distill-seconds", type=float, default=60.0, show_default=True,
              help="time budget of the distill recovery step (needs torch: onnxprune[torch])")
@click.option("--max-drop", type=float, default=None,
              help="largest allowed fidelity drop (1 - top-1 agreement on held-out calib data); "
                   "alone: the fastest model within it")
@click.option("--plot", "plot_path", type=str, default=None,
              help="PNG: measured latency vs fidelity of every candidate judged, the chosen marked")
@click.option("--exclude", multiple=True, metavar="REGEX", help="leave matching layers alone")
@click.option("--no-latency", is_flag=True, help="--ratio mode: skip the quick latency check")
@runtime_options
def prune(model, output, target_ms, speedup, ratio, floor, method, report_path, cache_path,
          importance, value, calib_path, recover_steps, distill_seconds, max_drop, plot_path,
          exclude, no_latency, deploy, shape_specs) -> None:
    """Prune MODEL to a latency target (or by a ratio) and write OUTPUT."""
    modes = [m for m, v in (("--target-ms", target_ms), ("--speedup", speedup), ("--ratio", ratio))
             if v is not None]
    if len(modes) > 1 or not modes and max_drop is None:
        raise OnnxPruneError("say how much to prune: exactly one of --target-ms, --speedup, --ratio "
                             "(or --max-drop alone for the fastest model within it)")
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise OnnxPruneError(f"--ratio must be in [0, 1), got {ratio}")
    if speedup is not None and speedup <= 0:
        raise OnnxPruneError(f"--speedup must be positive, got {speedup}")
    if target_ms is not None and target_ms <= 0:
        raise OnnxPruneError(f"--target-ms must be positive, got {target_ms}")
    shapes = runtime.parse_shape_overrides(shape_specs)
    check_output_path(output, model)
    if report_path:
        check_output_path(report_path, model)
    steps = parse_recovery(recover_steps)
    if max_drop is not None and calib_path is None:
        raise OnnxPruneError("--max-drop needs calibration data (--calib data.npz)")
    prep = pipeline.prepare(model, shapes, importance, list(exclude), calib_path)
    settings = {"steps": steps, "distill_seconds": distill_seconds}
    if not modes:
        tr = pipeline.prune_within_drop(prep, deploy.source(), max_drop, floor=floor, value=value,
                                        cache_path=cache_path or profile.default_cache_path(), **settings)
    elif ratio is None:
        tr = pipeline.prune_to_target(prep, deploy.source(), target_ms, speedup, floor, method,
                                      cache_path or profile.default_cache_path(),
                                      max_drop=max_drop, value=value, **settings)
    if ratio is None:
        if tr.already_met:
            write_model(prep.original, output, prep.feeds)
            console.print(f"the model already meets the target: {tr.baseline_ms:.3f} ms <= "
                          f"{tr.target_ms:.3f} ms; wrote an unchanged copy to {output}")
        else:
            write_model(tr.result.model, output, prep.feeds)
            print_target(prep.graph, tr)
            print_quality(tr.result)
            print_frozen(tr.result)
            if plot_path:
                plot_tradeoff(tr.points, tr.baseline_ms, plot_path)
        if report_path:
            write_text(json.dumps(tr.to_dict(prep.graph), indent=2), report_path)
        if calib_path is None:
            warn_unchecked(value)
        return
    result = pipeline.prune_ratio(prep, ratio, steps, max_drop=max_drop, distill_seconds=distill_seconds)
    write_model(result.model, output, prep.feeds)
    print_quality(result)
    print_frozen(result)
    rows = [
        ("parameters", f"{result.params_before:,}", f"{result.params_after:,}"),
        ("MACs", f"{result.flops_before:,}", f"{result.flops_after:,}"),
        ("channels removed", "", f"{result.channels_removed:,}"),
        ("zero-filter error", "", f"{result.zero_filter_error:.1e}"),
    ]
    if not no_latency:
        cmp = pipeline.quick_latency(prep, result.model, deploy.source())
        rows.append((f"latency ms (median, {deploy.config.key()})", f"{cmp.a.median_ms:.3f}",
                     f"{cmp.b.median_ms:.3f}"))
        rows.append(("speedup (interleaved)", "", f"{cmp.speedup:.2f}x"))
    print_kv(f"{os.path.basename(model)} -> {output}", rows)
    if report_path:
        write_text(json.dumps({"ratio": ratio, **result.to_dict()}, indent=2), report_path)
    if calib_path is None:
        warn_unchecked("importance")


def parse_recovery(text: str) -> tuple[str, ...]:
    steps = tuple(s.strip() for s in text.split(",") if s.strip() and s.strip() != "none")
    unknown = set(steps) - set(recover.ALL_STEPS)
    if unknown:
        raise OnnxPruneError(f"--recover: unknown step(s) {sorted(unknown)}; use {', '.join(recover.ALL_STEPS)} or none")
    return steps


def warn_unchecked(value: str) -> None:
    """The one warning of a successful run without calibration data (printed last, so a failing
    run still prints only its error line)."""
    how = ("cuts were ranked by output distortion on synthetic images" if value == "sensitivity"
           else "cuts were ranked by weight norms")
    click.echo(f"onnxprune: warning: no --calib: accuracy was not checked; {how}", err=True)


@cli.command()
@click.argument("model", type=str)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--importance", type=click.Choice(list(KINDS)), default="auto", show_default=True)
@click.option("--calib", "calib_path", type=str, default=None)
@click.option("--plot", "plot_dir", type=str, default=None,
              help="write a sensitivity heatmap (group x kept share) here; uses --calib")
@click.option("--shape", "shape_specs", multiple=True, metavar="NAME:DxD...")
@max_memory_option
def analyze(model, as_json, importance, calib_path, plot_dir, shape_specs) -> None:
    """List MODEL's channel groups: members, width, importance, why frozen."""
    prep = pipeline.prepare(model, runtime.parse_shape_overrides(shape_specs), importance,
                            calib_data=calib_path)
    print_analysis(prep.graph, as_json)
    if plot_dir:
        table, synthetic = pipeline.sensitivity_grid(prep)
        path = plot_heatmap(prep.graph, table, plot_dir, synthetic)
        if not as_json:
            console.print(f"sensitivity heatmap: {path} ({table.seconds:.1f} s)")


@cli.command()
@click.argument("model", type=str)
@click.option("--speedups", type=str, default="1.1,1.2,1.3,1.5", show_default=True,
              help="comma list of target speedups")
@click.option("--calib", "calib_path", type=str, default=None,
              help=".npz of inputs keyed by input name (first axis = samples)")
@click.option("--recover", "recover_steps", type=str, default="bias,lsq,bn", show_default=True)
@click.option("--floor", type=float, default=0.25, show_default=True)
@click.option("-o", "--output-dir", type=str, default=None, help="write each model here")
@click.option("--plot", "plot_path", type=str, default=None, help="PNG of the measured frontier")
@click.option("--report", "report_path", type=str, default=None, help="JSON of every point")
@click.option("--cache", "cache_path", type=str, default=None, help="profile cache file")
@runtime_options
def frontier(model, speedups, calib_path, recover_steps, floor, output_dir, plot_path, report_path,
             cache_path, deploy, shape_specs) -> None:
    """Several operating points in one run: measured latency and fidelity per target speedup."""
    try:
        wanted = [float(v) for v in speedups.split(",") if v.strip()]
    except ValueError:
        wanted = []
    if not wanted or min(wanted) <= 1.0:
        raise OnnxPruneError(f"--speedups must be a comma list of numbers above 1, got {speedups!r}")
    if output_dir and not os.path.isdir(output_dir):
        raise OnnxPruneError(f"{output_dir}: no such directory")
    prep = pipeline.prepare(model, runtime.parse_shape_overrides(shape_specs), calib_data=calib_path)
    results = pipeline.frontier(prep, deploy.source(), wanted, floor=floor, steps=parse_recovery(recover_steps),
                                cache_path=cache_path or profile.default_cache_path())
    print_frontier(wanted, results)
    if output_dir:
        stem = os.path.splitext(os.path.basename(model))[0]
        for s, tr in zip(sorted(wanted), results):
            if tr.result is not None:
                write_model(tr.result.model, os.path.join(output_dir, f"{stem}.{s:g}x.onnx"), prep.feeds)
    if plot_path and results:
        plot_tradeoff(results[-1].points, results[-1].baseline_ms, plot_path, chosen=False)
    if report_path:
        write_text(json.dumps([tr.to_dict(prep.graph) for tr in results], indent=2), report_path)
    if calib_path is None:
        warn_unchecked("sensitivity")


@cli.command("bench")
@click.argument("model_a", type=str)
@click.argument("model_b", type=str, required=False)
@click.option("--rounds", type=int, default=30, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--data", "data_path", type=str, default=None,
              help=".npz of inputs: also report how closely MODEL_B predicts what MODEL_A does")
@runtime_options
def bench_cmd(model_a, model_b, rounds, warmup, as_json, data_path, deploy, shape_specs) -> None:
    """Time MODEL_A, or compare MODEL_A against MODEL_B with interleaved rounds (and, with
    --data, their agreement on those inputs)."""
    if rounds < 3:
        raise OnnxPruneError("--rounds must be at least 3")
    first = load_model(model_a)
    if data_path:
        guard.check_npz(data_path)
    samples = calib.load_npz(data_path, first) if data_path else None
    user_shapes = runtime.parse_shape_overrides(shape_specs)
    shapes = calib.shapes_from(first, samples, user_shapes)
    guard.check(first, shapes, samples, user_shapes)
    feeds = runtime.random_feeds(first, shapes)
    source = deploy.source()
    if model_b is None:
        timing = source.measure(first.SerializeToString(), feeds, rounds, warmup)
        if as_json:
            print(json.dumps({"model": model_a, "config": deploy.config.key(), **timing.as_dict()},
                             indent=2))
        else:
            print_kv_single(model_a, timing)
        return
    second = load_model(model_b)
    cmp = source.compare(first.SerializeToString(), second.SerializeToString(), feeds, rounds, warmup)
    fid = None
    if samples is not None:
        fid = verify.fidelity(verify.outputs_on(first, samples), second, samples)
    if as_json:
        print(json.dumps({"a": model_a, "b": model_b, "config": deploy.config.key(),
                          "speedup": cmp.speedup, "ratio_p10": cmp.ratio_p10,
                          "ratio_p90": cmp.ratio_p90, "rounds": cmp.rounds,
                          "timing_a": cmp.a.as_dict(), "timing_b": cmp.b.as_dict(),
                          "fidelity": fid.as_dict() if fid else None}, indent=2))
        return
    print_kv("interleaved A/B", [
        ("median ms", f"{cmp.a.median_ms:.3f}", f"{cmp.b.median_ms:.3f}"),
        ("p90 ms", f"{cmp.a.p90_ms:.3f}", f"{cmp.b.p90_ms:.3f}"),
        ("spread (p90-p10)/median", f"{cmp.a.spread:.1%}", f"{cmp.b.spread:.1%}"),
        ("speedup A/B (median of rounds)", "", f"{cmp.speedup:.3f}x"),
        ("ratio p10..p90", "", f"{cmp.ratio_p10:.3f}..{cmp.ratio_p90:.3f}"),
    ], columns=("", "A", "B"))
    if fid is not None:
        n = calib.count(samples)
        rows = [("mean cosine of outputs", "", f"{min(fid.cosine.values()):.4f}")]
        if fid.agreement is not None:
            rows = [("top-1 agreement (B predicts A's class)", "", share(fid.agreement)),
                    ("top-5 (A's class in B's top 5)", "", share(fid.top5)), *rows]
        if fid.neighbours is not None:
            rows += [("sentence-embedding cosine (mean-pooled)", "", f"{fid.embedding_cosine:.4f}"),
                     ("nearest-neighbour agreement", "", share(fid.neighbours))]
        print_kv(f"fidelity of B vs A on {n} inputs of {os.path.basename(data_path)}", rows,
                 columns=("", "", "B"))


@cli.command("profile")
@click.argument("model", type=str)
@click.option("--json", "as_json", is_flag=True, help="print the full curves as JSON")
@click.option("--plot", "plot_dir", type=str, default=None, help="write PNG plots here")
@click.option("--cache", "cache_path", type=str, default=None,
              help="measurement cache file [default: ~/.cache/onnxprune/profiles.json]")
@click.option("--no-cache", is_flag=True, help="measure everything again, store nothing")
@click.option("--group", "group_ids", type=int, multiple=True, help="only these group ids")
@click.option("--rel-tol", type=float, default=0.05, show_default=True,
              help="latency change that counts as a step")
@runtime_options
def profile_cmd(model, as_json, plot_dir, cache_path, no_cache, group_ids, rel_tol, deploy,
                shape_specs) -> None:
    """Measure each prunable group's latency staircase and its candidate widths."""
    prep = pipeline.prepare(model, runtime.parse_shape_overrides(shape_specs))
    groups = prep.graph.prunable_groups()
    if group_ids:
        unknown = set(group_ids) - {g.id for g in groups}
        if unknown:
            raise OnnxPruneError(f"--group {sorted(unknown)}: not prunable group ids")
        groups = [g for g in groups if g.id in group_ids]
    source = deploy.source()
    cache = profile.Cache(None if no_cache else (cache_path or profile.default_cache_path()),
                          source.key())
    run = profile.profile_model(prep.graph, source, cache, groups, rel_tol=rel_tol,
                                progress=not as_json)
    if plot_dir:
        for prof in run.groups:
            profile.plot_group(prof, plot_dir)
    if as_json:
        print(json.dumps({"config": deploy.config.key(), "source": source.key(),
                          "seconds": run.seconds, "measured": run.measured, "cached": run.cached,
                          "groups": [p.as_dict() for p in run.groups]}, indent=2))
        return
    print_profiles(run.groups)
    console.print(f"{len(run.groups)} groups in {run.seconds:.1f} s; {run.measured} new "
                  f"measurements, {run.cached} from cache ({source.key()})")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every expected failure into one stderr line."""
    try:
        cli.main(args=argv, prog_name="onnxprune", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("onnxprune: aborted", err=True)
        sys.exit(130)
    except (OnnxPruneError, click.ClickException) as exc:
        if os.environ.get("ONNXPRUNE_DEBUG"):
            raise
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"onnxprune: error: {message}", err=True)
        sys.exit(2)
    except MemoryError as exc:
        if os.environ.get("ONNXPRUNE_DEBUG"):
            raise
        click.echo(f"onnxprune: error: {guard.memory_error_line(exc)}", err=True)
        sys.exit(2)
    except Exception as exc:  # a bug: still one line, but say it is ours
        if os.environ.get("ONNXPRUNE_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0]
        click.echo(f"onnxprune: internal error: {type(exc).__name__}: {first} "
                   "(set ONNXPRUNE_DEBUG=1 for a traceback)", err=True)
        sys.exit(3)
