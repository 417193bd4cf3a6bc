"""Natural test images for ImageNet models, from offline sources only (no torch).

Base photos come from data files shipped inside PyPI wheels; a source whose
package is not installed is skipped:

  * scikit-image ``skimage.data``: astronaut, coffee, chelsea (cat), rocket,
    motorcycle (left view of ``stereo_motorcycle``), and the extra photos camera,
    moon, coins, clock, brick, grass, gravel, hubble (deep field), retina, ihc
    (grey ones replicated to RGB);
  * scikit-learn ``load_sample_images()``: china, flower;
  * matplotlib sample data: grace_hopper.jpg, Minduka_Present_Blue_Pack.png.

``natural_images(bases=...)`` draws from named base photos only; ``CALIB_BASES`` and
``TEST_BASES`` are disjoint, so a calibration set and a test set built from them never
share a photo (only crops of *different* photos are on the two sides).

``natural_images()`` turns them into float32 NCHW batches normalised with the
ImageNet mean/std. Image ``i`` is base image ``i % B`` (B = number of base
images) with augmentation ``i // B``: augmentation 0 is the standard eval
transform (shorter side resized to 256, centre 224 crop); the others use a
random shorter side in [232, 320], a random crop and a random horizontal flip.
Results are deterministic for a given ``(seed, size)`` and a prefix of a longer
request equals a shorter request.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
AUGMENTATIONS = 8  # default count per base image
ORIGINAL = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "china", "flower", "grace_hopper")
# disjoint photo sets: calibration never sees a test photo (objects and textures on both sides)
CALIB_BASES = ("coffee", "motorcycle", "flower", "minduka_pack", "hubble", "coins", "clock",
               "brick", "grass", "ihc")
TEST_BASES = ("chelsea", "astronaut", "rocket", "china", "grace_hopper", "camera", "moon",
              "retina", "gravel")


def _skimage() -> list[tuple[str, np.ndarray]]:
    from skimage import data

    out = [(n, getattr(data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    out.append(("motorcycle", data.stereo_motorcycle()[0]))
    extra = {"camera": "camera", "moon": "moon", "coins": "coins", "clock": "clock",
             "brick": "brick", "grass": "grass", "gravel": "gravel", "hubble": "hubble_deep_field",
             "retina": "retina", "ihc": "immunohistochemistry"}
    return out + [(name, _rgb(getattr(data, fn)())) for name, fn in extra.items()]


def _rgb(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 from a grey or RGBA image."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (255 * (img.astype(np.float64) / max(float(img.max()), 1e-9))).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3]


def _sklearn() -> list[tuple[str, np.ndarray]]:
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    return [
        (f.rsplit("/", 1)[-1].split(".")[0], im) for f, im in zip(bunch.filenames, bunch.images)
    ]


def _matplotlib() -> list[tuple[str, np.ndarray]]:
    from matplotlib import cbook

    out = []
    for name, fn in (("grace_hopper", "grace_hopper.jpg"), ("minduka_pack", "Minduka_Present_Blue_Pack.png")):
        with cbook.get_sample_data(fn) as f:
            out.append((name, np.asarray(Image.open(f).convert("RGB"))))
    return out


@functools.lru_cache(maxsize=1)
def base_images() -> tuple[tuple[str, np.ndarray], ...]:
    """All available (name, HxWx3 uint8 RGB) base photos, in a fixed order."""
    found: list[tuple[str, np.ndarray]] = []
    for source in (_skimage, _sklearn, _matplotlib):
        try:
            found += source()
        except (ImportError, OSError, ValueError) as exc:  # package or data file missing
            warnings.warn(f"natural_images: skipping {source.__name__[1:]}: {exc}", stacklevel=2)
    if not found:
        raise RuntimeError(
            "no offline image source available: pip install scikit-image scikit-learn matplotlib"
        )
    return tuple((name, np.ascontiguousarray(im[..., :3], dtype=np.uint8)) for name, im in found)


def _view(img: np.ndarray, size: int, short: int, rng: np.random.Generator | None) -> np.ndarray:
    """Resize shorter side to ``short``, crop ``size`` (centre if rng is None), maybe flip."""
    h, w = img.shape[:2]
    scale = short / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    arr = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    if rng is None:
        top, left, flip = (nh - size) // 2, (nw - size) // 2, False
    else:
        top, left = int(rng.integers(nh - size + 1)), int(rng.integers(nw - size + 1))
        flip = bool(rng.integers(2))
    crop = arr[top : top + size, left : left + size]
    return crop[:, ::-1] if flip else crop


def natural_images(n: int | None = None, size: int = 224, seed: int = 0,
                   bases: tuple[str, ...] = ORIGINAL) -> np.ndarray:
    """``n`` ImageNet-normalised float32 images, shape (n, 3, size, size), from the base
    photos named in ``bases`` (those available, in that order; default: the original eight).

    Default ``n`` is ``AUGMENTATIONS`` (8) views of every base image (64 with all
    three sources installed). The first ``len(bases)`` images are the
    plain centre crops, one per base photo, in ``bases`` order.
    """
    have = dict(base_images())
    bases = tuple((name, have[name]) for name in bases if name in have)
    if not bases:
        raise RuntimeError("none of the requested base photos is available")
    n = len(bases) * AUGMENTATIONS if n is None else n
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        aug = i // len(bases)
        img = bases[i % len(bases)][1]
        if aug == 0:
            view = _view(img, size, round(size * 256 / 224), None)
        else:
            rng = np.random.default_rng([seed, i])
            lo, hi = round(size * 232 / 224), round(size * 320 / 224)
            view = _view(img, size, int(rng.integers(lo, hi + 1)), rng)
        out[i] = ((view.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    return out


def main() -> None:
    """Write the demo's calibration and test photos as .npz (input name ``input``): crops of
    CALIB_BASES for calibration, crops of the disjoint TEST_BASES for testing."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--calib", required=True, help="output .npz of calibration crops")
    ap.add_argument("--test", required=True, help="output .npz of test crops (other photos)")
    ap.add_argument("--calib-count", type=int, default=256)
    ap.add_argument("--test-count", type=int, default=108)
    args = ap.parse_args()
    np.savez(args.calib, input=natural_images(args.calib_count, seed=0, bases=CALIB_BASES))
    np.savez(args.test, input=natural_images(args.test_count, seed=1, bases=TEST_BASES))
    print(f"{args.calib}: {args.calib_count} crops of {len(CALIB_BASES)} photos; "
          f"{args.test}: {args.test_count} crops of {len(TEST_BASES)} other photos")


if __name__ == "__main__":
    main()
