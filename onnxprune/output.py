"""Writing files: models and reports, atomically, never over the input model."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx

from . import load, progress, runtime
from .errors import OnnxPruneError

EXTERNAL_DATA_BYTES = 1_900_000_000  # protobuf's 2 GiB limit, with headroom


def check_output_path(out: str, inp: str | None = None) -> None:
    """Fail early (before any work) when ``out`` cannot be written or would overwrite ``inp``."""
    if inp is not None:
        load.check_readable(inp)
    if inp is not None and os.path.exists(out) and os.path.exists(inp) and os.path.samefile(out, inp):
        raise OnnxPruneError(f"{out}: refusing to overwrite the input model")
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise OnnxPruneError(f"{out}: is a directory")
    if not os.path.isdir(parent):
        raise OnnxPruneError(f"{out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OnnxPruneError(f"{out}: directory {parent} is not writable")


@progress.timed("write")
def write_model(model: onnx.ModelProto, out: str, feeds: dict[str, np.ndarray]) -> None:
    """Atomically write ``model`` (already verified): temp file in the target directory, load and
    run it once more in onnxruntime from disk, then rename over ``out``."""
    check_output_path(out)
    parent = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".onnxprune-", suffix=".onnx", dir=parent)
    os.close(fd)
    try:
        if model.ByteSize() > EXTERNAL_DATA_BYTES:
            onnx.save(model, tmp, save_as_external_data=True, location=os.path.basename(out) + ".data")
        else:
            onnx.save(model, tmp)
        runtime.run(runtime.session(tmp), feeds)
        os.replace(tmp, out)
    except OSError as exc:
        raise OnnxPruneError(f"{out}: cannot write ({exc.strerror})") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(text: str, out: str) -> None:
    """Atomically write a text file (reports)."""
    parent = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".onnxprune-", suffix=".json", dir=parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, out)
