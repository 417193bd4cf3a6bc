"""Runtime-specific pruning: is the model pruned for a runtime the faster one on it?

For each model, prune to ``--speedup`` (default 1.3) twice with the runtime in the loop: once
for ONNX Runtime CPU, once for OpenVINO CPU (same threads, same floor). Then time both pruned
models against the original on both runtimes (interleaved rounds) and print a 2x2 table per
model: rows = pruned for, columns = measured on, cells = speedup over the original on that
runtime (and the pruned model's median ms). The diagonal should win its column if the
runtimes' staircases matter. Also writes one plot with the staircases (group latency vs width)
of a few groups on both runtimes.

Usage: python benchmarks/runtimes.py [--speedup 1.3] [--threads 1] [--plot runtimes.png]
       [--models PATH[@NAME:DxDxDxD] ...] [--rounds 60]
(default: models/mobilenet_v2.onnx, and a full-width ResNet18 with random weights at 112x112,
exported once with torch into $ONNXPRUNE_CACHE: the zoo's ResNet18 is too narrow to reach 1.3x)
Needs openvino (pip install -e '.[openvino]'). Profiles are cached (ONNXPRUNE_CACHE).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxprune import cachefile, runtimes
from onnxprune.backends import Local
from onnxprune.job import Job
from onnxprune.load import parse_shape_overrides
from onnxprune.pipeline import prune_to_target
from onnxprune.preparation import prepare
from onnxprune.profile import Cache, GroupProfile, default_cache_path, profile_model

RUNTIMES = ("ort", "openvino")
NAMES = {"ort": "ORT CPU", "openvino": "OpenVINO CPU"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speedup", type=float, default=1.3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--plot", default="runtimes.png")
    ap.add_argument("--models", nargs="+", default=[str(ROOT / "models" / "mobilenet_v2.onnx"),
                                                      resnet18() + "@input:1x3x112x112"])
    args = ap.parse_args()
    sources = {rt: Local(runtimes.RuntimeConfig(threads=args.threads, runtime=rt)) for rt in RUNTIMES}
    curves: dict[str, list[GroupProfile]] = {}
    for spec in args.models:
        path, _, shape = spec.partition("@")
        prep = prepare(path, parse_shape_overrides([shape] if shape else []))
        base = prep.model.SerializeToString()
        pruned = {}
        for rt, source in sources.items():
            tr = prune_to_target(prep, source, Job.of(prep.original, speedup=args.speedup,
                                                      cache_path=default_cache_path(),
                                                      progress=False))
            pruned[rt] = tr.result.model.SerializeToString()
            print(f"{Path(path).stem}: pruned for {NAMES[rt]} in {tr.profile_seconds:.0f} s of "
                  f"profiling; loop measured {tr.final.speedup:.2f}x", flush=True)
        print(f"\n{Path(path).stem}, target {args.speedup}x, {args.threads} thread(s): speedup over "
              "the original on the runtime of the column (pruned model's median ms)")
        print("| pruned for \\ measured on | " + " | ".join(NAMES[rt] for rt in RUNTIMES) + " |")
        print("|---|---|---|")
        for made_for in RUNTIMES:
            cells = []
            for rt, source in sources.items():
                cmp = source.compare(base, pruned[made_for], prep.feeds, rounds=args.rounds)
                cells.append(f"{cmp.speedup:.3f}x ({cmp.b.median_ms:.2f} ms)")
            print(f"| {NAMES[made_for]} | " + " | ".join(cells) + " |", flush=True)
        print()
        if not curves:  # the first model's staircases go on the plot (served from the cache)
            groups = prep.graph.prunable_groups()
            some = [groups[i] for i in sorted({len(groups) * k // 8 for k in (1, 3, 5, 7)})]
            curves = {rt: profile_model(prep.graph, source, Cache(default_cache_path(), source.key()),
                                        some, min_fraction=0.25, progress=False).groups
                      for rt, source in sources.items()}
    plot(curves, args.plot)


def resnet18() -> str:
    """Path of a full-width ResNet18 (widths 64..512, random weights), exported when missing."""
    path = Path(cachefile.cache_dir()) / "resnet18_full.onnx"
    if not path.exists():
        sys.path.insert(0, str(ROOT / "models"))
        import zoo
        from export import export_classifier

        export_classifier(zoo.resnet(zoo.basic_block, (2, 2, 2, 2), (64, 128, 256, 512), stem=64),
                          (1, 3, 112, 112), path)
    return str(path)


def plot(curves: dict[str, list[GroupProfile]], out: str) -> None:
    """One panel per group: latency vs width on both runtimes (the aligned widths the candidates
    are chosen from), step edges marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(curves[RUNTIMES[0]])
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3.4), squeeze=False)
    for k, ax in enumerate(axes[0]):
        for rt, style in zip(RUNTIMES, ("o-", "s--")):
            prof = curves[rt][k]
            widths = [w for w in sorted(prof.curve) if w % 4 == 0 or w == prof.width]
            ax.plot(widths, [prof.curve[w] for w in widths], style, ms=2, lw=1, label=NAMES[rt])
            ax.plot(prof.candidates, [prof.curve[c] for c in prof.candidates], "x", color="k", ms=5)
        ax.set_title(f"group {prof.group} ({prof.width} ch)", fontsize=8)
        ax.set_xlabel("channels kept", fontsize=8)
    axes[0][0].set_ylabel("latency of the group's layers (ms)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Staircases on two runtimes, same CPU (x: step edges)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
