"""Detector-like CNNs for tool-time benchmarks, built here (no pretrained weights exist offline;
what the tool's time depends on is the structure: groups, resolution, neck and head).

* ``yolov8n``: YOLOv8n's layout (width 0.25, depth 0.33): Conv-BN-SiLU, C2f blocks (split,
  bottlenecks, concat), SPPF, a PAN-FPN neck (upsample + concat), the decoupled head at 3 scales
  (box 4 x 16 bins, 80 classes), outputs concatenated to ``[1, 144, 2100]``; 1x3x320x320.
* ``ppocr_det``: a PP-OCR-det-like text detector at 1x3x640x640: an inverted-residual backbone
  (depthwise 3x3), an FPN neck (lateral 1x1, upsample-add, 3x3 smoothing, the four levels
  upsampled and concatenated) and a DB head (conv, two transposed-conv 2x upsamplings,
  sigmoid) giving a 1x1x640x640 probability map: about 1.4 GMAC, 25 prunable groups.

Weights are random (seeded), BatchNorm statistics and affine parameters randomised so no BN is
an identity; exported with the TorchScript exporter at opset 17 and checked in onnxruntime.

Usage: python benchmarks/detectors.py [yolov8n] [ppocr_det] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

SHAPES = {"yolov8n": (1, 3, 320, 320), "ppocr_det": (1, 3, 640, 640)}


def _modules():
    """The torch definitions (torch is a benchmark dependency: imported only when building)."""
    import torch
    from torch import nn
    from zoo import SPPF  # models/zoo.py: the same Conv-BN-SiLU, pools and concat

    class ConvBN(nn.Sequential):
        def __init__(self, cin, cout, k=1, s=1, groups=1, act=nn.SiLU):
            super().__init__(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(cout), act() if act else nn.Identity())

    class Bottleneck(nn.Module):
        def __init__(self, c, shortcut=True):
            super().__init__()
            self.cv1, self.cv2, self.add = ConvBN(c, c, 3), ConvBN(c, c, 3), shortcut

        def forward(self, x):
            y = self.cv2(self.cv1(x))
            return x + y if self.add else y

    class C2f(nn.Module):
        def __init__(self, cin, cout, n=1, shortcut=False):
            super().__init__()
            self.c = cout // 2
            self.cv1 = ConvBN(cin, 2 * self.c)
            self.cv2 = ConvBN((2 + n) * self.c, cout)
            self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

        def forward(self, x):
            y = list(self.cv1(x).split((self.c, self.c), 1))
            for m in self.m:
                y.append(m(y[-1]))
            return self.cv2(torch.cat(y, 1))

    class YOLOv8n(nn.Module):
        def __init__(self, nc=80, reg_max=16):
            super().__init__()
            self.b1 = nn.Sequential(ConvBN(3, 16, 3, 2), ConvBN(16, 32, 3, 2), C2f(32, 32, 1, True))
            self.b2 = nn.Sequential(ConvBN(32, 64, 3, 2), C2f(64, 64, 2, True))
            self.b3 = nn.Sequential(ConvBN(64, 128, 3, 2), C2f(128, 128, 2, True))
            self.b4 = nn.Sequential(ConvBN(128, 256, 3, 2), C2f(256, 256, 1, True), SPPF(256, 256))
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.n1, self.n2 = C2f(384, 128), C2f(192, 64)
            self.d1, self.n3 = ConvBN(64, 64, 3, 2), C2f(192, 128)
            self.d2, self.n4 = ConvBN(128, 128, 3, 2), C2f(384, 256)
            box, cls = 64, 80
            self.box = nn.ModuleList(nn.Sequential(ConvBN(c, box, 3), ConvBN(box, box, 3),
                                                   nn.Conv2d(box, 4 * reg_max, 1)) for c in (64, 128, 256))
            self.cls = nn.ModuleList(nn.Sequential(ConvBN(c, cls, 3), ConvBN(cls, cls, 3),
                                                   nn.Conv2d(cls, nc, 1)) for c in (64, 128, 256))

        def forward(self, x):
            p3 = self.b2(self.b1(x))
            p4 = self.b3(p3)
            p5 = self.b4(p4)
            t4 = self.n1(torch.cat([self.up(p5), p4], 1))
            o3 = self.n2(torch.cat([self.up(t4), p3], 1))
            o4 = self.n3(torch.cat([self.d1(o3), t4], 1))
            o5 = self.n4(torch.cat([self.d2(o4), p5], 1))
            outs = [torch.cat([b(f), c(f)], 1).flatten(2)
                    for f, b, c in zip((o3, o4, o5), self.box, self.cls)]
            return torch.cat(outs, 2)

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, expand, s=1):
            super().__init__()
            mid = cin * expand
            self.body = nn.Sequential(ConvBN(cin, mid, act=nn.Hardswish),
                                      ConvBN(mid, mid, 3, s, groups=mid, act=nn.Hardswish),
                                      ConvBN(mid, cout, act=None))
            self.res = s == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.res else y

    class PPOCRDet(nn.Module):
        def __init__(self):
            super().__init__()
            layout = [(16, 24, 4, 2), (24, 24, 3, 1),  # 160
                      (24, 40, 3, 2), (40, 40, 3, 1), (40, 40, 3, 1),  # 80
                      (40, 80, 4, 2), (80, 80, 3, 1), (80, 112, 3, 1), (112, 112, 3, 1),  # 40
                      (112, 160, 4, 2), (160, 160, 3, 1), (160, 160, 3, 1)]  # 20
            self.stem = ConvBN(3, 16, 3, 2, act=nn.Hardswish)
            blocks = [InvertedResidual(*b) for b in layout]
            self.stages = nn.ModuleList([nn.Sequential(*blocks[:2]), nn.Sequential(*blocks[2:5]),
                                         nn.Sequential(*blocks[5:9]), nn.Sequential(*blocks[9:])])
            inner, out = 48, 12
            self.lateral = nn.ModuleList(nn.Conv2d(c, inner, 1, bias=False) for c in (24, 40, 112, 160))
            self.smooth = nn.ModuleList(nn.Conv2d(inner, out, 3, padding=1, bias=False) for _ in range(4))
            self.head = nn.Sequential(ConvBN(4 * out, out, 3, act=nn.ReLU),
                                      nn.ConvTranspose2d(out, out, 2, 2), nn.BatchNorm2d(out), nn.ReLU(),
                                      nn.ConvTranspose2d(out, 1, 2, 2), nn.Sigmoid())

        def forward(self, x):
            feats, y = [], self.stem(x)
            for stage in self.stages:
                y = stage(y)
                feats.append(y)
            lat = [conv(f) for conv, f in zip(self.lateral, feats)]
            for k in range(3, 0, -1):  # top-down: upsample and add
                lat[k - 1] = lat[k - 1] + nn.functional.interpolate(lat[k], scale_factor=2.0, mode="nearest")
            maps = [conv(t) for conv, t in zip(self.smooth, lat)]
            up = [nn.functional.interpolate(m, scale_factor=float(2 ** k), mode="nearest") if k else m
                  for k, m in enumerate(maps)]
            return self.head(torch.cat(up, 1))

    return torch, nn, {"yolov8n": YOLOv8n, "ppocr_det": PPOCRDet}


def _randomise(model, torch, nn) -> None:
    """Seeded random weights; BatchNorm statistics and affine parameters away from identity."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
            nn.init.normal_(m.weight, 0.0, 1.0 / np.sqrt(fan_in))  # activations keep their scale
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.05)
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    model.eval()


