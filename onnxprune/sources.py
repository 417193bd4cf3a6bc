"""Model inputs from what users have: image folders, sentence files, ORT calibration readers.

One entry point, :func:`load_samples`, turns any of these into :data:`onnxprune.calib.Samples`
(every command that takes data, and the Python API, go through it):

* a ``.npz`` of arrays keyed by input name (first axis = samples), used as stored;
* images: a folder (searched recursively, sorted), a glob (``photos/*.jpg``), a ``.txt`` listing
  image paths (one per line, relative to the file's folder), or one image file; preprocessed by
  :class:`Options` (presets ``imagenet``, ``inception``, ``raw``, or explicit resize / crop /
  mean / std / layout / BGR); the input size comes from the model when it is static;
* sentences: a ``.txt`` with one sentence per line and a ``tokenizer.json`` (the ``tokenizers``
  package, ``pip install 'onnxprune[text]'``), padded / truncated to the model's sequence length
  (static, ``--shape``, or the tokenizer's truncation length), feeding ``input_ids``,
  ``attention_mask`` and ``token_type_ids`` by name;
* in the API, also an onnxruntime ``CalibrationDataReader`` (any object whose ``get_next()``
  returns a feed dict, then None), an iterable of feed dicts (each with a batch axis), or a dict
  of arrays.

Images are decoded one at a time straight into the one output array (never all decoded
images and the array at once). :func:`describe` is the one line the CLI prints: what was
applied and the statistics of the first batch the model sees (wrong preprocessing is the
commonest user error). Every problem with the data is an :class:`OnnxPruneError` naming the
option it came from (``what``: ``--calib``, ``--data``, ...).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from . import calib, guard
from .errors import OnnxPruneError
from .inputs import graph_inputs, input_shapes

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# preset -> (mean, std) on pixels scaled to [0, 1], RGB order
PRESETS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
RESIZE_RATIO = 256 / 224  # shorter side before the centre crop, as in ImageNet evaluation


@dataclass(frozen=True)
class Options:
    """How image and text files become model inputs (ignored for arrays and readers).

    ``preset`` (``imagenet`` by default) gives mean/std; ``mean``/``std`` override it, in the
    order of the model's channels, on pixels scaled to [0, 1] (values above 1 in ``mean`` mean
    0..255 units for both). ``resize``: ``(S,)`` shorter side, or ``(H, W)`` exact; default
    ``crop * 256/224`` on the shorter side (at least the crop). ``crop``: centre crop ``(H,
    W)``; default the model's static input size (224 where it is dynamic). ``layout``: ``nchw``
    or ``nhwc`` (default: where the model's static channel axis is). ``bgr``: channels in BGR
    order. ``tokenizer``: a ``tokenizer.json`` for sentence files."""

    preset: str = "imagenet"
    resize: tuple[int, ...] | None = None
    crop: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str | None = None
    bgr: bool = False
    tokenizer: str | None = None
    explicit: bool = False  # the preset was chosen by the user (for the report line)

    @classmethod
    def parse(cls, preprocess: str | None = None, resize: str | None = None,
              crop: str | None = None, mean: str | None = None, std: str | None = None,
              layout: str | None = None, bgr: bool = False,
              tokenizer: str | None = None) -> Options:
        """From command-line strings (``--resize 256`` or ``256x320``, ``--mean 0.5,0.5,0.5``);
        one-line errors naming the option."""
        if preprocess is not None and preprocess not in PRESETS:
            raise OnnxPruneError(f"--preprocess must be one of {', '.join(PRESETS)}")
        if layout is not None and layout not in ("nchw", "nhwc"):
            raise OnnxPruneError("--layout must be nchw or nhwc")
        if tokenizer is not None and not os.path.isfile(tokenizer):
            raise OnnxPruneError(f"--tokenizer {tokenizer}: no such file")
        size = _dims(crop, "--crop")
        return cls(preprocess or "imagenet", _dims(resize, "--resize"),
                   (size * 2)[:2] if size else None, _floats(mean, "--mean"),
                   _floats(std, "--std"), layout, bgr, tokenizer, preprocess is not None)

    def normalisation(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per model channel, on pixels scaled to [0, 1]."""
        mean, std = PRESETS[self.preset]
        if self.bgr:
            mean, std = mean[::-1], std[::-1]
        mean = np.asarray(self.mean if self.mean is not None else mean, dtype=np.float64)
        std = np.asarray(self.std if self.std is not None else std, dtype=np.float64)
        if self.mean is not None and (mean > 1).any():  # 0..255 units
            mean, std = mean / 255.0, std / 255.0
        out = []
        for name, v in (("--mean", mean), ("--std", std)):
            if channels == 1 and v.size == 3:  # a grey model and an RGB preset
                v = v.mean(keepdims=True)
            if v.size not in (1, channels):
                raise OnnxPruneError(f"{name} has {v.size} values; the model has {channels} "
                                     "channel(s)")
            out.append(np.resize(v, channels).astype(np.float32))
        if (out[1] <= 0).any():
            raise OnnxPruneError("--std values must be positive")
        return out[0], out[1]


def _dims(text: str | None, option: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in str(text).lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) not in (1, 2) or min(dims) < 1:
        raise OnnxPruneError(f"bad {option} {text!r}: expected N or HxW, e.g. 256 or 224x224")
    return dims


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise OnnxPruneError(f"bad {option} {text!r}: expected numbers, e.g. "
                             "0.485,0.456,0.406") from None


# ---------------------------------------------------------------------------- entry point


def load_samples(spec, model: onnx.ModelProto, options: Options | None = None,
                 shapes: dict[str, tuple[int, ...]] | None = None, what: str = "--calib",
                 report: Callable[[str], None] | None = None) -> calib.Samples:
    """Samples for ``model`` from ``spec`` (see the module docstring for what it may be).

    ``shapes``: ``--shape`` overrides (an image size or sequence length for dynamic inputs).
    ``report`` receives :func:`describe`'s one line."""
    options = options or Options()
    if isinstance(spec, (str, os.PathLike)):
        samples, applied = _from_path(os.fspath(spec), model, options, shapes or {}, what)
    elif hasattr(spec, "get_next"):
        samples = calib.from_feeds(_drain(spec), model, what)
        applied = "feeds of a calibration reader"
    elif isinstance(spec, dict):
        samples, applied = calib.from_arrays(spec, model, what), "arrays as given"
    else:
        samples, applied = calib.from_feeds(spec, model, what), "feed dicts as given"
    if report is not None:
        report(describe(samples, model, f"{what} {spec if isinstance(spec, str) else ''}"
                        .rstrip() + f": {applied}"))
    return samples


def _drain(reader):
    """The feeds of an onnxruntime CalibrationDataReader, until ``get_next()`` returns None."""
    while (feed := reader.get_next()) is not None:
        yield feed


def _from_path(path: str, model: onnx.ModelProto, options: Options,
               shapes: dict[str, tuple[int, ...]], what: str) -> tuple[calib.Samples, str]:
    lower = path.lower()
    if lower.endswith(".npz"):
        guard.check_npz(path)  # refused from the headers before anything is loaded
        return calib.load_npz(path, model, what), "arrays as stored"
    if os.path.isdir(path):
        files = sorted(os.path.join(d, f) for d, dirs, fs in os.walk(path)
                       for f in fs if f.lower().endswith(IMAGE_EXTS) and not f.startswith("."))
        return _images(files, path, model, options, shapes, what)
    if glob.has_magic(path):
        files = sorted(f for f in glob.glob(path, recursive=True)
                       if f.lower().endswith(IMAGE_EXTS) and os.path.isfile(f))
        return _images(files, path, model, options, shapes, what)
    if not os.path.isfile(path):
        raise OnnxPruneError(f"{what} {path}: no such file or folder")
    if lower.endswith(IMAGE_EXTS):
        return _images([path], path, model, options, shapes, what)
    if options.tokenizer:
        return _sentences(path, model, options, shapes, what)
    lines = _lines(path, what)
    if lines and all(line.lower().endswith(IMAGE_EXTS) for line in lines):
        base = os.path.dirname(path)
        return _images([os.path.join(base, line) for line in lines], path, model, options,
                       shapes, what)
    raise OnnxPruneError(f"{what} {path}: not a .npz, an image list or an image folder; "
                         "a file of sentences needs --tokenizer tokenizer.json")


def _lines(path: str, what: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [s.strip() for s in f if s.strip() and not s.startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise OnnxPruneError(f"{what} {path}: not a readable UTF-8 text file "
                             f"({type(exc).__name__})") from exc


# ---------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageInput:
    """Where images go: the model input's name, layout, channel count and spatial size."""

    name: str
    layout: str
    channels: int
    size: tuple[int, int]


def image_input(model: onnx.ModelProto, options: Options,
                shapes: dict[str, tuple[int, ...]], what: str) -> ImageInput:
    """The model's one image input: rank 4, layout from ``options`` or from where its static
    channel axis (1 or 3) is, size from ``shapes``, its static dims, or ``options.crop``."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise OnnxPruneError(f"{what}: images feed one input, the model has "
                             f"{[i.name for i in inputs]}; give a .npz keyed by input name")
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise OnnxPruneError(f"{what}: images need a rank-4 input; {inp.name!r} has rank "
                             f"{len(dims)}")
    layout = options.layout or ("nhwc" if dims[3] in (1, 3) and dims[1] not in (1, 3) else "nchw")
    axes = (2, 3, 1) if layout == "nchw" else (1, 2, 3)
    concrete = input_shapes(model, {inp.name: shapes[inp.name]} if inp.name in shapes
                                    else None)[inp.name]
    channels = dims[axes[2]] or 3
    if channels not in (1, 3):
        raise OnnxPruneError(f"{what}: {inp.name!r} has {channels} channels on the {layout} "
                             "channel axis; images have 1 or 3 (see --layout)")
    static = bool(dims[axes[0]] and dims[axes[1]]) or inp.name in shapes
    size = (concrete[axes[0]], concrete[axes[1]])
    if options.crop is not None:
        if static and options.crop != size:
            raise OnnxPruneError(f"--crop {options.crop[0]}x{options.crop[1]}: the model's "
                                 f"{inp.name!r} takes {size[0]}x{size[1]}")
        size = options.crop
    return ImageInput(inp.name, layout, channels, size)


def _images(files: list[str], spec: str, model: onnx.ModelProto, options: Options,
            shapes: dict[str, tuple[int, ...]], what: str) -> tuple[calib.Samples, str]:
    if not files:
        raise OnnxPruneError(f"{what} {spec}: no image files ({', '.join(IMAGE_EXTS[:4])}, ...)")
    target = image_input(model, options, shapes, what)
    mean, std = options.normalisation(target.channels)
    h, w = target.size
    shape = (len(files), target.channels, h, w) if target.layout == "nchw" else \
        (len(files), h, w, target.channels)
    out = np.empty(shape, dtype=np.float32)
    for i, path in enumerate(files):
        x = (image_pixels(path, target, options, mean, what).astype(np.float32) / 255.0 - mean) / std
        out[i] = x.transpose(2, 0, 1) if target.layout == "nchw" else x
    return {target.name: out}, _applied(target, options, mean, std, len(files))


def image_pixels(path: str, target: ImageInput, options: Options, mean: np.ndarray,
                 what: str = "--calib") -> np.ndarray:
    """One image as ``H x W x C`` uint8: EXIF orientation applied, transparency filled with
    the mean colour (zero after normalisation), resized (``options.resize``, or the shorter side
    to ``crop * 256/224``), centre-cropped to the target size, channels in the model's order."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise OnnxPruneError(f"{what}: cannot read image {path} ({type(exc).__name__})") from exc
    rgb_mean = np.resize(mean, 3)[::-1] if options.bgr else np.resize(mean, 3)
    fill = tuple(min(255, max(0, round(255 * float(m)))) for m in rgb_mean)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.new("RGBA", rgba.size, (*fill, 255))
        img.alpha_composite(rgba)
    img = img.convert("L" if target.channels == 1 else "RGB")
    h, w = target.size
    if options.resize is not None and len(options.resize) == 2:
        nh, nw = options.resize
    else:
        short = options.resize[0] if options.resize else round(min(h, w) * RESIZE_RATIO)
        scale = max(short / min(img.width, img.height), h / img.height, w / img.width)
        nh, nw = max(h, round(img.height * scale)), max(w, round(img.width * scale))
    if (nh, nw) != (img.height, img.width):
        img = img.resize((nw, nh), Image.BILINEAR)
    if nh < h or nw < w:
        raise OnnxPruneError(f"--resize {nh}x{nw} is smaller than the {h}x{w} crop")
    top, left = (nh - h) // 2, (nw - w) // 2
    arr = np.asarray(img)[top : top + h, left : left + w]
    arr = arr[..., None] if arr.ndim == 2 else arr
    return arr[..., ::-1] if options.bgr and target.channels == 3 else arr


def _applied(target: ImageInput, options: Options, mean: np.ndarray, std: np.ndarray,
             n: int) -> str:
    h, w = target.size
    if options.resize is None:
        resize = f"shorter side {round(min(h, w) * RESIZE_RATIO)}"
    elif len(options.resize) == 1:
        resize = f"shorter side {options.resize[0]}"
    else:
        resize = f"resize {options.resize[0]}x{options.resize[1]}"
    preset = options.preset + ("" if options.explicit else ", the default")

    def fmt(v: np.ndarray) -> str:
        return ",".join(f"{x:.3g}" for x in v)

    return (f"{n} images, {resize}, centre {h}x{w}, "
            f"{'BGR' if options.bgr else 'RGB' if target.channels == 3 else 'grey'} "
            f"{target.layout.upper()}, (x/255 - [{fmt(mean)}]) / [{fmt(std)}] "
            f"(--preprocess {preset})")


# ---------------------------------------------------------------------------- sentences


def _sentences(path: str, model: onnx.ModelProto, options: Options,
               shapes: dict[str, tuple[int, ...]], what: str) -> tuple[calib.Samples, str]:
    """Tokenised sentences (one per line of ``path``) for the model's text inputs."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise OnnxPruneError("--tokenizer needs the tokenizers package: "
                             "pip install 'onnxprune[text]'") from None
    try:
        tok = Tokenizer.from_file(options.tokenizer)
    except Exception as exc:
        raise OnnxPruneError(f"--tokenizer {options.tokenizer}: not a tokenizers "
                             f"tokenizer.json ({type(exc).__name__})") from exc
    inputs = graph_inputs(model)
    unknown = [i.name for i in inputs if i.name not in TEXT_INPUTS]
    if unknown or not any(i.name == "input_ids" for i in inputs):
        raise OnnxPruneError(f"{what} {path}: sentences feed {', '.join(TEXT_INPUTS)}; the model "
                             f"has inputs {[i.name for i in inputs]}")
    sentences = _lines(path, what)
    if not sentences:
        raise OnnxPruneError(f"{what} {path}: no sentences")
    length = sequence_length(model, shapes, tok)
    tok.no_padding()
    if length is not None:
        tok.enable_truncation(length)
    encoded = tok.encode_batch(sentences)
    length = length or max(len(e.ids) for e in encoded)
    pad = pad_id(tok)
    arrays = {"input_ids": np.full((len(encoded), length), pad, dtype=np.int64),
              "attention_mask": np.zeros((len(encoded), length), dtype=np.int64),
              "token_type_ids": np.zeros((len(encoded), length), dtype=np.int64)}
    for i, enc in enumerate(encoded):
        k = len(enc.ids)
        arrays["input_ids"][i, :k] = enc.ids
        arrays["attention_mask"][i, :k] = enc.attention_mask
        arrays["token_type_ids"][i, :k] = enc.type_ids
    truncated = sum(bool(e.overflowing) for e in encoded)
    samples = calib.from_arrays({i.name: arrays[i.name] for i in inputs}, model, what)
    return samples, (f"{len(encoded)} sentences, {os.path.basename(options.tokenizer)}, padded "
                     f"with id {pad} / truncated to {length} tokens ({truncated} truncated)")


def sequence_length(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]],
                    tok) -> int | None:
    """Tokens per sequence: ``--shape`` of a text input, the static axis 1 of one, the
    tokenizer's truncation length, or None (the longest sentence)."""
    for inp in graph_inputs(model):
        if inp.name in shapes and len(shapes[inp.name]) >= 2:
            return shapes[inp.name][1]
    for inp in graph_inputs(model):
        dims = inp.type.tensor_type.shape.dim
        if len(dims) >= 2 and dims[1].HasField("dim_value") and dims[1].dim_value > 0:
            return dims[1].dim_value
    return (tok.truncation or {}).get("max_length")


def pad_id(tok) -> int:
    """The tokenizer's padding id: its padding setting, else a [PAD]/<pad> token, else 0."""
    if tok.padding:
        return int(tok.padding["pad_id"])
    for token in ("[PAD]", "<pad>", "<PAD>"):
        if tok.token_to_id(token) is not None:
            return int(tok.token_to_id(token))
    return 0


# ---------------------------------------------------------------------------- report line


def describe(samples: calib.Samples, model: onnx.ModelProto, applied: str) -> str:
    """One line: what was applied, then per input its shape and the statistics of the first
    batch the model is run on (mean / std / range for floats; real tokens for a mask)."""
    size, _ = calib.batch_size(model)
    parts = []
    for name, value in samples.items():
        first = value[:size]
        head = f"{name} {list(value.shape)} {value.dtype}"
        if np.issubdtype(value.dtype, np.floating):
            f = first.astype(np.float64)
            parts.append(f"{head}, first batch mean {f.mean():.3f} std {f.std():.3f} "
                         f"range [{f.min():.3g}, {f.max():.3g}]")
        elif name == "attention_mask":
            parts.append(f"{head}, first batch {first.sum(1).mean():.1f} real tokens per sample")
        else:
            parts.append(head)
    return f"{applied}; {'; '.join(parts)}"
