"""Latency staircases on this machine's CPU (ONNX Runtime or OpenVINO), and the self-comparison
check.

Prints three tables:
1. 3x3 conv, 64 input channels, 28x28: latency over output channels (every width 8..128 in
   steps of 4 plus the widths around each multiple of 16) in fp32 and in int8 (the quantizer's
   QDQ pattern), with the step edges the profiler finds in each, and the issue's one-row
   summary (Cout 8 16 17 32 33 48 49 56 64 65 96 112 128).
2. 3x3 conv, 128 output channels, 14x14: latency over input channels 40..64 (isolated).
3. ``bench`` of a model against itself (interleaved ratio; should be 1.00 +- 0.03).

Usage: python benchmarks/staircase.py [--runtime ort|openvino] [--threads 1] [--count 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

import tiny

from onnxprune import load_model, runtimes
from onnxprune.backends import Local
from onnxprune.inputs import random_feeds
from onnxprune.preparation import prepare
from onnxprune.profile import Cache, LayerBench, group_layers, profile_model

PRECISIONS = ("fp32", "int8")
ISSUE_WIDTHS = (8, 16, 17, 32, 33, 48, 49, 56, 64, 65, 96, 112, 128)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", choices=runtimes.names(), default="ort")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--count", type=int, default=2, help="measurements per width (best kept)")
    args = ap.parse_args()
    source = Local(runtimes.RuntimeConfig(threads=args.threads, runtime=args.runtime), rounds=7)

    prep = prepare(tiny.single_conv())
    group = prep.graph.prunable_groups()[0]
    benches = {p: LayerBench(prep.graph, source, Cache(None, source.key()), p) for p in PRECISIONS}
    out_layer = next(layer for layer in group_layers(prep.graph, group) if layer.mode == "out")
    widths = sorted(set(range(8, 129, 4)) | {w + d for w in range(16, 129, 16) for d in (-1, 1)} - {129})
    print(f"3x3 conv 64->Cout @28x28, {source.key()}")
    print(f"{'Cout':>5} " + " ".join(f"{p + ' ms':>9}" for p in PRECISIONS))
    for w in widths:
        print(f"{w:>5} " + " ".join(f"{benches[p].time(out_layer, w, count=args.count):9.3f}"
                                    for p in PRECISIONS))
    for p in PRECISIONS:
        run = profile_model(prep.graph, source, Cache(None, source.key()), progress=False, precision=p)
        print(f"profiler step edges in {p} (candidate widths):", run.groups[0].candidates,
              f"({run.measured} layer measurements, {run.seconds:.1f} s)")
    print("\n| Cout | " + " | ".join(map(str, ISSUE_WIDTHS)) + " |")
    print("|---" * (len(ISSUE_WIDTHS) + 1) + "|")
    for p in PRECISIONS:
        print(f"| {args.runtime} {p} | " + " | ".join(
            f"{benches[p].time(out_layer, w, count=args.count):.3f}" for w in ISSUE_WIDTHS) + " |")

    prep_in = prepare(tiny.single_conv(cin=16, cout=64, hw=14, head=128, head_k=3))
    layer_in = next(layer for layer in group_layers(prep_in.graph, prep_in.graph.prunable_groups()[0])
                    if layer.mode == "in")
    lb_in = LayerBench(prep_in.graph, source, Cache(None, source.key()))
    print("\n3x3 conv Cin->128 @14x14 (consumer side, isolated)")
    print(f"{'Cin':>5} {'ms':>7}")
    for w in range(40, 65):
        print(f"{w:>5} {lb_in.time(layer_in, w, count=args.count):7.4f}")

    model = load_model(str(Path(__file__).resolve().parents[1] / "models" / "mobilenet_v2.onnx"))
    feeds = random_feeds(model)
    data = model.SerializeToString()
    print("\nbench MobileNetV2 vs itself (interleaved, 5 repetitions of 30 rounds)")
    for _ in range(5):
        cmp = source.compare(data, data, feeds)
        print(f"  ratio {cmp.speedup:.3f}  (p10 {cmp.ratio_p10:.3f}, p90 {cmp.ratio_p90:.3f})")


if __name__ == "__main__":
    main()
