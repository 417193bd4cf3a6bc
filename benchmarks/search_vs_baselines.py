"""Staircase-aware search vs uniform --ratio vs FLOPs-proportional pruning, at equal latency.

For each example model and speedup, every method is driven (by bisection on its own knob, with
the model measured on ORT CPU, interleaved against the original) to the same measured latency
band as the staircase-aware search; the table prints kept importance and measured speedup.

* search: ``prune_to_target`` (step-edge candidates, knapsack, hardware in the loop);
* uniform: the same share of every group removed (``--ratio``), least important channels;
* flops: the same knapsack and importance, but every width is a candidate and the cost of a
  width is its MACs (a FLOPs-proportional latency model), the MAC budget bisected.

Usage: python benchmarks/search_vs_baselines.py [--speedups 1.3 1.6] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxprune import OnnxPruneError, runtimes
from onnxprune.backends import Local
from onnxprune.job import Job
from onnxprune.load import parse_shape_overrides
from onnxprune.pipeline import prune_to_target
from onnxprune.preparation import prepare
from onnxprune.profile import default_cache_path, group_layers
from onnxprune.rewrite import apply_plan
from onnxprune.search import flops_choices, kept_importance, plan_for, solve

MODELS = {
    "mobilenet_v2 (ImageNet)": (ROOT / "models" / "mobilenet_v2.onnx", ()),
    "resnet18 (zoo, 224x224)": (ROOT / "models" / "zoo" / "resnet18_dynamic.onnx",
                                ("input:1x3x224x224",)),
}


def macs_per_channel(g) -> dict[int, float]:
    """MACs a group's channel costs, summed over the layers it touches."""
    out = {}
    nodes = {n.name: n for n in g.model.graph.node}
    for group in g.prunable_groups():
        total = 0.0
        for layer in group_layers(g, group):
            node = nodes[layer.node]
            w = g.consts[node.input[1]]
            out_elems = float(np.prod(g.shapes[node.output[0]]))
            if node.op_type in ("Conv", "ConvTranspose"):
                macs = out_elems * float(np.prod(w.shape[1:]))
            else:
                macs = out_elems * float(w.shape[0] if node.op_type == "MatMul" else min(w.shape))
            total += macs * layer.repeat / max(layer.dim(group.width), 1)
        out[group.id] = total
    return out


def kept_share(g, widths: dict[int, int]) -> float:
    groups = g.prunable_groups()
    kept = sum(kept_importance(gr, widths.get(gr.id, gr.width)) for gr in groups)
    return kept / sum(float(gr.importance.sum()) for gr in groups)


def bisect(knob_lo: float, knob_hi: float, widths_of, speed_of, goal: float, steps: int = 9):
    """Find the knob whose measured speedup is closest to ``goal`` from above (fewest cuts)."""
    best = None
    lo, hi = knob_lo, knob_hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        widths = widths_of(mid)
        s = speed_of(widths)
        if s >= goal and (best is None or s < best[1]):
            best = (widths, s)
        if s >= goal:
            hi = mid
        else:
            lo = mid
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speedups", type=float, nargs="+", default=[1.3, 1.6])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    source = Local(runtimes.RuntimeConfig(threads=args.threads))
    rows = []
    for name, (path, shape_specs) in MODELS.items():
        prep = prepare(str(path), parse_shape_overrides(shape_specs))
        g = prep.graph
        base = prep.model.SerializeToString()
        groups = g.prunable_groups()

        def speed_of(widths, base=base, prep=prep, g=g):
            model = apply_plan(g, plan_for(g, widths)).SerializeToString()
            return source.compare(base, model, prep.feeds, rounds=20).speedup

        def uniform(r, groups=groups):
            return {gr.id: max(gr.width - round(r * gr.width), gr.width - len(gr.prunable), 1)
                    for gr in groups}

        choices = flops_choices(g, macs_per_channel(g), floor=0.25)
        full_macs = sum(c.cost[-1] for c in choices)
        floor_macs = sum(c.cost[0] for c in choices)

        def flops(frac, choices=choices, span=full_macs - floor_macs):
            return solve(choices, frac * span)

        for sp in args.speedups:
            try:
                tr = prune_to_target(prep, source, Job.of(prep.original, speedup=sp,
                                                          cache_path=default_cache_path(),
                                                          progress=False))
            except OnnxPruneError as exc:
                print(f"{name} x{sp}: {exc}")
                continue
            ours = tr.final.speedup
            rows.append((name, sp, "search (step edges + HILP)", kept_share(g, tr.widths), ours))
            got = bisect(0.0, 0.75, uniform, speed_of, ours)
            rows.append((name, sp, "uniform --ratio", *(
                (kept_share(g, got[0]), got[1]) if got else (float("nan"), float("nan")))))
            got = bisect(0.0, 1.0, flops, speed_of, ours)
            rows.append((name, sp, "FLOPs-proportional knapsack", *(
                (kept_share(g, got[0]), got[1]) if got else (float("nan"), float("nan")))))
    print(f"\n{'model':26} {'target':>6} {'method':30} {'kept importance':>16} {'speedup':>8}")
    for name, sp, method, kept, s in rows:
        kept_s = "unreachable" if np.isnan(kept) else f"{kept:.1%}"
        s_s = "-" if np.isnan(s) else f"{s:.3f}x"
        print(f"{name:26} {sp:>6.2f} {method:30} {kept_s:>16} {s_s:>8}")
    print("\nkept importance: share of the prunable groups' summed channel importance (L1 norms); "
          "baselines are bisected to the smallest measured speedup >= the search's.")


if __name__ == "__main__":
    main()
