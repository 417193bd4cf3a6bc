"""The command line's shared option groups: the deployment session (``runtime_options``, given
to a command as one :class:`Deployment`), how data files become inputs (``data_options``), the
memory budget. The deployment's validation is :meth:`onnxprune.job.Deployment.of`."""

from __future__ import annotations

import functools
from dataclasses import fields

import click

from . import guard, progress, recover, runtimes
from .importance import KINDS
from .job import Deployment, Target
from .quantize import PRECISIONS
from .sources import PRESETS
from .sources import Options as DataOptions


def max_memory_option(fn):
    """``--max-memory SIZE``: the memory budget of the run's cost guard (:mod:`onnxprune.guard`)."""
    return click.option("--max-memory", metavar="SIZE", expose_value=False,
                        callback=lambda ctx, param, value: guard.set_max_memory(value),
                        help="refuse runs estimated to need more memory [half the available]")(fn)


def job_option(cls, name: str, **kw):
    """The click option of the job field ``cls.name``: its flag and help from the field's
    metadata (declared once, in :mod:`onnxprune.job`), its destination the field's name."""
    meta = next(f for f in fields(cls) if f.name == name).metadata
    return click.option(meta["flag"], name, help=meta["help"], **kw)


# Options several commands share: one declaration each (click builds a new parameter per use).
MODEL_ARGUMENT = click.argument("model", type=str)
SHAPE_OPTION = click.option("--shape", "shape_specs", multiple=True, metavar="NAME:DxD...",
                            help="concrete shape for a dynamic input, e.g. input:1x3x224x224")
RECOVER_OPTION = click.option(
    "--recover", "recover_steps", type=str, default=",".join(recover.STEPS), show_default=True,
    help=f"recovery steps with --calib (comma list of {', '.join(recover.ALL_STEPS)}; or none)")
FLOOR_OPTION = click.option("--floor", type=float, default=0.25, show_default=True,
                            help="keep at least this share of every group")
CACHE_OPTION = click.option("--cache", "cache_path", type=str, default=None, help="profile cache file")

