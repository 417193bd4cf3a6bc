"""Cost guard: what one inference will cost at the shapes the tool uses, known before anything runs.

From onnx shape inference at the concrete input shapes (:func:`onnxprune.input_shapes`
with ``--shape`` and the calibration samples' shapes), :func:`estimate` adds up the weights,
the inputs, every intermediate activation (the tool's trace exposes them all at once) and, with
calibration data, the samples and a batch of activations per calibration run; :func:`check`
refuses, in one line naming the input and the dimension that drive it, a run whose estimate is
over the budget: half of this machine's available memory (``/proc/meminfo``, a cgroup limit),
or ``--max-memory`` (from Python: :func:`set_max_memory`). A calibration file is checked from
its array headers before it is loaded (:func:`check_npz`). Invariant: nothing here runs the
model.

Tensors shape inference cannot size (computed shapes it does not follow) count as large as the
largest input of their node; nested subgraphs (If/Loop) are not counted.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, replace

import numpy as np
import onnx

from . import stats
from .errors import OnnxPruneError
from .inputs import NP_TYPES, graph_inputs, input_shapes

SHARE = 0.5  # of the available memory, the default budget
CALIB_BATCH = 16  # calibration runs batch this many samples (calib.batch_size)
_limit: int | None = None  # --max-memory, set by the command line for this process

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}


def parse_size(text: str) -> int:
    """Bytes in ``8GB``, ``512MB``, ``1.5GiB``, ``8G`` or ``1000000``; a one-line error otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]I?)?B?\s*", text.upper())
    if not match or float(match.group(1)) <= 0:
        raise OnnxPruneError(f"bad --max-memory {text!r}: expected a size such as 8GB or 512MB")
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


def set_max_memory(size: str | int | None) -> None:
    """The memory budget of this process's runs (``--max-memory``); None: the default share of
    the available memory."""
    global _limit
    _limit = parse_size(size) if isinstance(size, str) else size


def available_memory() -> int:
    """Bytes this process may still use: MemAvailable, or the free physical pages, lowered to
    what a cgroup (v2) memory limit leaves."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            free = 8 * 10**9
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            free = min(free, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return free


def budget() -> tuple[int, str]:
    """(bytes, how it was set) of the memory budget."""
    if _limit is not None:
        return _limit, "--max-memory"
    return int(SHARE * available_memory()), "half the available memory; --max-memory to change it"


def gb(n: float) -> str:
    """Bytes as TB, GB or MB with one decimal."""
    for unit, size in (("TB", 1e12), ("GB", 1e8)):
        if n >= size:
            return f"{n / (size if unit == 'TB' else 1e9):,.1f} {unit}"
    return f"{n / 1e6:.1f} MB"


@dataclass
class Cost:
    """The estimated cost of the tool's runs at ``shapes`` (bytes unless said otherwise).

    ``activations``: every intermediate tensor of one inference at ``shapes``; ``largest``: the
    largest one (name, bytes); ``macs``: multiply-accumulates of one inference (None when the
    specs cannot count them); ``samples``: the calibration arrays; ``batch``: how many samples
    one calibration run holds activations for (1 without calibration data)."""

    shapes: dict[str, tuple[int, ...]]
    weights: int
    inputs: int
    activations: int
    largest: tuple[str, int]
    macs: int | None
    samples: int = 0
    batch: int = 1

    @property
    def memory(self) -> int:
        """The peak the runs are expected to reach: weights twice (the model and its session),
        the inputs, the calibration arrays and ``batch`` times the activations."""
        return 2 * self.weights + self.inputs + self.samples + self.batch * self.activations

    def with_samples(self, samples: dict[str, np.ndarray] | None,
                     val: dict[str, np.ndarray] | None = None) -> Cost:
        """This cost with ``samples`` (and ``val``, held at the same time) as the calibration
        arrays; ``batch`` from ``samples`` (itself without samples)."""
        if samples is None:
            return self
        count = len(next(iter(samples.values()))) if samples else 1
        held = [s for s in (samples, val) if s is not None]
        return replace(self, samples=sum(int(v.nbytes) for s in held for v in s.values()),
                       batch=max(1, min(CALIB_BATCH, count)))

    def describe(self) -> str:
        macs = f", {self.macs / 1e9:.1f} GMACs per inference" if self.macs else ""
        name, size = self.largest
        return f"largest activation {name!r} {gb(size * self.batch)}{macs}"


def _elem_bytes(elem_type: int) -> int:
    """Bytes per element; an unknown type (refused later by the loader) counts as float32."""
    try:
        return max(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize, 1)
    except (KeyError, ValueError, TypeError):
        return 4


def _known(vi: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape") or any(not d.HasField("dim_value") or d.dim_value < 0
                                      for d in t.shape.dim):
        return None
    return tuple(int(d.dim_value) for d in t.shape.dim)


def estimate(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None) -> Cost:
    """The cost of the runs at the input shapes the tool will use, without calibration data
    (:meth:`Cost.with_samples` adds it; see the module docstring)."""
    concrete = input_shapes(model, shapes)
    sized = _inferred_infos(model, concrete)
    elems, weights, inputs = _stored_sizes(model, concrete)
    traced, nbytes = _activation_sizes(model, concrete, sized, elems)
    largest = max(nbytes.items(), key=lambda kv: kv[1], default=("", 0))
    try:
        macs = stats.macs(model, traced)
    except Exception:  # noqa: BLE001 -- a malformed node: counted by nobody (refused later)
        macs = None
    return Cost(concrete, weights, inputs, sum(nbytes.values()), largest, macs)


def _inferred_infos(model: onnx.ModelProto,
                    concrete: dict[str, tuple[int, ...]]) -> dict[str, onnx.ValueInfoProto]:
    """``{name: value info}`` of the intermediate tensors and graph outputs that onnx shape
    inference (with data propagation) gives ``model`` with its inputs fixed to ``concrete``;
    only the graph outputs as declared when inference rejects it. ``model`` is not changed."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    for inp in probe.graph.input:
        if inp.name in concrete:
            inp.type.tensor_type.shape.Clear()
            for d in concrete[inp.name]:
                inp.type.tensor_type.shape.dim.add().dim_value = d
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 -- a model shape inference rejects: sized by the fallback
        inferred = probe
    return {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output]}


