"""Running a model once in onnxruntime (:func:`run_outputs`) and comparing two runs' outputs
(:func:`max_rel_error`): what every check of a rewrite rests on. Sessions come from
:func:`onnxprune.runtimes.session`.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort

from .errors import OnnxPruneError, first_line
from .runtimes import RuntimeConfig, session


def run_outputs(
    model: onnx.ModelProto | ort.InferenceSession,
    feeds: dict[str, np.ndarray],
    config: RuntimeConfig | None = None,
) -> dict[str, np.ndarray]:
    """Run once and return ``{output name: array}``."""
    sess = model if isinstance(model, ort.InferenceSession) else session(model, config)
    names = [o.name for o in sess.get_outputs()]
    try:
        values = sess.run(names, feeds)
    except Exception as exc:
        asked = re.search(r"requested buffer of size (\d+)", str(exc))
        if asked:  # onnxruntime's arena ran out: the same one line as numpy's MemoryError
            raise MemoryError(f"Unable to allocate {int(asked.group(1)) / 2**30:.1f} GiB") from exc
        raise OnnxPruneError(f"onnxruntime failed to run the model: {first_line(exc)}") from exc
    return dict(zip(names, values))


def max_rel_error(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    """Largest ``max|ref - got| / max(max|ref|, 1e-12)`` over the finite values of the outputs
    of ``ref`` (infinite when ``got`` lacks one or it changed shape); non-finite values (an infinity through a mask, NaN) must sit at the same
    positions with the same value, else the error is infinite."""
    worst = 0.0
    for name, a in ref.items():
        b = got.get(name)
        if b is None or a.shape != b.shape:
            return float("inf")
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        finite = np.isfinite(a64)
        if not (np.array_equal(finite, np.isfinite(b64))
                and np.array_equal(a64[~finite], b64[~finite], equal_nan=True)):
            return float("inf")
        a64, b64 = a64[finite], b64[finite]
        scale = max(float(np.abs(a64).max(initial=0.0)), 1e-12)
        worst = max(worst, float(np.abs(a64 - b64).max(initial=0.0)) / scale)
    return worst
