"""A zoo of small ONNX models (architectures x exporter variants) for the onnxprune tests.

Every architecture is defined here in plain PyTorch (no torchvision) from a handful of shared
building blocks, at reduced width and with small inputs, so that each exported file stays
well under 1.5 MB. Weights are random but deterministic (the seed is derived from the
architecture name, so all ``resnet18*`` variants share the same weights) and non-degenerate:
BatchNorm/LayerNorm affine parameters are randomised (scale in [0.5, 1.5], non-zero shift) and
BatchNorm running statistics are then set from one random batch, so BN is never the identity,
no channel carries a zero constant, and activations stay O(1) through deep stacks.

Each exported file is post-processed and checked:
  * ``ir_version = min(ir_version, 10)``;
  * ``onnx.checker.check_model(path, full_check=True)``;
  * onnxruntime (CPU) output vs. torch output (run in float64): max abs diff < 1e-4, relative
    to the output magnitude where that exceeds 1 (fp32 variants; the fp16 and QDQ variants are
    compared with the fp32 torch model and only reported).

Usage (torch is a dev-only dependency; the test-suite only reads the committed .onnx files)::

    python models/zoo.py -o models/zoo                 # export everything, refresh README table
    python models/zoo.py --only resnet18 -o models/zoo # one model
    python models/zoo.py --list
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGE = (1, 3, 64, 64)
NUM_CLASSES = 10
TOLERANCE = 1e-4
TABLE_BEGIN = "<!-- zoo-table:begin -->"
TABLE_END = "<!-- zoo-table:end -->"

Act = Callable[[], nn.Module]


# --------------------------------------------------------------------------------------------
# Shared building blocks
# --------------------------------------------------------------------------------------------


class Fn(nn.Module):
    """A parameter-free module around a function (activations written out as plain ops)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _silu(x):  # Sigmoid + Mul
    return x * torch.sigmoid(x)


def _hsigmoid(x):  # Add + Clip + Div
    return torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


def _hswish(x):  # Add + Clip + Div + Mul
    return x * _hsigmoid(x)


SiLUx: Act = partial(Fn, _silu)
HSigmoidx: Act = partial(Fn, _hsigmoid)
HSwishx: Act = partial(Fn, _hswish)


def conv_bn(
    cin: int, cout: int, k: int = 3, s: int = 1, g: int = 1, act: Act | None = nn.ReLU
) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BatchNorm + optional activation."""
    conv = nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False)
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def bn_act_conv(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    """Pre-activation unit (DenseNet): BatchNorm + ReLU + Conv."""
    return nn.Sequential(
        nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, k, 1, k // 2, bias=False)
    )


def classifier(features: Sequence[nn.Module], channels: int, hidden: Act | None = None):
    """features -> global average pool -> flatten -> Linear (optionally Linear+act first)."""
    head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if hidden is not None:
        head += [nn.Linear(channels, 2 * channels), hidden()]
        channels *= 2
    return nn.Sequential(*features, *head, nn.Linear(channels, NUM_CLASSES))


class Residual(nn.Module):
    """``act(body(x) + shortcut(x))``; identity shortcut and no activation by default."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, act: Act | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


def residual_if_same(body: nn.Module, cin: int, cout: int, s: int) -> nn.Module:
    """Identity residual around ``body`` when its input and output shapes agree."""
    return Residual(body) if s == 1 and cin == cout else body


class SqueezeExcite(nn.Module):
    """x * gate(fc2(act(fc1(avgpool(x))))) with 1x1 convs as the fully connected layers."""

    def __init__(self, c: int, squeeze: int, act: Act = nn.ReLU, gate: Act = nn.Sigmoid):
        super().__init__()
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(c, squeeze, 1),
            act(),
            nn.Conv2d(squeeze, c, 1),
            gate(),
        )

    def forward(self, x):
        return x * self.scale(x)


