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

from . import backends, calib, fidelity, guard, pipeline, profile, progress, recover, runtime
from .errors import OnnxPruneError
from .importance import KINDS
from .load import load_model, parse_shape_overrides
from .output import check_output_dir, check_output_path, make_dir, write_model, write_text
from .report import (
    analysis_info,
    console,
    frontier_figure,
    plot_heatmap,
    plot_profiles,
    print_analysis,
    print_frontier,
    print_frozen,
    print_grid,
    print_kv,
    print_kv_single,
    print_profiles,
    print_quality,
    print_target,
    report_text,
    run_info,
    save_figure,
    share,
    summary_grid,
    tradeoff_figure,
)
from .sources import PRESETS, load_samples
from .sources import Options as DataOptions


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
        click.option("--quiet", is_flag=True, help="no progress lines on stderr"),
    ]
    names = ("runtime_name", "provider", "ep_library", "device", "threads", "opt_level",
             "provider_options", "fp16", "ray_address", "ray_resources", "ray_actors", "ray_timeout")

    @functools.wraps(fn)
    def wrapper(**kwargs):
        deploy = Deployment.of(**{k: kwargs.pop(k) for k in names})
        progress.configure(not kwargs.pop("quiet") and not kwargs.get("as_json"))  # --json: silent
        return fn(deploy=deploy, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return max_memory_option(wrapper)


# --- data options (issue 20: image folders, sentence files; onnxprune.sources) --------------
CALIB_HELP = ("calibration inputs: a folder, glob or .txt list of images (see --preprocess), "
              "a .txt of sentences with --tokenizer, or a .npz keyed by input name")


def data_options(fn):
    """Options saying how image and sentence files become model inputs (shared by every
    command that takes data); the command receives them as one :class:`onnxprune.sources.Options`
    argument, ``data``."""
    options = [
        click.option("--preprocess", type=click.Choice(list(PRESETS)), default=None,
                     help="images: imagenet (shorter side 256, centre 224, ImageNet mean/std; "
                          "the default), inception ([-1, 1]) or raw ([0, 1])"),
        click.option("--resize", default=None, metavar="N|HxW",
                     help="images: shorter side N (default crop x 256/224), or exactly HxW"),
        click.option("--crop", default=None, metavar="N|HxW",
                     help="images: centre crop (default: the model's input size)"),
        click.option("--mean", default=None, metavar="M,M,M",
                     help="images: per-channel mean on [0, 1] pixels, model channel order "
                          "(values above 1: 0..255 units for --mean and --std)"),
        click.option("--std", default=None, metavar="S,S,S", help="images: per-channel std"),
        click.option("--layout", type=click.Choice(["nchw", "nhwc"]), default=None,
                     help="images: tensor layout (default: from the model's channel axis)"),
        click.option("--bgr", is_flag=True, help="images: channels in BGR order"),
        click.option("--tokenizer", default=None, metavar="tokenizer.json",
                     help="sentences (.txt, one per line): tokenizers file; pads/truncates to "
                          "the model's or --shape's length (pip install 'onnxprune[text]')"),
    ]
    names = ("preprocess", "resize", "crop", "mean", "std", "layout", "bgr", "tokenizer")

    @functools.wraps(fn)
    def wrapper(**kwargs):
        return fn(data=DataOptions.parse(**{k: kwargs.pop(k) for k in names}), **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def load_data(spec: str | None, model, data: DataOptions, shapes, what: str = "--calib",
              quiet: bool = False) -> calib.Samples | None:
    """Samples from ``spec`` for ``model`` (None without one), announcing in one stdout line
    what was applied (not with ``quiet``: a --json command's stdout is its JSON)."""
    if spec is None:
        return None
    return load_samples(spec, model, data, shapes, what,
                        report=None if quiet else lambda line: click.echo(f"data: {line}"))
# --- end of data options ------------------------------------------------------------------


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
        if ray_address is None:  # before any work: a missing provider is one line, nothing else
            runtime.check_provider(config)
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
    """Latency-aware channel pruning for ONNX models.

    \b
    prune is the default command: these two are the same
      onnxprune in.onnx --speedup 1.3 -o out.onnx
      onnxprune prune in.onnx --speedup 1.3 -o out.onnx
    """


def _argv() -> list[str]:
    """The command line as the user typed it (for reports)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return list(obj["argv"]) if isinstance(obj, dict) and "argv" in obj else sys.argv[1:]


def _described(data: dict, prep: pipeline.Prepared, source: backends.LatencySource | None,
               **goal) -> dict:
    """A report with how it was made: command, what was asked (``goal``, None values dropped),
    runtime and machine, input shapes, frozen groups."""
    goal = {k: v for k, v in goal.items() if v is not None}
    return {**data, "run": run_info(prep.graph, _argv(), source.key() if source else None, goal),
            "analysis": analysis_info(prep.graph)}


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
@click.option("--report", "report_paths", multiple=True, metavar="PATH",
              help="write a report here: PATH.html = one self-contained page (tables, plots, the "
                   "command, runtime and machine), otherwise JSON; repeatable")
@click.option("--cache", "cache_path", type=str, default=None, help="profile cache file")
@click.option("--importance", type=click.Choice(list(KINDS)), default="auto", show_default=True,
              help="which channels go first: reconstruction (least-squares refit cost, needs "
                   "--calib; the auto choice with --calib), l1/l2 weight norms (auto without), activation")
@click.option("--value", type=click.Choice(["sensitivity", "importance"]), default="sensitivity",
              show_default=True, help="what the search keeps: least measured output distortion "
                                      "(synthetic images without --calib), or summed importance")
@click.option("--calib", "calib_path", type=str, default=None, help=CALIB_HELP)
@click.option("--val", "val_path", type=str, default=None,
              help="your own validation inputs, disjoint from --calib (same kinds of data): "
                   "fidelity and --max-drop are judged on them instead of held-out calibration "
                   "clusters")
@click.option("--stages", type=int, default=1, show_default=True,
              help="progressive pruning: reach the target in this many steps, each pruned, "
                   "recovered and measured again")
@click.option("--recover", "recover_steps", type=str, default="bias,lsq,bn", show_default=True,
              help="recovery steps with --calib (comma list of bias, lsq, bn, distill; or none)")
@click.option("--distill-seconds", type=float, default=recover.DISTILL_SECONDS, show_default=True,
              help="time budget of the distill recovery step (needs torch: onnxprune[torch]); "
                   "decided once into a step count, cached, so a rerun makes the same steps")
@click.option("--max-drop", type=float, default=None,
              help="largest allowed fidelity drop (1 - top-1 agreement on held-out calib data); "
                   "alone: the fastest model within it")
@click.option("--plot", "plot_path", type=str, default=None,
              help="PNG: measured latency vs fidelity of every candidate judged, the chosen marked")
@click.option("--exclude", multiple=True, metavar="REGEX", help="leave matching layers alone")
@click.option("--no-latency", is_flag=True, help="--ratio mode: skip the quick latency check")
@runtime_options
@data_options
def prune(model, output, target_ms, speedup, ratio, floor, method, report_paths, cache_path,
          importance, value, calib_path, val_path, stages, recover_steps, distill_seconds,
          max_drop, plot_path, exclude, no_latency, deploy, shape_specs, data) -> None:
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
    shapes = parse_shape_overrides(shape_specs)
    check_output_path(output, model)
    for path in report_paths:
        check_output_path(path, model)
    steps = parse_recovery(recover_steps)
    if max_drop is not None and calib_path is None:
        raise OnnxPruneError("--max-drop needs calibration data (--calib data.npz)")
    if stages < 1:
        raise OnnxPruneError(f"--stages must be at least 1, got {stages}")
    loaded = load_model(model)
    prep = pipeline.prepare(loaded, shapes, importance, list(exclude),
                            load_data(calib_path, loaded, data, shapes),
                            load_data(val_path, loaded, data, shapes, "--val"))
    settings = {"steps": steps, "distill_seconds": distill_seconds}
    source = deploy.source() if ratio is None or not no_latency else None
    if not modes:
        tr = pipeline.prune_within_drop(prep, source, max_drop, floor=floor, value=value,
                                        cache_path=cache_path or profile.default_cache_path(), **settings)
    elif ratio is None:
        tr = pipeline.prune_to_target(prep, source, target_ms, speedup, floor, method,
                                      cache_path or profile.default_cache_path(),
                                      max_drop=max_drop, value=value, stages=stages, **settings)
    if ratio is None:
        data = _described(tr.to_dict(prep.graph), prep, source, target_ms=target_ms,
                          speedup=speedup, max_drop=max_drop)
        if tr.already_met:
            write_model(prep.original, output, prep.feeds)
            console.print(f"the model already meets the target: {tr.baseline_ms:.3f} ms <= "
                          f"{tr.target_ms:.3f} ms; wrote an unchanged copy to {output}")
        else:
            write_model(tr.result.model, output, prep.feeds, prep.original)
            print_target(data)
            print_quality(data["quality"])
            print_frozen(data["quality"])
            if plot_path:
                _optional("the trade-off plot", prep, lambda: save_figure(tradeoff_figure(data), plot_path))
        write_reports(data, report_paths)
        warn(prep.warnings)
        if calib_path is None:
            warn_unchecked(value)
        return
    result = pipeline.prune_ratio(prep, ratio, steps, max_drop=max_drop, distill_seconds=distill_seconds)
    write_model(result.model, output, prep.feeds, prep.original)
    data = {"ratio": ratio, "quality": result.to_dict()}
    if source is not None:
        cmp = pipeline.quick_latency(prep, result.model, source)
        data["baseline_ms"] = cmp.a.median_ms
        data["final"] = {"speedup": cmp.speedup, "ms": cmp.a.median_ms / cmp.speedup,
                         "ratio_p10": cmp.ratio_p10, "ratio_p90": cmp.ratio_p90}
    data = _described(data, prep, source, ratio=ratio, max_drop=max_drop)
    print_quality(data["quality"])
    print_frozen(data["quality"])
    print_grid(summary_grid(data, f"{os.path.basename(model)} -> {output}"))
    write_reports(data, report_paths)
    warn(prep.warnings)
    if calib_path is None:
        warn_unchecked("importance")


def write_reports(data: dict | list[dict], paths: tuple[str, ...]) -> None:
    """Each ``--report`` path: HTML by its extension, else JSON."""
    for path in paths:
        write_text(report_text(data, path), path)


def parse_recovery(text: str) -> tuple[str, ...]:
    steps = tuple(s.strip() for s in text.split(",") if s.strip() and s.strip() != "none")
    unknown = set(steps) - set(recover.ALL_STEPS)
    if unknown:
        raise OnnxPruneError(f"--recover: unknown step(s) {sorted(unknown)}; use {', '.join(recover.ALL_STEPS)} or none")
    return steps


def _optional(what: str, prep, fn) -> None:
    """Run an optional stage (a plot); a failure becomes one warning, never the run's end."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        prep.warnings.append(f"{what} failed ({type(exc).__name__}: {runtime.first_line(exc)}); skipped")


def warn(lines: list[str]) -> None:
    """The run's warnings, one stderr line each, after its results (each once)."""
    for line in dict.fromkeys(lines):
        click.echo(f"onnxprune: warning: {line}", err=True)


def warn_unchecked(value: str) -> None:
    """The one warning of a successful run without calibration data (printed last, so a failing
    run still prints only its error line)."""
    how = ("cuts were ranked by output distortion on synthetic images" if value == "sensitivity"
           else "cuts were ranked by weight norms")
    click.echo(f"onnxprune: warning: no --calib: accuracy was not checked; {how}", err=True)


@cli.command()
@click.argument("model", type=str)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--importance", type=click.Choice(list(KINDS)), default="auto", show_default=True,
              help="channel importance the table summarises (as for prune)")
@click.option("--calib", "calib_path", type=str, default=None, help=CALIB_HELP)
@click.option("--plot", "plot_dir", type=str, default=None,
              help="write DIR/sensitivity.png: output distortion per group and kept share "
                   "(on --calib data, else synthetic images)")
@click.option("--shape", "shape_specs", multiple=True, metavar="NAME:DxD...",
              help="concrete shape for a dynamic input, e.g. input:1x3x224x224")
@data_options
@max_memory_option
def analyze(model, as_json, importance, calib_path, plot_dir, shape_specs, data) -> None:
    """List MODEL's channel groups: members, width, importance, why frozen."""
    shapes, loaded = parse_shape_overrides(shape_specs), load_model(model)
    prep = pipeline.prepare(loaded, shapes, importance,
                            calib_data=load_data(calib_path, loaded, data, shapes, quiet=as_json))
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
@click.option("--calib", "calib_path", type=str, default=None, help=CALIB_HELP)
@click.option("--recover", "recover_steps", type=str, default="bias,lsq,bn", show_default=True,
              help="recovery steps with --calib (comma list of bias, lsq, bn, distill; or none)")
@click.option("--floor", type=float, default=0.25, show_default=True,
              help="keep at least this share of every group")
@click.option("-o", "--output-dir", type=str, default=None,
              help="write each model here as MODEL.<speedup>x.onnx (created if missing)")
@click.option("--plot", "plot_path", type=str, default=None,
              help="PNG: measured latency vs fidelity of every candidate, each target's model labelled")
@click.option("--report", "report_paths", multiple=True, metavar="PATH",
              help="PATH.html = one self-contained page of every point, otherwise JSON; repeatable")
@click.option("--cache", "cache_path", type=str, default=None, help="profile cache file")
@runtime_options
@data_options
def frontier(model, speedups, calib_path, recover_steps, floor, output_dir, plot_path, report_paths,
             cache_path, deploy, shape_specs, data) -> None:
    """Several operating points in one run: measured latency and fidelity per target speedup."""
    try:
        wanted = [float(v) for v in speedups.split(",") if v.strip()]
    except ValueError:
        wanted = []
    if not wanted or min(wanted) <= 1.0:
        raise OnnxPruneError(f"--speedups must be a comma list of numbers above 1, got {speedups!r}")
    if output_dir:
        check_output_dir(output_dir)
    for path in report_paths:
        check_output_path(path, model)
    shapes, loaded = parse_shape_overrides(shape_specs), load_model(model)
    prep = pipeline.prepare(loaded, shapes, calib_data=load_data(calib_path, loaded, data, shapes))
    source = deploy.source()
    results = pipeline.frontier(prep, source, wanted, floor=floor, steps=parse_recovery(recover_steps),
                                cache_path=cache_path or profile.default_cache_path())
    datas = [_described(tr.to_dict(prep.graph), prep, source, speedups=sorted(wanted))
             for tr in results]
    print_frontier(datas)
    if output_dir:
        stem = os.path.splitext(os.path.basename(model))[0]
        for s, tr in zip(sorted(wanted), results):
            if tr.result is not None:
                path = os.path.join(make_dir(output_dir), f"{stem}.{s:g}x.onnx")
                write_model(tr.result.model, path, prep.feeds, prep.original)
    if plot_path and datas:
        _optional("the frontier plot", prep, lambda: save_figure(frontier_figure(datas), plot_path))
    write_reports(datas, report_paths)
    warn(prep.warnings)
    if calib_path is None:
        warn_unchecked("sensitivity")


@cli.command("bench")
@click.argument("model_a", type=str)
@click.argument("model_b", type=str, required=False)
@click.option("--rounds", type=int, default=30, show_default=True,
              help="timed rounds (interleaved A/B rounds when comparing)")
@click.option("--warmup", type=int, default=5, show_default=True,
              help="untimed runs of each model before timing")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--data", "data_path", type=str, default=None,
              help="inputs (like --calib: images, sentences or .npz): also report how closely "
                   "MODEL_B predicts what MODEL_A does")