def _stored_sizes(model: onnx.ModelProto,
                  concrete: dict[str, tuple[int, ...]]) -> tuple[dict[str, int], int, int]:
    """``(elements, weight bytes, input bytes)``: the element count of every initializer and
    real input (at ``concrete``), the initializers' bytes (their raw data's length for a type
    numpy lacks) and the real inputs' bytes."""
    elems: dict[str, int] = {}
    weights = 0
    for init in model.graph.initializer:
        n = int(np.prod([max(d, 0) for d in init.dims]))
        elems[init.name] = n
        weights += n * _elem_bytes(init.data_type) if init.data_type in NP_TYPES else len(init.raw_data)
    inputs = 0
    for inp in graph_inputs(model):
        n = int(np.prod(concrete[inp.name]))
        elems[inp.name] = n
        inputs += n * _elem_bytes(inp.type.tensor_type.elem_type)
    return elems, weights, inputs


def _activation_sizes(model: onnx.ModelProto, concrete: dict[str, tuple[int, ...]],
                      sized: dict[str, onnx.ValueInfoProto],
                      elems: dict[str, int]) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """``(shapes, bytes)`` of the node outputs, in node order. ``shapes``: the ``concrete``
    inputs and every output whose shape ``sized`` knows in full. ``bytes``: every output's
    element count (from its known shape, else that of the node's largest input, 1 without
    inputs) times its inferred type's size (4 bytes when unknown). ``elems`` (initializers and
    inputs on entry) gains every node output's element count."""
    traced: dict[str, tuple[int, ...]] = dict(concrete)
    nbytes: dict[str, int] = {}
    for node in model.graph.node:
        fallback = max((elems.get(i, 0) for i in node.input if i), default=1)
        for out in node.output:
            vi = sized.get(out)
            shape = _known(vi) if vi is not None else None
            if shape is not None:
                traced[out] = shape
            elems[out] = int(np.prod(shape)) if shape is not None else fallback
            elem_type = vi.type.tensor_type.elem_type if vi is not None else 0
            nbytes[out] = elems[out] * _elem_bytes(elem_type)
    return traced, nbytes


def check(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None,
          samples: dict[str, np.ndarray] | None = None,
          user_shapes: dict[str, tuple[int, ...]] | None = None,
          val: dict[str, np.ndarray] | None = None) -> Cost:
    """Refuse (one line) a run whose :func:`estimate` is over the :func:`budget`; return the
    estimate. ``shapes``: the shapes the tool will use (``--shape`` and the calibration
    samples'); ``user_shapes``: those the user gave with ``--shape`` (named in the advice);
    ``val``: the ``--val`` samples, held in memory together with ``samples``."""
    cost = estimate(model, shapes).with_samples(samples, val)
    _refuse_over_budget(model, cost, samples, user_shapes, val)
    return cost


