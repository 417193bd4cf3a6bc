"""Load and normalise: turn what real exporters write into one canonical form.

The canonical form, which every later stage relies on:

* no initializer is listed as a graph input (old exporters did that);
* every constant is an initializer: ``Constant`` nodes and nodes whose inputs are all constant
  (``Identity``/``Cast``/``ConstantOfShape``/``Reshape``/... chains) are folded;
* attributes an op leaves implicit are written out by its spec (e.g. Conv ``kernel_shape``);
* an initializer feeds exactly one node input, so slicing it for one consumer never changes
  another (shared ones are copied);
* the IR version and opsets of the input are kept, so the runtime that loaded the input loads
  the output; :func:`export_form` puts a model back into what its IR version requires (before
  IR 4 every initializer must also be a graph input).

Normalisation never changes what the model computes; :func:`normalise` checks it by running both.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import onnx
from onnx import numpy_helper

from . import ops, runtime, runtimes
from .errors import OnnxPruneError, first_line
from .inputs import graph_inputs, random_feeds

_FOLD_MAX_ELEMENTS = 1 << 28  # 1 GiB of float32 stays under protobuf's 2 GiB; memory is guard.py's check
_ATTRIBUTE_TYPES = set(onnx.AttributeProto.AttributeType.values()) - {onnx.AttributeProto.UNDEFINED}


def load_model(path: str) -> onnx.ModelProto:
    """Read an ONNX file (external data resolved next to it) or raise a one-line error."""
    check_readable(path)
    try:
        model = onnx.load(path)
    except Exception as exc:
        raise OnnxPruneError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc
    if not model.graph.node:
        raise OnnxPruneError(f"{path}: not an ONNX model (no graph nodes)")
    return model


def check_readable(path: str) -> None:
    """Raise a one-line error unless ``path`` is a readable file."""
    if not os.path.exists(path):
        raise OnnxPruneError(f"{path}: no such file")
    if os.path.isdir(path):
        raise OnnxPruneError(f"{path}: is a directory, not an ONNX file")
    if not os.access(path, os.R_OK):
        raise OnnxPruneError(f"{path}: not readable")


def parse_shape_overrides(specs: tuple[str, ...] | list[str]) -> dict[str, tuple[int, ...]]:
    """Parse ``--shape`` values, ``name:1x3x224x224`` strings, into ``{name: (1, 3, 224, 224)}``,
    the overrides :func:`onnxprune.input_shapes` resolves a model's inputs with."""
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise OnnxPruneError(f"bad --shape {spec!r}: expected NAME:DxDxD, e.g. input:1x3x224x224")
        out[name] = shape
    return out


def normalise(
    model: onnx.ModelProto,
    shapes: dict[str, tuple[int, ...]] | None = None,
    verify: bool = True,
) -> onnx.ModelProto:
    """Return the canonical form of ``model`` (the argument is not modified).

    Raises OnnxPruneError (one line naming the tensor or node) for quantized graphs, malformed
    initializers, NaN weights, malformed nodes and models onnxruntime cannot load or run;
    onnxruntime loads the model (its own checks) before any of this module reads an attribute.
    """
    _refuse_quantized(model)
    check_initializers(model)
    if verify:
        original = runtimes.session(model, runtimes.RuntimeConfig(opt_level="disable"))
    out = _canonical_copy(model)
    if verify:
        _check_same_outputs(model, original, out, shapes)
    return out


def _refuse_quantized(model: onnx.ModelProto) -> None:
    """One line naming the quantized ops when ``model``'s graph has any (nothing else checked)."""
    quantized = ops.quantized_ops(model.graph)
    if quantized:
        raise OnnxPruneError(
            f"quantized graphs are not supported (found {', '.join(quantized)}); "
            "prune the float model, then quantize"
        )


