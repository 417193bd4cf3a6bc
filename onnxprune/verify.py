"""Verify: the pruned model is valid, runs, keeps its outputs' shapes, and its index maps are right.

The index-map proof (:func:`zero_filter_error`): in the unpruned model, zero every consumer's
input slice for the removed channels (so they carry nothing downstream; zeroing the producer is
not enough when a BN or bias follows), then compare with the pruned model. Equal outputs (to
float rounding) prove that every rule removed exactly the positions its map claims. When a plan
does not prove, :func:`prove` bisects it into the groups that do and those that break it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import onnx
from onnx import numpy_helper

from . import runtime, runtimes
from .errors import OnnxPruneError
from .graph import ChannelGraph
from .rewrite import PrunePlan, apply_plan, channel_masks

PROOF_TOLERANCE = 1e-4  # max relative output error between the pruned and zero-filter models


def check_structure(model: onnx.ModelProto) -> None:
    """The full onnx checker (with shape inference), as a one-line OnnxPruneError."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise OnnxPruneError(f"internal: pruned model fails onnx.checker: {str(exc).splitlines()[0]}") from exc


def check_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                reference: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Full onnx check, load and run in onnxruntime; outputs keep the names and shapes of the
    ``reference`` outputs (the unpruned model's on the same feeds). Returns the outputs."""
    check_structure(model)
    out = runtime.run_outputs(runtimes.session(model), feeds)
    if reference is not None:
        for name, value in reference.items():
            if name not in out or out[name].shape != value.shape:
                raise OnnxPruneError(f"internal: output {name!r} changed shape after pruning")
    return out


def zeroed_model(g: ChannelGraph, plan: PrunePlan) -> onnx.ModelProto:
    """``g.model`` with the consumer input slices of the removed channels set to zero."""
    model = copy.deepcopy(g.model)
    mask = channel_masks(g, plan)
    inits = {i.name: i for i in model.graph.initializer}
    arrays: dict[str, np.ndarray] = {}
    for p in g.params:
        if p.role != "in":
            continue
        gone = np.flatnonzero(~mask(p.tensor))
        if not len(gone):
            continue
        value = arrays.get(p.param, g.consts[p.param]).copy()
        index = [slice(None)] * value.ndim
        index[p.axis] = gone
        value[tuple(index)] = 0
        arrays[p.param] = value
    for name, value in arrays.items():
        inits[name].CopyFrom(numpy_helper.from_array(value, name))
    return model


def zero_filter_error(g: ChannelGraph, plan: PrunePlan, feeds: dict[str, np.ndarray],
                      pruned: onnx.ModelProto | None = None) -> float:
    """Max relative output error between the zeroed and the pruned model (should be ~1e-7);
    ``pruned`` is ``apply_plan(g, plan)`` when the caller already has it."""
    cfg = runtimes.RuntimeConfig(opt_level="disable")
    ref = runtime.run_outputs(runtimes.session(zeroed_model(g, plan), cfg), feeds)
    got = runtime.run_outputs(runtimes.session(pruned or apply_plan(g, plan), cfg), feeds)
    return runtime.max_rel_error(ref, got)


class Proof(NamedTuple):
    """The outcome of proving a plan: ``why`` it is not proven ('' when it is), its zero-filter
    error (inf when the rewrite fails) and the pruned model (None when the rewrite fails)."""

    why: str
    error: float
    model: onnx.ModelProto | None


def check_plan(g: ChannelGraph, plan: PrunePlan, feeds: dict[str, np.ndarray]) -> Proof:
    """Prove ``plan``: it rewrites, passes the checker, runs in onnxruntime and matches the
    zero-filter model to :data:`PROOF_TOLERANCE`."""
    try:
        pruned = apply_plan(g, plan)
        check_structure(pruned)
        err = zero_filter_error(g, plan, feeds, pruned)
    except OnnxPruneError as exc:
        return Proof(str(exc).removeprefix("internal: "), float("inf"), None)
    if err > PROOF_TOLERANCE:
        return Proof(f"pruned outputs differ from the zero-filter model ({err:.1e})", err, pruned)
    return Proof("", err, pruned)


def prove(g: ChannelGraph, plan: PrunePlan, feeds: dict[str, np.ndarray]
          ) -> tuple[PrunePlan, list[tuple[int, str]]]:
    """Split ``plan`` into the largest part found to be proven and the groups that break it.

    Bisection over the plan's groups: with a proven base set, a failing set of groups is halved;
    a failing half is searched on its own, a passing half joins the base (so groups that fail
    only together are found too). Invariant: the returned plan passes :func:`check_plan`.
    Each failure is ``(group id, "index map not proven for <op types>: <why>")``.
    Raises OnnxPruneError (a refusal of the model) when even the empty plan fails."""
    gids = sorted(plan.removed(g))

    def why(subset: list[int]) -> str:
        return check_plan(g, PrunePlan({k: plan.keep[k] for k in subset}), feeds).why

    base_failure = why([])
    if base_failure:  # nothing to freeze: the model itself does not pass what pruned ones must
        raise OnnxPruneError(f"the model does not pass the checks a pruned model must pass, even "
                             f"unpruned: {base_failure}")
    reason = why(gids)
    bad = _culprits(why, [], gids, reason) if reason else []
    failed = {gid for gid, _ in bad}
    good = PrunePlan({k: plan.keep[k] for k in gids if k not in failed})
    return good, [(gid, f"index map not proven for {_op_types(g, gid)}: {r}") for gid, r in bad]


def _culprits(why: Callable[[list[int]], str], base: list[int], gids: list[int],
              reason: str) -> list[tuple[int, str]]:
    """Groups of ``gids`` to drop so that ``base`` plus the rest passes, given that ``base``
    passes and ``base + gids`` fails with ``reason``."""
    if len(gids) == 1:
        return [(gids[0], reason)]
    left, right = gids[:len(gids) // 2], gids[len(gids) // 2:]
    left_reason = why(base + left)
    if not left_reason:
        return _culprits(why, base + left, right, reason)
    bad = _culprits(why, base, left, left_reason)
    failed = {gid for gid, _ in bad}
    kept = base + [k for k in left if k not in failed]
    right_reason = why(kept + right)
    return bad + (_culprits(why, kept, right, right_reason) if right_reason else [])


def _op_types(g: ChannelGraph, gid: int) -> str:
    """The op types of the nodes that read the group's channels (where its index maps live)."""
    tensors = {t for t, _ in g.group_spaces()[gid]}
    return ", ".join(sorted({n.op_type for n in g.model.graph.node
                             if any(i in tensors for i in n.input)}))