def inverted_residual(
    cin: int, exp: int, cout: int, k: int, s: int, act: Act, se: SqueezeExcite | None = None
) -> nn.Module:
    """MobileNetV3 block / EfficientNet MBConv: expand 1x1, depthwise kxk, [SE], project 1x1."""
    layers: list[nn.Module] = [] if exp == cin else [conv_bn(cin, exp, 1, act=act)]
    layers.append(conv_bn(exp, exp, k, s, g=exp, act=act))
    if se is not None:
        layers.append(se)
    layers.append(conv_bn(exp, cout, 1, act=None))
    return residual_if_same(nn.Sequential(*layers), cin, cout, s)


# --------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------


def _shortcut(cin: int, cout: int, s: int) -> nn.Module | None:
    return None if s == 1 and cin == cout else conv_bn(cin, cout, 1, s, act=None)


def basic_block(cin: int, cout: int, s: int) -> Residual:
    body = nn.Sequential(conv_bn(cin, cout, 3, s), conv_bn(cout, cout, 3, act=None))
    return Residual(body, _shortcut(cin, cout, s), nn.ReLU)


def bottleneck(cin: int, cout: int, s: int, ratio: float = 0.25, groups: int = 1) -> Residual:
    """ResNet bottleneck (ratio 1/4); ResNeXt/RegNet-style with ``groups`` on the 3x3."""
    mid = int(cout * ratio)
    body = nn.Sequential(
        conv_bn(cin, mid, 1), conv_bn(mid, mid, 3, s, g=groups), conv_bn(mid, cout, 1, act=None)
    )
    return Residual(body, _shortcut(cin, cout, s), nn.ReLU)