_RUNTIME_OPTIONS = [
    click.option("--runtime", "runtime_name", type=click.Choice(runtimes.names()), default="ort",
                 show_default=True, help=", or ".join(f.help for f in runtimes.families())),
    click.option("--provider", default="cpu", show_default=True,
                 help=f"onnxruntime execution provider: {', '.join(sorted(runtimes.PROVIDERS))} "
                      "or any EP's full name"),
    click.option("--ep-library", default="", metavar="PATH",
                 help="register --provider from this plugin EP library"),
    click.option("--device", default="", help=runtimes.phrases("device_help")),
    click.option("--threads", type=int, default=1, show_default=True, help="intra-op threads"),
    click.option("--opt-level", type=click.Choice(sorted(runtimes.OPT_LEVELS)), default="all",
                 show_default=True, help="graph optimisation level"),
    click.option("--provider-option", "provider_options", multiple=True, metavar="KEY=VALUE",
                 help=f"{runtimes.phrases('options_help')} option, repeatable (e.g. device_id=0)"),
    click.option("--fp16", is_flag=True, help=f"half precision ({runtimes.phrases('fp16_help', ', ')})"),
    job_option(Deployment, "precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True),
    SHAPE_OPTION,
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
_RUNTIME_NAMES = ("runtime_name", "provider", "ep_library", "device", "threads", "opt_level",
                  "provider_options", "fp16", "precision", "ray_address", "ray_resources", "ray_actors", "ray_timeout")


def runtime_options(fn):
    """Options that describe the deployment session (shared by every measuring command); the
    command receives them as one :class:`Deployment` argument, ``deploy``."""

    @functools.wraps(fn)
    def wrapper(**kwargs):
        deploy = Deployment.of(**{k: kwargs.pop(k) for k in _RUNTIME_NAMES})
        progress.configure(not kwargs.pop("quiet") and not kwargs.get("as_json"))  # --json: silent
        return fn(deploy=deploy, **kwargs)

    return max_memory_option(_apply(wrapper, _RUNTIME_OPTIONS))


# --- data options (issue 20: image folders, sentence files; onnxprune.sources) --------------
CALIB_HELP = ("calibration inputs: a folder, glob or .txt list of images (see --preprocess), "
              "a .txt of sentences with --tokenizer, or a .npz keyed by input name")
CALIB_OPTION = click.option("--calib", "calib_path", type=str, default=None, help=CALIB_HELP)


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

    return _apply(wrapper, options)


def announce(quiet: bool = False):
    """What says, in one stdout line, how data files became inputs (None with ``quiet``)."""
    return None if quiet else lambda line: click.echo(f"data: {line}")
# --- end of data options ------------------------------------------------------------------


_PRUNE_OPTIONS = [
    MODEL_ARGUMENT,
    click.option("-o", "--output", required=True, help="where to write the pruned model"),
    job_option(Target, "target_ms", type=float, default=None),
    job_option(Target, "target_speedup", type=float, default=None),
    job_option(Target, "ratio", type=float, default=None),
    FLOOR_OPTION,
    click.option("--search", "method", type=click.Choice(["knapsack", "evolve"]), default="knapsack",
                 show_default=True, help="knapsack + hardware loop, optionally refined by evolution"),
    click.option("--report", "report_paths", multiple=True, metavar="PATH",
                 help="write a report here: PATH.html = one self-contained page (tables, plots, the "
                      "command, runtime and machine), otherwise JSON; repeatable"),
    CACHE_OPTION,
    click.option("--importance", type=click.Choice(list(KINDS)), default="auto", show_default=True,
                 help="which channels go first: reconstruction (least-squares refit cost, needs "
                      "--calib; the auto choice with --calib), l1/l2 weight norms (auto without), activation"),
    click.option("--value", type=click.Choice(["sensitivity", "importance"]), default="sensitivity",
                 show_default=True, help="what the search keeps: least measured output distortion "
                                         "(synthetic images without --calib), or summed importance"),
    CALIB_OPTION,
    click.option("--val", "val_path", type=str, default=None,
                 help="your own validation inputs, disjoint from --calib (same kinds of data): "
                      "fidelity and --max-drop are judged on them instead of held-out calibration "
                      "clusters"),
    click.option("--stages", type=int, default=1, show_default=True,
                 help="progressive pruning: reach the target in this many steps, each pruned, "
                      "recovered and measured again"),
    RECOVER_OPTION,
    click.option("--distill-seconds", type=float, default=recover.DISTILL_SECONDS, show_default=True,
                 help="time budget of the distill recovery step (needs torch: onnxprune[torch]); "
                      "decided once into a step count, cached, so a rerun makes the same steps"),
    click.option("--max-drop", type=float, default=None,
                 help="largest allowed fidelity drop (1 - top-1 agreement on held-out calib data); "
                      "alone: the fastest model within it"),
    click.option("--plot", "plot_path", type=str, default=None,
                 help="PNG: measured latency vs fidelity of every candidate judged, the chosen marked"),
    click.option("--exclude", multiple=True, metavar="REGEX", help="leave matching layers alone"),
    click.option("--no-latency", is_flag=True, help="--ratio mode: skip the quick latency check"),
]


def prune_options(fn):
    """The prune command's arguments and options, then the deployment and data options."""
    return _apply(runtime_options(data_options(fn)), _PRUNE_OPTIONS)


_ANALYZE_OPTIONS = [
    MODEL_ARGUMENT,
    click.option("--json", "as_json", is_flag=True, help="machine-readable output"),
    click.option("--importance", type=click.Choice(list(KINDS)), default="auto", show_default=True,
                 help="channel importance the table summarises (as for prune)"),
    CALIB_OPTION,
    click.option("--plot", "plot_dir", type=str, default=None,
                 help="write DIR/sensitivity.png: output distortion per group and kept share "
                      "(on --calib data, else synthetic images)"),
    SHAPE_OPTION,
]


def analyze_options(fn):
    """The analyze command's arguments and options."""
    return _apply(data_options(max_memory_option(fn)), _ANALYZE_OPTIONS)


_FRONTIER_OPTIONS = [
    MODEL_ARGUMENT,
    click.option("--speedups", type=str, default="1.1,1.2,1.3,1.5", show_default=True,
                 help="comma list of target speedups"),
    CALIB_OPTION,
    RECOVER_OPTION,
    FLOOR_OPTION,
    click.option("-o", "--output-dir", type=str, default=None,
                 help="write each model here as MODEL.<speedup>x.onnx (created if missing)"),
    click.option("--plot", "plot_path", type=str, default=None,
                 help="PNG: measured latency vs fidelity of every candidate, each target's model labelled"),
    click.option("--report", "report_paths", multiple=True, metavar="PATH",
                 help="PATH.html = one self-contained page of every point, otherwise JSON; repeatable"),
    CACHE_OPTION,
]


def frontier_options(fn):
    """The frontier command's arguments and options."""
    return _apply(runtime_options(data_options(fn)), _FRONTIER_OPTIONS)


_BENCH_OPTIONS = [
    click.argument("model_a", type=str),
    click.argument("model_b", type=str, required=False),
    click.option("--rounds", type=int, default=30, show_default=True,
                 help="timed rounds (interleaved A/B rounds when comparing)"),
    click.option("--warmup", type=int, default=5, show_default=True,
                 help="untimed runs of each model before timing"),
    click.option("--json", "as_json", is_flag=True, help="machine-readable output"),
    click.option("--data", "data_path", type=str, default=None,
                 help="inputs (like --calib: images, sentences or .npz): also report how closely "
                      "MODEL_B predicts what MODEL_A does"),
]


def bench_options(fn):
    """The bench command's arguments and options."""
    return _apply(runtime_options(data_options(fn)), _BENCH_OPTIONS)


_PROFILE_OPTIONS = [
    MODEL_ARGUMENT,
    click.option("--json", "as_json", is_flag=True, help="print the full curves as JSON"),
    click.option("--plot", "plot_dir", type=str, default=None,
                 help="write DIR/profile.png: every group's latency staircase in one figure"),
    click.option("--plot-groups", is_flag=True,
                 help="with --plot: also DIR/group_NNN.png per group (its layers and their sum)"),
    click.option("--cache", "cache_path", type=str, default=None,
                 help="measurement cache file [default: ~/.cache/onnxprune/profiles.json]"),
    click.option("--no-cache", is_flag=True, help="measure everything again, store nothing"),
    click.option("--group", "group_ids", type=int, multiple=True, help="only these group ids"),
    click.option("--rel-tol", type=float, default=0.05, show_default=True,
                 help="latency change that counts as a step"),
]


def profile_options(fn):
    """The profile command's arguments and options."""
    return _apply(runtime_options(fn), _PROFILE_OPTIONS)


def _apply(fn, options: list):
    """``fn`` with ``options`` (click decorators), the first one outermost: listed as given."""
    for option in reversed(options):
        fn = option(fn)
    return fn
