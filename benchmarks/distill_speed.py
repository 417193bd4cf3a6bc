"""Speed of the torch executor distill trains with: samples/s of MobileNetV2 (batch 32).

Rows, measured in interleaved rounds in one process (the machine's load average is printed
with every round: on a shared machine only the ratios within a round mean much):

* ``before``: the executor as of git revision ``--before`` (node by node over a name dict,
  BatchNormalization as its own op, eval under ``no_grad``); CPU only. It is loaded from the
  single file ``onnxprune/torchexec.py`` of that revision, so ``--before`` names a revision from
  before torchexec became a package (656f99b or older);
* ``fused``: this executor (steps over a register file, Conv+BN as one op, values dropped
  after their last reader), eval under ``inference_mode``;
* ``fused + channels-last``: and image activations in the channels-last memory format.

``eval`` is a forward pass (teacher or held-out evaluation); ``train`` is forward, backward and
an Adam step of every trainable weight (a distill step without its teacher pass and views).

Usage: python benchmarks/distill_speed.py [--batch 32] [--rounds 3] [--threads N]
       [--before f39b3e0] [--model models/mobilenet_v2.onnx]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from onnxprune import distill, load, torchexec


def old_executor(rev: str):
    """The ``Executor`` class of the single-file ``onnxprune/torchexec.py`` at git revision
    ``rev`` (or in the file ``rev``, where git is not at hand)."""
    if os.path.isfile(rev):
        source = Path(rev).read_text()
    else:
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:onnxprune/torchexec.py"],
                               check=False, capture_output=True, text=True)
        if shown.returncode:
            sys.exit(f"--before {rev}: no single-file onnxprune/torchexec.py there (it became a "
                     "package after 656f99b)")
        source = shown.stdout
    path = Path(tempfile.mkdtemp()) / "torchexec_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("onnxprune.torchexec_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Executor


def timed(fn, samples: int) -> float:
    """samples/s of one call of ``fn`` (after one warm-up call)."""
    fn()
    tick = time.perf_counter()
    fn()
    return samples / (time.perf_counter() - tick)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "mobilenet_v2.onnx"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--before", default="f39b3e0",
                    help="git revision (or file) of the 'before' executor; '' to leave it out")
    args = ap.parse_args()
    dev = distill.device(torch)
    threads = args.threads or distill.threads()
    torch.set_num_threads(threads)
    model = load.normalise(load.load_model(args.model), None)
    names = torchexec.trainable_names(model)
    rows: dict[str, tuple] = {}
    if dev.type == "cpu" and args.before:
        rows["before"] = (old_executor(args.before)(model, names), torch.no_grad)
    rows["fused"] = (torchexec.Executor(model, names).place(dev), torch.inference_mode)
    rows["fused + channels-last"] = (torchexec.Executor(model, names, channels_last=True).place(dev),
                                     torch.inference_mode)
    shape = (args.batch, *[d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:])
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32)).to(dev)
    feed = {model.graph.input[0].name: x}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"{Path(args.model).name}, batch {args.batch}, {dev}, {threads} torch threads, "
          f"{os.cpu_count()} cores; samples/s")
    print(f"{'round':>5} {'executor':24} {'eval':>8} {'train':>8} {'load avg':>9}")
    results: dict[str, list] = {name: [] for name in rows}
    for r in range(args.rounds):
        for name, (net, mode) in rows.items():
            opt = torch.optim.Adam(net.params, 1e-5)

            def evaluate(net=net, mode=mode):
                with mode():
                    net(feed)
                sync()

            def train(net=net, opt=opt):
                out = net(feed)
                loss = sum(v.float().pow(2).mean() for v in out.values())
                opt.zero_grad()
                loss.backward()
                opt.step()
                sync()

            e, t = timed(evaluate, args.batch), timed(train, args.batch)
            results[name].append((e, t))
            load_avg = os.getloadavg()[0]
            print(f"{r:>5} {name:24} {e:>8.2f} {t:>8.2f} {load_avg:>9.2f}", flush=True)
    print(f"{'best':>5} {'executor':24} {'eval':>8} {'train':>8}")
    for name, values in results.items():
        print(f"{'':>5} {name:24} {max(v[0] for v in values):>8.2f} {max(v[1] for v in values):>8.2f}")


if __name__ == "__main__":
    main()
