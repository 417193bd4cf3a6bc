"""Command line: ``onnxprune IN -o OUT --ratio R``, ``onnxprune analyze IN``, and friends.

Each command parses its options (:mod:`onnxprune.options`) into one job
(:class:`onnxprune.job.Job`; bench: a request), calls the API (:mod:`onnxprune.api`:
run_prune, run_frontier, analyze, profile, bench) and hands the result to :mod:`onnxprune.report`, :mod:`onnxprune.figures`
and :mod:`onnxprune.page`. Every failure the user can cause ends as one
line on stderr and exit status 2; no traceback, no partial output file (set ONNXPRUNE_DEBUG=1 to
see tracebacks).
"""

from __future__ import annotations

import os
import sys

import click

from . import api, guard, progress
from .errors import OnnxPruneError, first_line
from .figures import frontier_figure, plot_heatmap, plot_profiles, save_figure, tradeoff_figure
from .job import Deployment, Job
from .options import (
    analyze_options,
    announce,
    bench_options,
    frontier_options,
    profile_options,
    prune_options,
)
from .output import make_dir, write_model, write_text
from .page import report_text
from .report import (
    bench_json,
    console,
    print_analysis,
    print_comparison,
    print_frontier,
    print_kv_single,
    print_profile_run,
    print_prune,
    print_unchecked,
    print_warnings,
    profile_json,
    prune_data,
    run_details,
)

__all__ = ["Deployment", "cli", "main"]


class _DefaultToPrune(click.Group):
    """``onnxprune IN ...`` means ``onnxprune prune IN ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["prune", *args]
        return super().parse_args(ctx, args)


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


@cli.command()
@prune_options
def prune(model, output, report_paths, plot_path, no_latency, **asked) -> None:
    """Prune MODEL to a latency target (or by a ratio) and write OUTPUT."""
    run = api.run_prune(_job(model, asked, outputs=(output, *report_paths), latency=not no_latency,
                             progress=True))
    ratio, value = run.job.target.ratio, run.job.goal.value
    write_model(run.model, output, run.prep.feeds, None if run.already_met else run.prep.original)
    run.time()  # --ratio: the quick interleaved timing, once the model is written
    out = prune_data(run, _argv())
    print_prune(out, f"{os.path.basename(model)} -> {output}", output)
    if plot_path and ratio is None and not run.already_met:
        _optional("the trade-off plot", run.prep, lambda: save_figure(tradeoff_figure(out), plot_path))
    write_reports(out, report_paths)
    print_warnings(run.prep.warnings)
    if run.job.data.calib is None:
        print_unchecked(value if ratio is None else "importance")


# The commands' option names that are not Job.of's keywords.
_RENAMED = {"target_speedup": "speedup", "calib_path": "calib", "val_path": "val",
            "recover_steps": "recovery", "deploy": "deployment", "shape_specs": "shapes",
            "data": "data_options"}


def _job(model, asked: dict, **kw) -> Job:
    """The job of a command's options (``asked``, by their click names) and ``kw``, its data
    reads announced on stdout."""
    quiet = asked.pop("as_json", False)
    named = {_RENAMED.get(k, k): v for k, v in asked.items()}
    return Job.of(model, **named, announce=announce(quiet), **kw)


def write_reports(data: dict | list[dict], paths: tuple[str, ...]) -> None:
    """Each ``--report`` path: HTML by its extension, else JSON."""
    for path in paths:
        write_text(report_text(data, path), path)


def _optional(what: str, prep, fn) -> None:
    """Run an optional stage (a plot); a failure becomes one warning, never the run's end."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        prep.warnings.append(f"{what} failed ({type(exc).__name__}: {first_line(exc)}); skipped")


@cli.command()
@analyze_options
def analyze(model, as_json, plot_dir, **asked) -> None:
    """List MODEL's channel groups: members, width, importance, why frozen."""
    run = api.analyze(_job(model, {**asked, "as_json": as_json}))
    prep = run.prep
    print_analysis(prep.graph, as_json, run.precisions)
    if plot_dir:
        table, synthetic = run.grid()
        path = plot_heatmap(prep.graph, table, plot_dir, synthetic)
        if not as_json:
            console.print(f"sensitivity heatmap: {path} ({table.seconds:.1f} s)")


