"""Command line: ``onnxprune IN -o OUT --ratio R``, ``onnxprune analyze IN``, and friends.

Every failure the user can cause ends as one line on stderr and exit status 2; no traceback,
no partial output file (set ONNXPRUNE_DEBUG=1 to see tracebacks).
"""

from __future__ import annotations

import os
import sys

import click

from . import pipeline, runtime
from .errors import OnnxPruneError
from .report import print_analysis, print_kv


class _DefaultToPrune(click.Group):
    """``onnxprune IN ...`` means ``onnxprune prune IN ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["prune", *args]
        return super().parse_args(ctx, args)


def runtime_options(fn):
    """Options that describe the deployment session (shared by every measuring command)."""
    options = [
        click.option("--provider", type=click.Choice(sorted(runtime.PROVIDERS)), default="cpu",
                     show_default=True, help="onnxruntime execution provider"),
        click.option("--threads", type=int, default=1, show_default=True, help="intra-op threads"),
        click.option("--opt-level", type=click.Choice(sorted(runtime.OPT_LEVELS)), default="all",
                     show_default=True, help="graph optimisation level"),
        click.option("--provider-option", "provider_options", multiple=True, metavar="KEY=VALUE",
                     help="provider option, repeatable (e.g. device_id=0)"),
        click.option("--shape", "shape_specs", multiple=True, metavar="NAME:DxD...",
                     help="concrete shape for a dynamic input, e.g. input:1x3x224x224"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def make_config(provider: str, threads: int, opt_level: str, provider_options) -> runtime.RuntimeConfig:
    opts = {}
    for item in provider_options:
        key, sep, value = item.partition("=")
        if not sep:
            raise OnnxPruneError(f"bad --provider-option {item!r}: expected KEY=VALUE")
        opts[key] = value
    if threads < 1:
        raise OnnxPruneError("--threads must be at least 1")
    return runtime.RuntimeConfig(provider, threads, opt_level, opts)


@click.group(cls=_DefaultToPrune, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onnxprune")
def cli() -> None:
    """Latency-aware channel pruning for ONNX models."""


@cli.command()
@click.argument("model", type=str)
@click.option("-o", "--output", required=True, help="where to write the pruned model")
@click.option("--ratio", type=float, default=None, help="remove this share of every group's channels")
@click.option("--norm", type=click.Choice(["l1", "l2"]), default="l1", show_default=True,
              help="weight norm used for importance")
@click.option("--exclude", multiple=True, metavar="REGEX", help="leave matching layers alone")
@click.option("--no-latency", is_flag=True, help="skip the quick before/after latency check")
@runtime_options
def prune(model, output, ratio, norm, exclude, no_latency, provider, threads, opt_level,
          provider_options, shape_specs) -> None:
    """Prune MODEL and write the result to OUTPUT."""
    if ratio is None:
        raise OnnxPruneError("say how much to prune: --ratio R")
    if not 0.0 <= ratio < 1.0:
        raise OnnxPruneError(f"--ratio must be in [0, 1), got {ratio}")
    make_config(provider, threads, opt_level, provider_options)
    shapes = runtime.parse_shape_overrides(shape_specs)
    pipeline.check_output_path(output, model)
    prep = pipeline.prepare(model, shapes, norm, list(exclude))
    result = pipeline.prune_ratio(prep, ratio)
    pipeline.write_model(result.model, output, prep.feeds)
    rows = [
        ("parameters", f"{result.params_before:,}", f"{result.params_after:,}"),
        ("MACs", f"{result.flops_before:,}", f"{result.flops_after:,}"),
        ("channels removed", "", f"{result.channels_removed:,}"),
        ("zero-filter error", "", f"{result.zero_filter_error:.1e}"),
    ]
    if not no_latency:
        cmp = pipeline.quick_latency(prep, result.model)
        rows.append(("latency ms (median, 1 thread CPU)", f"{cmp.a.median_ms:.3f}", f"{cmp.b.median_ms:.3f}"))
        rows.append(("speedup (interleaved)", "", f"{cmp.speedup:.2f}x"))
    print_kv(f"{os.path.basename(model)} -> {output}", rows)


@cli.command()
@click.argument("model", type=str)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--norm", type=click.Choice(["l1", "l2"]), default="l1", show_default=True)
@click.option("--shape", "shape_specs", multiple=True, metavar="NAME:DxD...")
def analyze(model, as_json, norm, shape_specs) -> None:
    """List MODEL's channel groups: members, width, importance, why frozen."""
    prep = pipeline.prepare(model, runtime.parse_shape_overrides(shape_specs), norm)
    print_analysis(prep.graph, as_json)


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
    except Exception as exc:  # a bug: still one line, but say it is ours
        if os.environ.get("ONNXPRUNE_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0]
        click.echo(f"onnxprune: internal error: {type(exc).__name__}: {first} "
                   "(set ONNXPRUNE_DEBUG=1 for a traceback)", err=True)
        sys.exit(3)
