"""Writing files: models and reports, atomically, never over the input model."""

from __future__ import annotations

import contextlib
import copy
import os

import numpy as np
import onnx

from . import cachefile, load, progress, runtime, runtimes
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
def write_model(model: onnx.ModelProto, out: str, feeds: dict[str, np.ndarray],
                source: onnx.ModelProto | None = None) -> None:
    """Atomically write ``model`` (already verified): temp file in the target directory, load and
    run it once more in onnxruntime from disk, then rename over ``out``. With ``source`` (the
    user's model), it is stored the way the source is (:func:`onnxprune.load.source_form`:
    constant fills stay fills, value_info only where the source had some); ``model`` itself is
    not changed."""
    check_output_path(out)
    if source is not None:
        model = load.source_form(copy.deepcopy(model), source)
    external = model.ByteSize() > EXTERNAL_DATA_BYTES  # its data goes to OUT.data beside it
    with _atomic(out, external) as tmp:
        if external:
            onnx.save(model, tmp, save_as_external_data=True, location=os.path.basename(out) + ".data")
        else:
            onnx.save(model, tmp)
        runtime.run_outputs(runtimes.session(tmp), feeds)


@contextlib.contextmanager
def _atomic(out: str, companions: bool = False):
    """:func:`onnxprune.cachefile.atomic_path` (with ``companions``: files written beside it
    too, :func:`~onnxprune.cachefile.atomic_files`), its failure as one line naming ``out``."""
    try:
        with (cachefile.atomic_files if companions else cachefile.atomic_path)(out) as tmp:
            yield tmp
    except OSError as exc:
        raise OnnxPruneError(f"{out}: cannot write ({exc.strerror})") from exc


def write_text(text: str, out: str) -> None:
    """Atomically write a text file (reports: JSON, HTML), UTF-8."""
    with _atomic(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def check_output_dir(path: str) -> None:
    """Fail early when directory ``path`` can neither be used nor created (see :func:`make_dir`)."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise OnnxPruneError(f"{path}: is not a directory")
        if not os.access(path, os.W_OK):
            raise OnnxPruneError(f"{path}: directory is not writable")
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise OnnxPruneError(f"{path}: cannot create the directory ({parent} is not a writable directory)")


def make_dir(path: str) -> str:
    """Create directory ``path`` (and its parents) if needed."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise OnnxPruneError(f"{path}: cannot create the directory ({exc.strerror})") from exc
    return path