def resnet(block: Callable[[int, int, int], nn.Module], depths, widths, stem: int = 16):
    layers: list[nn.Module] = [conv_bn(3, stem, 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = stem
    for stage, (depth, width) in enumerate(zip(depths, widths)):
        for i in range(depth):
            layers.append(block(cin, width, 2 if stage > 0 and i == 0 else 1))
            cin = width
    return classifier(layers, cin)


def resnet18():
    return resnet(basic_block, (2, 2, 2, 2), (16, 24, 32, 48))


def resnet50():
    return resnet(bottleneck, (3, 4, 6, 3), (32, 64, 96, 128))


def resnext():
    def block(cin: int, cout: int, s: int) -> Residual:  # groups 4 in stage 1 (64 wide), then 8
        return bottleneck(cin, cout, s, ratio=0.5, groups=4 if cout <= 64 else 8)

    return resnet(block, (1, 2, 2, 1), (64, 96, 128, 192), stem=32)


# (kernel, expanded, out, squeeze-excite, hard-swish, stride): MobileNetV3-Small, ~0.6x wide.
MOBILENET_V3 = [
    (3, 16, 16, True, False, 2),
    (3, 48, 24, False, False, 2),
    (3, 56, 24, False, False, 1),
    (5, 64, 32, True, True, 2),
    (5, 96, 32, True, True, 1),
    (5, 96, 48, True, True, 1),
    (5, 144, 64, True, True, 2),
    (5, 192, 64, True, True, 1),
]


def mobilenet_v3(hswish: Act = nn.Hardswish, hsigmoid: Act = nn.Hardsigmoid):
    layers: list[nn.Module] = [conv_bn(3, 16, 3, 2, act=hswish)]
    cin = 16
    for k, exp, cout, use_se, use_hs, s in MOBILENET_V3:
        se = SqueezeExcite(exp, max(8, exp // 4), nn.ReLU, hsigmoid) if use_se else None
        layers.append(inverted_residual(cin, exp, cout, k, s, hswish if use_hs else nn.ReLU, se))
        cin = cout
    layers.append(conv_bn(cin, 128, 1, act=hswish))
    return classifier(layers, 128, hidden=hswish)


def mobilenet_v3_manual_hswish():
    return mobilenet_v3(HSwishx, HSigmoidx)


# (expand ratio, kernel, first stride, out, repeats): the first EfficientNet-B0 stages, narrower.
EFFICIENTNET = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (4, 5, 2, 40, 2), (4, 3, 2, 64, 2)]


def efficientnet_b0ish():
    layers: list[nn.Module] = [conv_bn(3, 24, 3, 2, act=SiLUx)]
    cin = 24
    for t, k, s, cout, n in EFFICIENTNET:
        for i in range(n):
            se = SqueezeExcite(cin * t, max(4, cin // 4), SiLUx, nn.Sigmoid)
            layers.append(inverted_residual(cin, cin * t, cout, k, s if i == 0 else 1, SiLUx, se))
            cin = cout
    layers.append(conv_bn(cin, 256, 1, act=SiLUx))
    return classifier(layers, 256)


def channel_shuffle(x, groups: int = 2):
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2 unit: split (stride 1) or two branches (stride 2), concat, shuffle."""

    def __init__(self, cin: int, cout: int, s: int):
        super().__init__()
        mid = cout // 2
        self.branch1 = None
        if s > 1:
            self.branch1 = nn.Sequential(
                conv_bn(cin, cin, 3, s, g=cin, act=None), conv_bn(cin, mid, 1)
            )
        self.branch2 = nn.Sequential(
            conv_bn(cin if s > 1 else mid, mid, 1),
            conv_bn(mid, mid, 3, s, g=mid, act=None),
            conv_bn(mid, mid, 1),
        )

    def forward(self, x):
        if self.branch1 is None:
            keep, x = x.chunk(2, dim=1)
        else:
            keep = self.branch1(x)
        return channel_shuffle(torch.cat((keep, self.branch2(x)), 1))


def shufflenet_v2():
    layers: list[nn.Module] = [conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 24
    for cout, repeats in ((48, 3), (96, 4), (192, 2)):
        for i in range(repeats):
            layers.append(ShuffleBlock(cin, cout, 2 if i == 0 else 1))
            cin = cout
    layers.append(conv_bn(cin, 256, 1))
    return classifier(layers, 256)


class DenseBlock(nn.Module):
    """Each layer sees the concatenation of the block input and all earlier layer outputs."""

    def __init__(self, cin: int, n: int, growth: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                bn_act_conv(cin + i * growth, 4 * growth), bn_act_conv(4 * growth, growth, 3)
            )
            for i in range(n)
        )

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


def densenet(growth: int = 12, blocks: Sequence[int] = (4, 4, 4)):
    layers: list[nn.Module] = [conv_bn(3, 2 * growth, 3, 2), nn.MaxPool2d(3, 2, 1)]
    c = 2 * growth
    for i, n in enumerate(blocks):
        layers.append(DenseBlock(c, n, growth))
        c += n * growth
        if i < len(blocks) - 1:  # transition: halve channels and resolution
            layers += [bn_act_conv(c, c // 2), nn.AvgPool2d(2)]
            c //= 2
    layers += [nn.BatchNorm2d(c), nn.ReLU()]
    return classifier(layers, c)


yolo_conv = partial(conv_bn, act=nn.SiLU)


def yolo_bottleneck(c: int, shortcut: bool = True) -> nn.Module:
    body = nn.Sequential(yolo_conv(c, c, 3), yolo_conv(c, c, 3))
    return Residual(body) if shortcut else body


class C2f(nn.Module):
    """YOLOv8 CSP block: 1x1, chunk in two, chain bottlenecks on the second half, concat all."""

    def __init__(self, cin: int, cout: int, n: int = 1, shortcut: bool = True):
        super().__init__()
        c = cout // 2
        self.cv1 = yolo_conv(cin, 2 * c, 1)
        self.m = nn.ModuleList(yolo_bottleneck(c, shortcut) for _ in range(n))
        self.cv2 = yolo_conv((2 + n) * c, cout, 1)

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class C3(nn.Module):
    """YOLOv5 CSP block: two 1x1 branches (one through bottlenecks), concat, 1x1."""

    def __init__(self, cin: int, cout: int, n: int = 1, shortcut: bool = False):
        super().__init__()
        c = cout // 2
        self.cv1, self.cv2 = yolo_conv(cin, c, 1), yolo_conv(cin, c, 1)
        self.m = nn.Sequential(*(yolo_bottleneck(c, shortcut) for _ in range(n)))
        self.cv3 = yolo_conv(2 * c, cout, 1)

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained MaxPool k5 s1 p2, concat, 1x1."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        c = cin // 2
        self.cv1, self.cv2 = yolo_conv(cin, c, 1), yolo_conv(4 * c, cout, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))


class DetectBranch(nn.Module):
    """YOLOv8 decoupled head for one scale: box and class branches, concatenated."""

    def __init__(self, c: int, box: int = 16, cls: int = 8):
        super().__init__()
        self.box, self.cls = (
            nn.Sequential(yolo_conv(c, 16, 3), yolo_conv(16, 16, 3), nn.Conv2d(16, n, 1))
            for n in (box, cls)
        )

    def forward(self, x):
        return torch.cat((self.box(x), self.cls(x)), 1)


class Yolo(nn.Module):
    """YOLOv8-style detector (C2f backbone, SPPF, FPN/PAN neck with C2f and C3), 3 outputs."""

    def __init__(self, w: Sequence[int] = (16, 24, 32, 40, 56)):
        super().__init__()
        self.stem = nn.Sequential(
            yolo_conv(3, w[0], 3, 2), yolo_conv(w[0], w[1], 3, 2), C2f(w[1], w[1])
        )
        self.down3 = nn.Sequential(yolo_conv(w[1], w[2], 3, 2), C2f(w[2], w[2], 2))
        self.down4 = nn.Sequential(yolo_conv(w[2], w[3], 3, 2), C2f(w[3], w[3], 2))
        self.down5 = nn.Sequential(yolo_conv(w[3], w[4], 3, 2), C2f(w[4], w[4]), SPPF(w[4], w[4]))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top4 = C2f(w[4] + w[3], w[3], shortcut=False)
        self.top3 = C2f(w[3] + w[2], w[2], shortcut=False)
        self.pan3, self.pan4 = yolo_conv(w[2], w[2], 3, 2), yolo_conv(w[3], w[3], 3, 2)
        self.bottom4 = C3(w[2] + w[3], w[3])
        self.bottom5 = C3(w[3] + w[4], w[4])
        self.heads = nn.ModuleList(DetectBranch(c) for c in w[2:])

    def forward(self, x):
        p3 = self.down3(self.stem(x))
        p4 = self.down4(p3)
        p5 = self.down5(p4)
        t4 = self.top4(torch.cat((self.up(p5), p4), 1))
        n3 = self.top3(torch.cat((self.up(t4), p3), 1))
        n4 = self.bottom4(torch.cat((self.pan3(n3), t4), 1))
        n5 = self.bottom5(torch.cat((self.pan4(n4), p5), 1))
        return tuple(head(f) for head, f in zip(self.heads, (n3, n4, n5)))


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn(cin, cout), conv_bn(cout, cout))


class UNet(nn.Module):
    """Encoder (double conv + max pool), decoder (ConvTranspose 2x2 s2, skip concat)."""

    def __init__(self, w: Sequence[int] = (16, 24, 32, 48), n_out: int = 2):
        super().__init__()
        self.enc = nn.ModuleList(double_conv(a, b) for a, b in zip((3, *w), w))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, 2) for a, b in itertools.pairwise(w))
        self.dec = nn.ModuleList(double_conv(2 * a, a) for a in w[:-1])
        self.out = nn.Conv2d(w[0], n_out, 1)

    def forward(self, x):
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        for up, dec, skip in reversed(list(zip(self.ups, self.dec, skips))):
            x = dec(torch.cat((up(x), skip), 1))
        return self.out(x)


class Attention(nn.Module):
    """Multi-head self-attention written with MatMul/Softmax (no nn.MultiheadAttention)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (
            f(x).reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
            for f in (self.q, self.k, self.v)
        )
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    """Post-norm (BERT-style) encoder layer: LN(x + attn(x)), LN(x + FFN(x))."""

    def __init__(self, dim: int = 64, heads: int = 4, ffn: int = 128):
        super().__init__()
        self.attn, self.norm1 = Attention(dim, heads), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.ffn(x))


def transformer():
    return nn.Sequential(EncoderLayer(), EncoderLayer())


class NHWC(nn.Module):
    """Runs an NCHW module on an NHWC tensor: Transpose -> module -> Transpose (as TF exports)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def nhwc_tf():
    def unit(cin, cout, s=1, g=1):  # conv + BN (folded at export, as TF converters do)
        return NHWC(conv_bn(cin, cout, 3, s, g, act=None))

    block = nn.Sequential(unit(32, 32), nn.ReLU6(), unit(32, 32, g=32), nn.ReLU6(), unit(32, 32))
    return nn.Sequential(
        unit(3, 16, 2),
        nn.ReLU6(),
        unit(16, 32, 2),
        nn.ReLU6(),
        Residual(block, act=nn.ReLU6),
        unit(32, 64, 2),
        nn.ReLU6(),
        Fn(partial(torch.mean, dim=(1, 2))),
        nn.Linear(64, NUM_CLASSES),
    )


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Spec:
    """One zoo entry: an architecture and how it is exported."""

    arch: Callable[[], nn.Module]
    note: str
    shape: tuple[int, ...] = IMAGE
    outputs: tuple[str, ...] = ("output",)
    opset: int | None = 17  # None: newest opset the TorchScript exporter accepts
    fold: bool = True  # do_constant_folding (folds BN into Conv in eval mode)
    dynamo: bool = False
    half: bool = False
    external: bool = False
    dynamic: bool = False
    qdq_from: str | None = None  # quantize this zoo file instead of exporting

    @property
    def seed(self) -> int:
        return zlib.crc32(self.arch.__name__.encode())

    def exporter(self, opset: int) -> str:
        if self.qdq_from:
            return f"ORT quantize_static (QDQ) of {self.qdq_from}.onnx"
        kind = "dynamo" if self.dynamo else "TorchScript"
        fold = "constant folding" if self.fold else "no constant folding"
        return f"{kind}, opset {opset}" + ("" if self.dynamo else f", {fold}")


_R18 = Spec(
    resnet18, "ResNet-18 basic blocks, widths 16/24/32/48, BatchNormalization kept", fold=False
)
ZOO: dict[str, Spec] = {
    "resnet18": _R18,
    "resnet50": Spec(  # 128x128: at 64x64 session overhead dominated and 1.3x was out of reach
        resnet50, "ResNet-50 bottlenecks (3,4,6,3), out widths 32..128, BN kept, 128x128",
        shape=(1, 3, 128, 128), fold=False,
    ),
    "resnet18_bnfolded": dataclasses.replace(
        _R18, note="ResNet-18, BN folded into Conv", fold=True
    ),
    "mobilenet_v3": Spec(mobilenet_v3, "MobileNetV3-Small-ish, SE, native HardSwish/HardSigmoid"),
    "mobilenet_v3_manual_hswish": Spec(
        mobilenet_v3_manual_hswish, "MobileNetV3, hswish = x*clip(x+3,0,6)/6 as plain ops", opset=13
    ),
    "efficientnet_b0ish": Spec(efficientnet_b0ish, "MBConv + SE, SiLU as x*sigmoid(x), 4 stages"),
    "resnext": Spec(
        resnext, "ResNeXt bottlenecks (1,2,2,1), grouped 3x3 (groups 4 in stage 1, then 8)"
    ),
    "shufflenet_v2": Spec(shufflenet_v2, "ShuffleNetV2: chunk split, concat, channel shuffle"),
    "densenet": Spec(
        densenet, "DenseNet (growth 12, 3 blocks of 4), pre-activation BN, transitions"
    ),
    "yolo": Spec(
        Yolo,
        "YOLOv8-style: C2f/C3, SPPF, FPN/PAN neck, 3 decoupled heads",
        outputs=("p3", "p4", "p5"),
    ),
    "unet": Spec(UNet, "U-Net, ConvTranspose upsampling, skip concat, BN kept", fold=False),
    "transformer": Spec(
        transformer, "2-layer post-norm encoder, dim 64, 4 heads, FFN 128, GELU", shape=(1, 16, 64)
    ),
    "nhwc_tf": Spec(
        nhwc_tf,
        "NHWC input, Transpose around every Conv (TF-converter style)",
        shape=(1, 64, 64, 3),
    ),
    "resnet18_dynamo": dataclasses.replace(
        _R18, note="ResNet-18, dynamo exporter (its optimizer folds BN)", dynamo=True, opset=18
    ),
    "resnet18_opset11": dataclasses.replace(_R18, note="ResNet-18, opset 11", opset=11),
    "resnet18_opset_latest": dataclasses.replace(_R18, note="ResNet-18, newest opset", opset=None),
    "resnet18_fp16": dataclasses.replace(_R18, note="ResNet-18, fp16 weights and input", half=True),
    "resnet18_external": dataclasses.replace(_R18, note="ResNet-18, external data", external=True),
    "resnet18_dynamic": dataclasses.replace(
        _R18, note="ResNet-18, dynamic batch/H/W", dynamic=True
    ),
    "resnet18_qdq": dataclasses.replace(_R18, note="ResNet-18, QDQ int8", qdq_from="resnet18"),
}


# --------------------------------------------------------------------------------------------
# Build, export, check
# --------------------------------------------------------------------------------------------


def build(spec: Spec) -> nn.Module:
    """The architecture with deterministic, non-degenerate weights, in eval mode (fp32).

    Norm layers get random affine parameters (scale in [0.5, 1.5], shift of magnitude in
    [0.05, 0.3], random sign); BatchNorm running statistics are then set to the statistics of
    one random batch (so activations stay O(1) and BN is far from the identity).
    """
    torch.manual_seed(spec.seed)
    model = spec.arch()
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))]
    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(0.05, 0.3).mul_(torch.randn_like(m.bias).sign())
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # cumulative average: one step sets the batch statistics
        if any(isinstance(m, nn.BatchNorm2d) for m in norms):
            model.train()(torch.randn(8, *spec.shape[1:]))
    return model.eval()


def example_input(spec: Spec) -> torch.Tensor:
    return torch.randn(spec.shape, generator=torch.Generator().manual_seed(spec.seed + 1))


def _torchscript_export(model, x, path: Path, spec: Spec, opset: int) -> None:
    dynamic_axes = None
    if spec.dynamic:
        dynamic_axes = {"input": {0: "batch", 2: "height", 3: "width"}}
        dynamic_axes.update({name: {0: "batch"} for name in spec.outputs})
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["input"],
        output_names=list(spec.outputs),
        dynamic_axes=dynamic_axes,
        training=torch.onnx.TrainingMode.EVAL,
        do_constant_folding=spec.fold,
    )


def _export_newest(model, x, path: Path, spec: Spec) -> int:
    """TorchScript export at the newest opset it supports.

    Counts up from 17; an opset is supported if the export neither fails nor warns that the
    opset "is not supported" (torch 2.13's TorchScript exporter still writes opsets 21-23, but
    warns that 20 is the highest it supports).
    """
    newest = None
    for opset in itertools.count(17):
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*is not supported")
            try:
                _torchscript_export(model, x, path, spec, opset)
            except (UserWarning, ValueError, RuntimeError, torch.onnx.errors.OnnxExporterError):
                break
        newest = opset
    if newest is None:
        raise RuntimeError("the TorchScript exporter supports no opset >= 17")
    _torchscript_export(model, x, path, spec, newest)
    return newest


def _quantize(src: Path, path: Path, spec: Spec) -> None:
    """ORT static QDQ quantization (int8 per-channel weights, int8 activations) of ``src``.

    Follows ORT's recipe: ``quant_pre_process`` first (shape inference + ORT graph optimisation,
    which folds BatchNormalization into Conv), then ``quantize_static`` calibrated on five
    random inputs; opset imports that no node uses are dropped afterwards.
    """
    import logging
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(spec.seed)
            self.samples = iter(
                {"input": rng.standard_normal(spec.shape).astype(np.float32)} for _ in range(5)
            )

        def get_next(self):
            return next(self.samples, None)

    root = logging.getLogger()
    level, _ = root.level, root.setLevel(logging.ERROR)  # ORT's "run pre-processing" advice
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(
            str(pre),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
    root.setLevel(level)
    proto = onnx.load(str(path))
    used = {n.domain for n in proto.graph.node} | {""}
    kept = [o for o in proto.opset_import if o.domain in used]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    onnx.save(proto, str(path))


def export(name: str, out_dir: Path) -> dict:
    """Export zoo entry ``name`` to ``out_dir/<name>.onnx``, check it, return its summary."""
    import onnx

    spec = ZOO[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    model, x = build(spec), example_input(spec)
    if spec.half:
        model, x = model.half(), x.half()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.qdq_from:
            _quantize(out_dir / f"{spec.qdq_from}.onnx", path, spec)
        elif spec.dynamo:
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=True,
                opset_version=spec.opset,
                input_names=["input"],
                output_names=list(spec.outputs),
                external_data=False,
                verbose=False,
            )
        elif spec.opset is None:
            _export_newest(model, x, path, spec)
        else:
            _torchscript_export(model, x, path, spec, spec.opset)
    proto = onnx.load(str(path))
    proto.ir_version = min(proto.ir_version, 10)
    data = out_dir / f"{name}.data"
    data.unlink(missing_ok=True)  # onnx appends to an existing external-data file
    onnx.save(
        proto,
        str(path),
        save_as_external_data=spec.external,
        location=data.name if spec.external else None,
        size_threshold=0,
    )
    onnx.checker.check_model(str(path), full_check=True)
    return summarize(path) | check_ort(path, spec)


def check_ort(path: Path, spec: Spec) -> dict[str, float]:
    """Max abs diff of onnxruntime (CPU) outputs vs. torch, in float64 and in float32.

    ``max_diff`` compares with the torch model run in float64, i.e. the exact function both
    runtimes approximate; ``diff_fp32`` compares with torch's own float32 output (both
    float32 runtimes round differently; in ``resnet50`` torch's share is the larger one);
    ``out_max`` is the largest output magnitude. For the fp32 exports ``max_diff`` must be
    below ``1e-4 * max(1, out_max)``: absolute 1e-4 for outputs up to 1, relative beyond
    (the YOLO heads reach ~8). The fp16 and QDQ files are compared with the same fp32 model
    and only reported.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [example_input(spec)]
    if spec.dynamic:  # another batch size and spatial size through the same file
        inputs.append(torch.randn(2, 3, 80, 96, generator=torch.Generator().manual_seed(spec.seed)))
    refs = {"diff_fp32": (build(spec), torch.float32)}
    refs["max_diff"] = (build(spec).double(), torch.float64)
    diffs = dict.fromkeys([*refs, "out_max"], 0.0)
    for x in inputs:
        feed = x.numpy().astype(np.float16 if spec.half else np.float32)
        outs = sess.run(None, {"input": feed})
        for key, (model, dtype) in refs.items():
            with torch.no_grad():
                ref = model(x.to(dtype))
            for out, r in zip(outs, ref if isinstance(ref, tuple) else (ref,), strict=True):
                err = np.abs(out.astype(np.float64) - r.numpy()).max()
                diffs[key] = max(diffs[key], float(err))
                diffs["out_max"] = max(diffs["out_max"], float(r.abs().max()))
    limit = TOLERANCE * max(1.0, diffs["out_max"])
    if not (spec.half or spec.qdq_from) and diffs["max_diff"] >= limit:
        raise AssertionError(f"{path.name}: onnxruntime vs torch {diffs}, limit {limit:.3g}")
    return diffs


def summarize(path: Path) -> dict:
    """File facts for the README table and the CLI report."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    size = sum(p.stat().st_size for p in path.parent.glob(f"{path.stem}.*"))

    def shapes(values):
        return ", ".join(
            f"{v.name} {onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower()} ["
            + ",".join(d.dim_param or str(d.dim_value) for d in v.type.tensor_type.shape.dim)
            + "]"
            for v in values
        )

    return {
        "name": path.stem,
        "size": size,
        "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "ir": proto.ir_version,
        "inputs": shapes(proto.graph.input),
        "outputs": shapes(proto.graph.output),
        "ops": Counter(n.op_type for n in proto.graph.node),
    }


def _ops(counts: Counter) -> str:
    return ", ".join(
        f"{op} {n}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def table(out_dir: Path) -> str:
    rows = [
        "| file | architecture | exporter | IR | input | outputs | size | op types |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, spec in ZOO.items():
        path = out_dir / f"{name}.onnx"
        if not path.is_file():
            continue
        s = summarize(path)
        files = f"`{name}.onnx`" + (f" + `{name}.data`" if spec.external else "")
        rows.append(
            f"| {files} | {spec.note} | {spec.exporter(s['opset'])} | {s['ir']} | {s['inputs']} "
            f"| {s['outputs']} | {s['size'] / 1024:.0f} KiB | {_ops(s['ops'])} |"
        )
    return "\n".join(rows)


def refresh_readme(out_dir: Path) -> None:
    """Replace the generated table in ``out_dir/README.md`` (between the zoo-table markers)."""
    readme = out_dir / "README.md"
    if not readme.is_file():
        return
    text = readme.read_text()
    head, sep, rest = text.partition(TABLE_BEGIN)
    _, sep2, tail = rest.partition(TABLE_END)
    if sep and sep2:
        readme.write_text(f"{head}{TABLE_BEGIN}\n{table(out_dir)}\n{TABLE_END}{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("models/zoo"))
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(ZOO),
        metavar="NAME",
        help="export only NAME (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list the zoo and exit")
    parser.add_argument(
        "--table", action="store_true", help="only refresh OUTPUT/README.md's table and print it"
    )
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(f"{n:28} {s.note}" for n, s in ZOO.items()))
        return
    if args.table:
        refresh_readme(args.output)
        print(table(args.output))
        return
    names = args.only or list(ZOO)
    for name in names:  # QDQ entries quantize another zoo file: export that first if missing
        src = ZOO[name].qdq_from
        if src and src not in names and not (args.output / f"{src}.onnx").is_file():
            export(src, args.output)
    for name in names:
        s = export(name, args.output)
        print(
            f"{name:28} {s['size'] / 1024:7.0f} KiB  opset {s['opset']:2}  IR {s['ir']:2}  "
            f"diff {s['max_diff']:.1e} (fp32 {s['diff_fp32']:.1e}, |out| {s['out_max']:.2g})  "
            f"in {s['inputs']}  out {s['outputs']}"
        )
    refresh_readme(args.output)


if __name__ == "__main__":
    main()
