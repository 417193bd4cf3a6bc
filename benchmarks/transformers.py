"""Transformers pruned to a measured speedup: attention heads and FFN widths, fidelity kept.

Models (real weights trained here, offline):

* ``vit_mnist``: a ViT trained on MNIST digits (``models/vit_mnist.py``; TorchScript export).
  Calibration = 256 training digits, test = 1,000 held-out digits: accuracy, top-1 agreement
  with the unpruned model.
* ``text_encoder``: a BERT-like sentence encoder (MiniLM-like shape; ``models/text_encoder.py``
  trains it on docstring sentences, cached under ``out/``). Calibration = 128 sentences of one
  source, test = sentences of *other* sources: mean-pooled sentence-embedding cosine with the
  unpruned model, and nearest-neighbour agreement among the test sentences.

Per target speedup (ORT CPU, 1 thread, sequence length as exported): the measured speedup, the
heads kept per layer and the FFN widths, the fidelity, and the tool's seconds (profile, table,
search, recovery). The speedup holds for the profiled sequence length.

Usage: python benchmarks/transformers.py [--models vit_mnist,text_encoder] [--speedups 1.3,1.5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from onnxprune import runtimes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from onnxprune import OnnxPruneError, calib, fidelity
from onnxprune.job import Job
from onnxprune.pipeline import search_frontier
from onnxprune.preparation import prepare
from onnxprune.profile import default_cache_path

OUT = ROOT / "out"


def material(name: str) -> tuple[str, calib.Samples, calib.Samples, np.ndarray | None]:
    """(model path, calibration samples, test samples, test labels or None)."""
    if name == "vit_mnist":
        from mnist import mnist
        x_test, y_test = mnist("test")
        return str(ROOT / "models" / "vit_mnist.onnx"), {"x": mnist("calib")[0]}, {"x": x_test}, y_test
    OUT.mkdir(exist_ok=True)
    model, cal, test = OUT / "text_encoder.onnx", OUT / "text_calib.npz", OUT / "text_test.npz"
    if not (model.exists() and cal.exists() and test.exists()):
        subprocess.run([sys.executable, str(ROOT / "models" / "text_encoder.py"), "--out", str(model),
                        "--calib", str(cal), "--test", str(test)], check=True)
    return str(model), npz(cal), npz(test), None


def npz(path: Path) -> calib.Samples:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def structure(prep, widths: dict[int, int]) -> str:
    """Kept heads per attention layer and kept FFN units, as ``heads 12,10,.. | ffn 1536,..``."""
    spaces = prep.graph.group_spaces()
    edges = prep.graph.spaces.edges(data="how")
    heads, ffn = [], []
    for group in prep.graph.prunable_groups():
        kept = widths.get(group.id, group.width)
        is_heads = any(how.startswith("heads of") for _, dst, how in edges if dst in spaces[group.id])
        (heads if is_heads else ffn).append(f"{kept}/{group.width}" if kept != group.width else str(kept))
    return f"heads {','.join(heads) or '-'} | ffn {','.join(ffn) or '-'}"


def scores(prep, pruned, test: calib.Samples, labels: np.ndarray | None) -> str:
    fid = fidelity.fidelity(fidelity.outputs_on(prep.original, test), pruned, test)
    if fid.neighbours is not None:
        return f"cosine {fid.embedding_cosine:.4f}  NN agreement {fid.neighbours:.1%}"
    got = next(iter(fidelity.outputs_on(pruned, test).values()))
    acc = f"  accuracy {np.mean(got.argmax(1) == labels):.1%}" if labels is not None else ""
    return f"top-1 agreement {fid.agreement:.1%}  top-5 {share(fid.top5)}{acc}"


def share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vit_mnist,text_encoder")
    ap.add_argument("--speedups", default="1.3,1.5")
    args = ap.parse_args()
    speedups = [float(s) for s in args.speedups.split(",")]
    config = runtimes.RuntimeConfig()
    for name in args.models.split(","):
        path, cal, test, labels = material(name)
        start = time.perf_counter()
        prep = prepare(path, calib_data=cal)
        print(f"{name}: unpruned  {scores(prep, prep.original, test, labels)}", flush=True)
        try:
            results = search_frontier(prep, config, Job.of(prep.original, speedups=speedups,
                                                           cache_path=default_cache_path(),
                                                           progress=False))
        except OnnxPruneError as exc:
            print(f"{name}: failed: {exc}")
            continue
        seconds = time.perf_counter() - start
        print(f"{'model':13} {'target':>6} {'measured':>8}  {'kept':40} fidelity on test data")
        for s, tr in zip(sorted(speedups), results):
            if tr.result is None:
                print(f"{name:13} {s:>6.2f} already met")
                continue
            print(f"{name:13} {s:>6.2f} {tr.final.speedup:>7.3f}x  {structure(prep, tr.widths):40} "
                  f"{scores(prep, tr.result.model, test, labels)}", flush=True)
        print(f"{name}: tool {seconds:.0f} s for {len(speedups)} targets (shared profile and table)")


if __name__ == "__main__":
    main()