@cli.command()
@frontier_options
def frontier(model, output_dir, plot_path, report_paths, **asked) -> None:
    """Several operating points in one run: measured latency and fidelity per target speedup."""
    run = api.run_frontier(_job(model, asked, output_dir=output_dir, outputs=report_paths,
                                progress=True))
    prep, speedups = run.prep, list(run.job.goal.speedups)
    details = run_details(prep.graph, _argv(), run.source.key(), speedups=speedups)
    datas = [{**tr.to_dict(prep.graph), **details} for tr in run.results]  # one run: its details once
    print_frontier(datas)
    if output_dir:
        stem = os.path.splitext(os.path.basename(model))[0]
        for s, tr in zip(speedups, run.results):
            if tr.result is not None:
                path = os.path.join(make_dir(output_dir), f"{stem}.{s:g}x.onnx")
                write_model(tr.result.model, path, prep.feeds, prep.original)
    if plot_path and datas:
        _optional("the frontier plot", prep, lambda: save_figure(frontier_figure(datas), plot_path))
    write_reports(datas, report_paths)
    print_warnings(prep.warnings)
    if run.job.data.calib is None:
        print_unchecked("sensitivity")


@cli.command("bench")
@bench_options
def bench_cmd(model_a, model_b, rounds, warmup, as_json, data_path, deploy, shape_specs,
              data) -> None:
    """Time MODEL_A, or compare MODEL_A against MODEL_B with interleaved rounds (and, with
    --data, their agreement on those inputs)."""
    out = api.bench(api.BenchRequest(model_a, model_b, rounds, warmup, data_path, shape_specs, data,
                                     deploy.source, announce(as_json)))
    if out.timing is not None:
        if as_json:
            print(bench_json(deploy.config.key(), out.timing, model=model_a))
        else:
            print_kv_single(model_a, out.timing)
    elif as_json:
        print(bench_json(deploy.config.key(), cmp=out.comparison, fid=out.fid, a=model_a, b=model_b,
                         precision_a=out.precisions[0], precision_b=out.precisions[1]))
    else:
        title = (f"fidelity of B vs A on {out.samples} inputs of {os.path.basename(data_path)}"
                 if out.fid is not None else "")
        print_comparison(out.comparison, out.fid, title, out.precisions)


@cli.command("profile")
@profile_options
def profile_cmd(model, as_json, plot_dir, plot_groups, cache_path, no_cache, group_ids, rel_tol,
                deploy, shape_specs) -> None:
    """Measure each prunable group's latency staircase and its candidate widths."""
    if plot_groups and not plot_dir:
        raise OnnxPruneError("--plot-groups needs --plot DIR")
    job = Job.of(model, shapes=shape_specs, deployment=deploy, cache_path=cache_path,
                 progress=not as_json)
    done = api.profile(job, group_ids, no_cache, rel_tol)
    run, source = done.run, done.source
    if plot_dir:
        plot_profiles(run.groups, plot_dir, per_group=plot_groups)
    if as_json:
        print(profile_json(run, deploy.config.key(), source.key()))
    else:
        print_profile_run(run, source.key())


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
    except Exception as exc:
        if os.environ.get("ONNXPRUNE_DEBUG"):
            raise
        line, status = _failure(exc)
        click.echo(line, err=True)
        sys.exit(status)


def _failure(exc: Exception) -> tuple[str, int]:
    """The one stderr line and the exit status of a failure: 2 for what the user can cause
    (a bad option, a bad model, memory), 3 for a bug (ours, said so)."""
    if isinstance(exc, click.ClickException):
        return f"onnxprune: error: {exc.format_message()}", 2
    if isinstance(exc, OnnxPruneError):
        return f"onnxprune: error: {exc}", 2
    if isinstance(exc, MemoryError):
        return f"onnxprune: error: {guard.memory_error_line(exc)}", 2
    first = (str(exc).splitlines() or [""])[0]
    return (f"onnxprune: internal error: {type(exc).__name__}: {first} "
            "(set ONNXPRUNE_DEBUG=1 for a traceback)"), 3