def conv_macs(model, x, torch, nn) -> int:
    """Multiply-accumulates of the convolutions (and transposed convolutions) on input ``x``."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.ConvTranspose2d):
            total[0] += inp[0].numel() * m.out_channels * int(np.prod(m.kernel_size)) // m.groups
        else:
            total[0] += out.numel() * (m.in_channels // m.groups) * int(np.prod(m.kernel_size))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


def build(name: str, out_dir: str | Path) -> Path:
    """``out_dir/NAME.onnx`` (built, exported and checked in onnxruntime when absent)."""
    path = Path(out_dir) / f"{name}.onnx"
    if path.exists():
        return path
    torch, nn, kinds = _modules()
    model = kinds[name]()
    _randomise(model, torch, nn)
    x = torch.randn(*SHAPES[name], generator=torch.Generator().manual_seed(1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (x,), str(tmp), opset_version=17, dynamo=False,
                      input_names=["images"], output_names=["output"])
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    got = ort.InferenceSession(str(tmp), opts, providers=["CPUExecutionProvider"]).run(
        None, {"images": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    err = float(np.abs(got - want).max() / (np.abs(want).max() + 1e-12))
    if err > 1e-4:
        raise SystemExit(f"{name}: onnxruntime differs from torch by {err:.2e}")
    tmp.replace(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"of {list(SHAPES)} (default: all)")
    ap.add_argument("--out", default="out/detectors")
    args = ap.parse_args()
    from onnxprune.preparation import prepare

    torch, nn, kinds = _modules()
    print(f"{'model':<10} {'input':<16} {'GMAC':>6} {'params M':>8} {'groups':>6}  path")
    for name in args.names or list(SHAPES):
        path = build(name, args.out)
        model = kinds[name]()
        _randomise(model, torch, nn)
        macs = conv_macs(model, torch.zeros(*SHAPES[name]), torch, nn)
        params = sum(p.numel() for p in model.parameters())
        groups = len(prepare(str(path)).graph.prunable_groups())
        print(f"{name:<10} {'x'.join(map(str, SHAPES[name])):<16} {macs / 1e9:>6.2f} "
              f"{params / 1e6:>8.2f} {groups:>6}  {path}")


if __name__ == "__main__":
    main()
