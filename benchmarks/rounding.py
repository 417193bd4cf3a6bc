"""int8 weight rounding: onnxruntime's nearest rounding against GPTQ (onnxprune.ptq), unpruned.

Setting as ``benchmarks/precision.py``: the tool's calibration split of 300 Tux Paint photos
(quantized and rounded on its fit part), agreement with the float model on its held-out part
and on every GCompris photo (another source). Per model and calibration method, rows
``nearest`` (the runtime quantizer's model) and ``gptq`` (same scales and graph, weights
rounded on 64 of the fit samples): top-1 / top-5 agreement and the mean KL divergence of the
class distribution (lower is closer), and the seconds the rounding took.

Usage: python benchmarks/rounding.py [--models mobilenet_v2,efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import onnx
from fidelity import agreement, data, logits, model_path, pct

from onnxprune import calib, fidelity, ptq, quantize
from onnxprune.preparation import prepare


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    args = ap.parse_args()
    print(f"{'model':18} {'method':10} {'rounding':8} {'held top-1':>10} {'held KL':>8} "
          f"{'test top-1':>10} {'test top-5':>10} {'test KL':>8} {'s':>4}")
    for name in args.models.split(","):
        path = model_path(name)
        calib_x, test_x, _ = data("realistic", name, 300)
        prep = prepare(path, calib_data={onnx.load(path).graph.input[0].name: calib_x}, precision="int8")
        held_x = next(iter(prep.split.held.values()))
        flt = quantize.prepared(prep.model)
        ref_h, ref_t = logits(prep.teacher, held_x), logits(prep.teacher, test_x)
        for method in quantize.CHOICES:
            how = quantize.Quantization(method, prepared=True)
            near = quantize.quantize(flt, prep.split.fit, how).model
            start = time.perf_counter()
            rounded = ptq.rounded(near, flt, calib.spread(calib.spread(prep.split.fit, how.samples),
                                                         quantize.GPTQ_SAMPLES))[0]
            seconds = time.perf_counter() - start
            for tag, model, took in (("nearest", near, 0.0), ("gptq", rounded, seconds)):
                got_h, got_t = logits(model, held_x), logits(model, test_x)
                h, t = agreement(ref_h, got_h, None), agreement(ref_t, got_t, None)
                print(f"{name:18} {method:10} {tag:8} {pct(h['top1']):>10} {fidelity.kl(ref_h, got_h).mean():>8.4f} "
                      f"{pct(t['top1']):>10} {pct(t['top5']):>10} {fidelity.kl(ref_t, got_t).mean():>8.4f} {took:>4.0f}",
                      flush=True)


if __name__ == "__main__":
    main()