@runtime_options
@data_options
def bench_cmd(model_a, model_b, rounds, warmup, as_json, data_path, deploy, shape_specs,
              data) -> None:
    """Time MODEL_A, or compare MODEL_A against MODEL_B with interleaved rounds (and, with
    --data, their agreement on those inputs)."""
    if rounds < 3:
        raise OnnxPruneError("--rounds must be at least 3")
    first, overrides = load_model(model_a), parse_shape_overrides(shape_specs)
    samples = load_data(data_path, first, data, overrides, "--data", quiet=as_json)
    shapes = calib.shapes_from(first, samples, overrides)
    guard.check(first, shapes, samples, overrides)
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
        fid = fidelity.fidelity(fidelity.outputs_on(first, samples), second, samples)
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
        rows = [("mean cosine of outputs (worst output)", f"{min(fid.cosine.values()):.4f}")]
        if fid.agreement is not None:
            rows = [("top-1 agreement (B predicts A's class)", share(fid.agreement)),
                    ("top-5 (A's class in B's top 5)", share(fid.top5)), *rows]
        if fid.neighbours is not None:
            rows += [("sentence-embedding cosine (mean-pooled)", f"{fid.embedding_cosine:.4f}"),
                     ("nearest-neighbour agreement", share(fid.neighbours))]
        print_kv(f"fidelity of B vs A on {n} inputs of {os.path.basename(data_path)}", rows,
                 columns=("", "B"))