def _canonical_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` in the canonical form of the module docstring (``model`` unchanged):
    real inputs only, constants folded, then checked (finite constants, well-formed nodes),
    initializers unshared and implicit attributes written out, in that order."""
    out = copy.deepcopy(model)
    graph = out.graph
    kept_inputs = graph_inputs(out)
    del graph.input[:]
    graph.input.extend(kept_inputs)
    _fold_constants(out)
    consts = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    check_finite(consts)
    _check_nodes(out, consts)
    _unshare_initializers(out)
    _make_explicit(out)
    return out


def _feeds_text(feeds: dict[str, np.ndarray]) -> str:
    """The inputs a check ran on, for its message: ``name 1x3x224x224, ...``."""
    return ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in feeds.items())


def _check_same_outputs(model: onnx.ModelProto, original, out: onnx.ModelProto,
                        shapes: dict[str, tuple[int, ...]] | None) -> None:
    """Raise one line unless ``original`` (the session of ``model``) gives NaN-free, repeatable
    outputs on random inputs at ``shapes`` and ``out`` (its canonical form) gives the same ones
    (max relative error 1e-6)."""
    feeds = random_feeds(model, shapes)
    ref = runtime.run_outputs(original, feeds)
    bad = next((k for k, v in ref.items() if np.issubdtype(v.dtype, np.floating)
                and np.isnan(v).any()), None)
    if bad is not None:
        given = _feeds_text(feeds)
        raise OnnxPruneError(f"the model outputs NaN in {bad!r} on random inputs ({given}): "
                             "nothing pruned could be checked against it")
    if runtime.max_rel_error(ref, runtime.run_outputs(original, feeds)) > 1e-6:
        given = _feeds_text(feeds)
        raise OnnxPruneError(
            f"the model gives different outputs on two runs of the same inputs ({given}): "
            "nothing pruned could be checked against it (an exporter bug? try --shape or "
            "the other torch exporter)")
    got = runtime.run_outputs(runtimes.session(out, runtimes.RuntimeConfig(opt_level="disable")), feeds)
    err = runtime.max_rel_error(ref, got)
    if err > 1e-6:
        raise OnnxPruneError(f"internal: normalisation changed the outputs (rel. error {err:.2e})")


INITIALIZERS_ARE_INPUTS_BEFORE_IR = 4


def export_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (changed in place and returned) in the form its IR version requires: before
    IR 4, every initializer is also listed as a graph input, with its current shape (after
    real inputs); from IR 4 on, nothing changes."""
    if model.ir_version >= INITIALIZERS_ARE_INPUTS_BEFORE_IR:
        return model
    graph = model.graph
    real = graph_inputs(model)
    del graph.input[:]
    graph.input.extend(real)
    graph.input.extend(onnx.helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
                       for i in graph.initializer)
    return model


FILLS_FROM_OPSET = 9  # ConstantOfShape's first opset


def source_form(model: onnx.ModelProto, source: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (changed in place and returned) stored the way its source is, so a pruned model
    is never written larger than the source's own form:

    * a tensor the source computes from constants instead of storing it (a ``ConstantOfShape``
      and what folds from one: weights stored as one value and a shape, as in the onnx package's
      "light" models) that is an initializer of ``model`` still holding a single value is
      written back as a ``ConstantOfShape`` of its new shape (numeric tensors, opset 9 on;
      tensors recovery changed stay initializers);
    * inferred ``value_info`` is kept only when the source carried some;
    * then :func:`export_form`."""
    graph = model.graph
    if not source.graph.value_info:
        del graph.value_info[:]
    uniform = _uniform_fills(model, source)
    if uniform:
        _store_as_fills(graph, uniform)
    return export_form(model)


def _uniform_fills(model: onnx.ModelProto, source: onnx.ModelProto) -> list[tuple[str, np.ndarray]]:
    """``(name, value)`` of each initializer of ``model``, in graph order, that ``source``
    computes with a node (none before opset 9) and that is numeric (or bool), has more than one
    element and holds a single value."""
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    fills = {o for n in source.graph.node for o in n.output} if opset >= FILLS_FROM_OPSET else set()
    uniform = []
    for init in graph.initializer:
        if init.name in fills:
            value = numpy_helper.to_array(init)
            numeric = np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_
            if numeric and value.size > 1 and bool((value == value.flat[0]).all()):
                uniform.append((init.name, value))
    return uniform


def _store_as_fills(graph: onnx.GraphProto, uniform: list[tuple[str, np.ndarray]]) -> None:
    """Replace each ``(name, value)`` initializer of ``graph`` (and its graph input, if any) by a
    ``ConstantOfShape`` node, placed before all others, reading a new int64 shape initializer
    ``<name>__shape`` (``_`` appended until no tensor of the graph has that name)."""
    taken = ({i.name for i in graph.input} | {o.name for o in graph.output}
             | {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output})
    converted = {name for name, _ in uniform}
    nodes, shapes = [], []
    for name, value in uniform:
        shape_name = f"{name}__shape"
        while shape_name in taken:
            shape_name += "_"
        taken.add(shape_name)
        shapes.append(numpy_helper.from_array(np.array(value.shape, np.int64), shape_name))
        nodes.append(onnx.helper.make_node("ConstantOfShape", [shape_name], [name],
                                           value=numpy_helper.from_array(value.reshape(-1)[:1].copy())))
    _drop_initializers(graph, converted)
    graph.initializer.extend(shapes)
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)


def derived(model: onnx.ModelProto) -> onnx.ModelProto:
    """A model the tool derived from a normalised one (a cut prefix or suffix, a probe, an
    isolated layer), changed in place and returned in its source's export form: initializers no
    node reads are dropped (before IR 4 onnxruntime refuses an initializer that is not a graph
    input, and a cut leaves some unread) and :func:`export_form` is applied."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    used |= _subgraph_references(graph)
    unread = {i.name for i in graph.initializer if i.name not in used}
    if unread:
        _drop_initializers(graph, unread)
    return export_form(model)


OFFLOAD_BYTES = 1 << 20  # initializers this large are shared through files by offloaded()


def offloaded(model: onnx.ModelProto, folder: str, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers of ``OFFLOAD_BYTES`` or more are external data in
    files of ``folder``, written once from ``arrays`` (their values, by name). For the models
    derived from it that many sessions load (one probe per group): a model file written into
    ``folder`` costs what its nodes cost, and a session made from that path reads the shared
    weights from the files instead of parsing a copy of them each time. Values are unchanged."""
    light = onnx.ModelProto()
    light.CopyFrom(model)
    for k, init in enumerate(light.graph.initializer):
        value = arrays.get(init.name)
        if value is None or value.nbytes < OFFLOAD_BYTES or init.data_location == init.EXTERNAL:
            continue
        name = f"weight-{k}.bin"
        np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tofile(os.path.join(folder, name))
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                      "uint64_data", "string_data"):
            init.ClearField(field)
        init.data_location = init.EXTERNAL
        del init.external_data[:]
        for key, text in (("location", name), ("offset", "0"), ("length", str(value.nbytes))):
            init.external_data.add(key=key, value=text)
    return light


def _drop_initializers(graph: onnx.GraphProto, names: set[str]) -> None:
    """Remove the initializers ``names`` and their graph-input entries, keeping the order of
    the rest."""
    kept = [i for i in graph.initializer if i.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [i for i in graph.input if i.name not in names]
    del graph.input[:]
    graph.input.extend(inputs)


def _fold_constants(model: onnx.ModelProto) -> None:
    """Fold Constant nodes and all-constant subexpressions of foldable ops into initializers."""
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    kept, folded = [], []
    for node in graph.node:
        fold = ops.is_constant(node) or (
            ops.is_foldable(node)
            and all(not name or name in values for name in node.input)
            and not any(o in outputs for o in node.output)
        )
        if fold:
            try:
                feeds = {n: values[n] for n in node.input if n}
                results = ReferenceEvaluator(_single_node_model(model, node, values)).run(None, feeds)
            except Exception:  # noqa: BLE001 -- an op the reference evaluator lacks stays a node
                fold = False
            else:
                if any(np.asarray(r).size > _FOLD_MAX_ELEMENTS for r in results):
                    fold = False
        if not fold:
            kept.append(node)
            continue
        for name, value in zip(node.output, results):
            values[name] = np.asarray(value)
            folded.append(numpy_helper.from_array(np.asarray(value), name))
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(folded)
    used = {name for node in graph.node for name in node.input} | outputs
    used |= _subgraph_references(graph)
    live = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)


def _single_node_model(model: onnx.ModelProto, node: onnx.NodeProto, values: dict) -> onnx.ModelProto:
    inputs = [
        onnx.helper.make_tensor_value_info(
            n, onnx.helper.np_dtype_to_tensor_dtype(values[n].dtype), values[n].shape
        )
        for n in node.input if n
    ]
    outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output]
    graph = onnx.helper.make_graph([node], "fold", inputs, outputs)
    return onnx.helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)


def subgraph_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name read by nodes inside the subgraphs (If/Loop/Scan bodies) of ``graph``."""
    return _subgraph_references(graph)


def _subgraph_references(graph: onnx.GraphProto) -> set[str]:
    names: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            subs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
            for sub in subs:
                names |= {n for sn in sub.node for n in sn.input}
                names |= {o.name for o in sub.output}
                names |= _subgraph_references(sub)
    return names


def check_initializers(model: onnx.ModelProto) -> None:
    """Refuse (one line naming the tensor) an initializer of an unknown data type, with
    negative dims, or whose data does not fill its dims."""
    for init in model.graph.initializer:
        if any(d < 0 for d in init.dims):
            raise OnnxPruneError(f"initializer {init.name!r} has negative dims {list(init.dims)}")
        try:
            onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
        except (KeyError, ValueError):
            raise OnnxPruneError(f"initializer {init.name!r} has an unknown data type "
                                 f"({init.data_type})") from None
        if init.data_location == onnx.TensorProto.EXTERNAL:
            continue
        try:
            numpy_helper.to_array(init)
        except Exception as exc:  # noqa: BLE001 -- onnx raises several types for bad data
            raise OnnxPruneError(f"initializer {init.name!r}: its data does not fill its dims "
                                 f"{list(init.dims)} ({first_line(exc)})") from None


def check_finite(consts: dict[str, np.ndarray]) -> None:
    """Refuse a NaN in a floating-point initializer (a model that outputs NaN cannot be
    checked), naming the tensor. Infinities stay allowed (attention masks use them)."""
    for name, value in consts.items():
        if np.issubdtype(value.dtype, np.floating) and np.isnan(value).any():
            raise OnnxPruneError(
                f"initializer {name!r} holds NaN ({int(np.isnan(value).sum())} of "
                f"{value.size} values): a model that computes NaN cannot be checked")


def _check_nodes(model: onnx.ModelProto, consts: dict[str, np.ndarray]) -> None:
    """Refuse (one line naming the node) an attribute of an unknown type or one its op spec
    cannot use (:meth:`onnxprune.ops.OpSpec.validate`)."""
    opsets = ops.opset_versions(model)
    for node in model.graph.node:
        label = node.name or (node.output[0] if node.output else node.op_type)
        where = f"node {label!r} ({node.op_type})"
        for a in node.attribute:
            if a.type not in _ATTRIBUTE_TYPES:
                raise OnnxPruneError(f"{where}: attribute {a.name!r} has an unknown type ({a.type})")
        spec = ops.spec_for(node, opsets)
        why = spec.validate(node, consts) if spec is not None else ""
        if why:
            raise OnnxPruneError(f"{where}: {why}")


def _make_explicit(model: onnx.ModelProto) -> None:
    """Let each node's spec write the attributes its op leaves implicit (see
    :meth:`onnxprune.ops.OpSpec.make_explicit`)."""
    opsets = ops.opset_versions(model)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        spec = ops.spec_for(node, opsets)
        if spec is not None:
            spec.make_explicit(node, consts)


def _unshare_initializers(model: onnx.ModelProto) -> None:
    """Give every node input its own initializer, so slicing one use never touches another."""
    graph = model.graph
    by_name = {i.name: i for i in graph.initializer}
    seen: set[str] = set()
    taken = set(by_name) | {o for n in graph.node for o in n.output}
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name not in by_name:
                continue
            if name not in seen:
                seen.add(name)
                continue
            new = f"{name}__{node.name or node.op_type}_{k}"
            while new in taken:
                new += "_"
            taken.add(new)
            clone = copy.deepcopy(by_name[name])
            clone.name = new
            graph.initializer.append(clone)
            node.input[k] = new