def _data_text(samples: dict[str, np.ndarray], val: dict[str, np.ndarray] | None, size: int) -> str:
    """``the calibration data (N samples, SIZE)``, or with ``--val`` both counts."""
    n = len(next(iter(samples.values())))
    if val is None:
        return f"the calibration data ({n} samples, {gb(size)})"
    return f"the calibration and --val data ({n} + {len(next(iter(val.values())))} samples, {gb(size)})"


def _refuse_over_budget(model: onnx.ModelProto, cost: Cost, samples: dict[str, np.ndarray] | None,
                        user_shapes: dict[str, tuple[int, ...]] | None,
                        val: dict[str, np.ndarray] | None = None) -> None:
    """One line saying what to change when ``cost`` is over the :func:`budget`."""
    limit, how = budget()
    if cost.memory <= limit:
        return
    over = f"needs about {gb(cost.memory)} of memory{{}}, over the budget of {gb(limit)} ({how})"
    if 2 * cost.weights > limit / 2:
        raise OnnxPruneError(f"the model {over.format('')}: its weights alone take {gb(cost.weights)}")
    if cost.samples > cost.batch * cost.activations:
        raise OnnxPruneError(f"{_data_text(samples, val, cost.samples)} {over.format('')}: "
                             "use fewer samples (a few hundred distinct inputs suffice)")
    name, axis, dim = max(((n, a, d) for n, s in cost.shapes.items() for a, d in enumerate(s)),
                          key=lambda t: t[2])
    shape = cost.shapes[name]
    where = f"input {name!r} at {'x'.join(map(str, shape))} (axis {axis} = {dim})"
    text = f"{where} {over.format(f' ({cost.describe()})')}"
    if samples is not None and name in samples and tuple(samples[name].shape[1:]) == shape[1:]:
        raise OnnxPruneError(f"{text}: the calibration samples of {name!r} are "
                             f"{'x'.join(map(str, shape[1:]))} each; make them smaller")
    if name not in (user_shapes or {}) and _static(model, name, axis):
        raise OnnxPruneError(f"{text}: the model fixes that dimension; export it with a smaller one")
    small = list(shape)
    small[axis] = min(dim - 1, 1 if axis == 0 else 224 if len(shape) == 4 else 128) if dim > 1 else 1
    raise OnnxPruneError(f"{text}: try --shape {name}:{'x'.join(map(str, small))}")


def _static(model: onnx.ModelProto, name: str, axis: int) -> bool:
    inp = next(i for i in graph_inputs(model) if i.name == name)
    dims = inp.type.tensor_type.shape.dim
    return axis < len(dims) and dims[axis].HasField("dim_value") and dims[axis].dim_value > 0


def check_npz(path: str) -> None:
    """Refuse (one line) a calibration .npz whose arrays, read from their headers without
    loading them, take more than the :func:`budget`. Files that are not readable .npz are left
    to the loader's own error."""
    total, biggest = 0, ("", (), "")
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(f)
                size = int(np.prod(shape)) * dtype.itemsize
                total += size
                if size >= int(np.prod(biggest[1] or (0,))):
                    biggest = (info.filename.removesuffix(".npy"), shape, dtype.name)
    except Exception:  # noqa: BLE001 -- not an .npz we can read: calib.load_npz says why
        return
    limit, how = budget()
    if total > limit:
        name, shape, dtype = biggest
        raise OnnxPruneError(
            f"{path}: the calibration arrays take {gb(total)} ({name!r}: {shape[0] if shape else 0} "
            f"samples of {'x'.join(map(str, shape[1:])) or 'scalars'} {dtype}), over the budget "
            f"of {gb(limit)} ({how}): use fewer or smaller samples")


def memory_error_line(exc: MemoryError) -> str:
    """The one line a MemoryError (numpy's, or onnxruntime's failed allocation, see
    :func:`onnxprune.runtime.run_outputs`) becomes: how much one allocation asked for, when it says."""
    asked = re.search(r"allocate ([0-9.]+ [KMGT]i?B)", str(exc))
    need = f"needs about {asked.group(1)} for one array alone" if asked else "ran out of memory"
    return (f"out of memory: the run {need} (available {gb(available_memory())}); "
            "try a smaller --shape or fewer calibration samples")