@cli.command("profile")
@click.argument("model", type=str)
@click.option("--json", "as_json", is_flag=True, help="print the full curves as JSON")
@click.option("--plot", "plot_dir", type=str, default=None,
              help="write DIR/profile.png: every group's latency staircase in one figure")
@click.option("--plot-groups", is_flag=True,
              help="with --plot: also DIR/group_NNN.png per group (its layers and their sum)")
@click.option("--cache", "cache_path", type=str, default=None,
              help="measurement cache file [default: ~/.cache/onnxprune/profiles.json]")
@click.option("--no-cache", is_flag=True, help="measure everything again, store nothing")
@click.option("--group", "group_ids", type=int, multiple=True, help="only these group ids")
@click.option("--rel-tol", type=float, default=0.05, show_default=True,
              help="latency change that counts as a step")
@runtime_options
def profile_cmd(model, as_json, plot_dir, plot_groups, cache_path, no_cache, group_ids, rel_tol,
                deploy, shape_specs) -> None:
    """Measure each prunable group's latency staircase and its candidate widths."""
    if plot_groups and not plot_dir:
        raise OnnxPruneError("--plot-groups needs --plot DIR")
    prep = pipeline.prepare(model, parse_shape_overrides(shape_specs))
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
        plot_profiles(run.groups, plot_dir, per_group=plot_groups)
    if as_json:
        print(json.dumps({"config": deploy.config.key(), "source": source.key(),
                          "seconds": run.seconds, "measured": run.measured, "cached": run.cached,
                          "builds": run.builds, "build_seconds": run.build_seconds,
                          "groups": [p.as_dict() for p in run.groups]}, indent=2))
        return
    print_profiles(run.groups)
    console.print(f"{len(run.groups)} groups in {run.seconds:.1f} s; {run.measured} new "
                  f"measurements, {run.cached} from cache; {run.builds} sessions built in "
                  f"{run.build_seconds:.1f} s ({source.key()})")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every expected failure into one stderr line."""
    progress.configure(False)  # measuring commands turn it on (runtime_options)
    try:
        args = sys.argv[1:] if argv is None else list(argv)
        cli.main(args=args, prog_name="onnxprune", standalone_mode=False, obj={"argv": args})
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
