"""Distill: gradient-based recovery of a pruned model towards the original's outputs.

An optional recovery step (needs the ``onnxprune[torch]`` extra). The pruned graph is run by a
differentiable torch executor of our own (:mod:`.torchexec`); the teacher is the ORIGINAL model
run once with onnxruntime on the calibration samples (and on augmented copies of them).

Invariants:

* the graph structure never changes: only trainable initializers (Conv/ConvTranspose/Gemm/MatMul
  weights and biases, BatchNormalization scale and bias) are tuned, and written back into a copy
  of ``pruned`` under the same names and dtypes;
* training starts only if the torch executor matches onnxruntime on the pruned model to
  :data:`NUMERIC_TOL` (relative); otherwise the pruned model is returned with a skip reason;
* the returned model is the best one on the held-out samples, and it is ``pruned`` itself
  (report ``kept: False``) unless held-out fidelity, re-measured with onnxruntime, improved.

Objective per output: KL divergence of the softmaxed logits for classifier-like outputs
([N, K], K > 1), otherwise MSE divided by the teacher output's variance; plus a normalised MSE
for each ``match`` pair of intermediate tensors, plus an L2 pull towards the starting weights.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import onnx
from onnx import numpy_helper

from . import calib
from .errors import OnnxPruneError
from .sensitivity import classifier_like

NUMERIC_TOL = 1e-4  # executor vs onnxruntime, relative to the largest output magnitude
LR = 1e-2  # Adam step relative to each tensor's RMS (tuned on the MNIST CNN; cosine-decayed)
LR_FLOOR = 1e-2  # RMS floor for the per-tensor step (near-zero biases still move)
L2 = 1e-2  # weight of the relative L2 pull towards the starting weights
TEMPERATURE = 2.0  # softmax temperature of the KL term while training (held-out KL uses 1)
MATCH_WEIGHT = 0.5  # weight of each intermediate-activation term
BATCH = 32  # mini-batch size (a multiple of the model's static batch size when it has one)
EVALS = 12  # held-out evaluations over the budget
MAX_VIEWS = 16  # cached teacher views of the fit set: the plain one plus augmented copies
VIEW_SHARE = 0.2  # at most this share of the budget goes into teacher runs on augmented views
VIEW_BYTES = 1 << 30  # and at most this much memory into the cached inputs
FLIP = 0.5  # probability of a horizontal flip per augmented image


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise OnnxPruneError(
            "the 'distill' recovery step needs PyTorch: pip install 'onnxprune[torch]'") from exc
    return torch


def distill(original: onnx.ModelProto, pruned: onnx.ModelProto, fit: dict[str, np.ndarray],
            held: dict[str, np.ndarray], seconds: float = 60.0, seed: int = 0,
            match: list[tuple[str, str]] | None = None) -> tuple[onnx.ModelProto, dict]:
    """Tune ``pruned``'s weights for about ``seconds`` so its outputs match ``original``'s on
    ``fit`` (calibration samples, input name -> [N, ...]); select on ``held``.

    ``match``: (original tensor, pruned tensor) pairs of equal-shaped intermediate activations to
    match as well. Returns ``(model, report)``; ``report`` is ``{"skipped": reason}`` when the
    graph cannot be run by the torch executor (the model is then ``pruned`` unchanged), else it
    holds ``steps``, ``seconds``, held-out ``kl_before``/``kl_after``,
    ``agreement_before``/``agreement_after`` (None without a classifier-like output),
    ``loss_before``/``loss_after`` and ``kept``."""
    torch = _torch()
    from . import torchexec

    start = time.perf_counter()
    try:
        net = torchexec.Executor(pruned, torchexec.trainable_names(pruned))
    except ValueError as exc:  # UnsupportedOp included: "no torch rule for <op>"
        return pruned, {"skipped": str(exc)}
    if not net.trainable:
        return pruned, {"skipped": "no trainable float weights"}
    size, static = calib.batch_size(pruned, BATCH)
    unit = size if static else 1  # a static batch dimension: samples go in whole batches of it
    fit, held = _whole_batches(fit, unit), _whole_batches(held, unit)
    if fit is None or held is None:
        return pruned, {"skipped": "too few calibration samples for the model's batch size"}
    job = _Job(torch, net, original, pruned, fit, held, list(match or []), size if static else None)
    reason = job.check()
    if reason:
        return pruned, {"skipped": reason}
    rng = np.random.default_rng(seed)
    job.cache_teacher(rng, seconds - (time.perf_counter() - start))
    steps = job.train(rng, start + seconds, job.held_loss())
    candidate = job.write_back(pruned)
    after, baseline = job.ort_score(candidate), job.ort_score(pruned)
    kept = after["loss"] < baseline["loss"]
    report = {"steps": steps, "seconds": round(time.perf_counter() - start, 2), "kept": kept,
              "views": job.views, **{f"{k}_before": v for k, v in baseline.items()},
              **{f"{k}_after": v for k, v in (after if kept else baseline).items()}}
    return (candidate if kept else pruned), report


def _whole_batches(samples: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray] | None:
    """``samples`` cut to a multiple of ``size`` (None when fewer than ``size``)."""
    n = (calib.count(samples) if samples else 0) // size * size
    return {k: v[:n] for k, v in samples.items()} if n else None


class _Job:
    """One distillation run: executor, cached teacher values, training and held-out scoring."""

    def __init__(self, torch, net, original: onnx.ModelProto, pruned: onnx.ModelProto,
                 fit: dict[str, np.ndarray], held: dict[str, np.ndarray],
                 match: list[tuple[str, str]], static: int | None):
        self.torch, self.net, self.original, self.pruned = torch, net, original, pruned
        self.fit, self.held, self.match, self.static = fit, held, match, static
        names = [o.name for o in original.graph.output]
        same = set(names) == set(net.outputs)
        # (teacher output, student output) pairs: by name when they agree, else by position.
        self.pairs = [(n, n) for n in names] if same else list(zip(names, net.outputs))
        self.views = 1
        self.tap = calib.Tap(original, [t for t, _ in match])
        self.inputs: dict[str, np.ndarray] = {}
        self.teacher: dict[str, np.ndarray] = {}
        self.held_teacher: dict[str, np.ndarray] = {}
        self.scale: dict[str, float] = {}

    # -- set-up ------------------------------------------------------------------------------

    def check(self) -> str | None:
        """Why the executor cannot be trusted (outputs differ from onnxruntime), or None."""
        from . import runtime

        n = self.static or min(8, calib.count(self.held))
        feeds = {k: v[:n] for k, v in self.held.items()}
        ref = runtime.run(runtime.session(self.pruned, runtime.RuntimeConfig(opt_level="disable")), feeds)
        try:
            with self.torch.no_grad():
                got = self._forward(feeds, [p for _, p in self.match])
        except Exception as exc:  # noqa: BLE001 -- a torch rule that cannot handle these inputs
            return f"torch executor failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        err = runtime.max_rel_error(ref, {k: v.numpy() for k, v in got.items()})
        if not err <= NUMERIC_TOL:
            return f"torch executor differs from onnxruntime ({err:.1e} relative)"
        teacher = self._teacher(feeds)
        for t, s in self.match:
            if teacher[t].shape != tuple(got[s].shape):
                return f"match {t!r} -> {s!r}: shapes {teacher[t].shape} and {tuple(got[s].shape)} differ"
        return None

    def _teacher(self, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.tap.collect(samples, [t for t, _ in self.pairs] + [t for t, _ in self.match])

    def cache_teacher(self, rng: np.random.Generator, budget: float) -> None:
        """Teacher values on the held-out set, the fit set and as many augmented views of the fit
        set as :data:`VIEW_SHARE` of the budget (and :data:`VIEW_BYTES`) allow."""
        self.held_teacher = self._teacher(self.held)
        began = time.perf_counter()
        parts_in, parts_out = [self.fit], [self._teacher(self.fit)]
        once = time.perf_counter() - began
        size = sum(v.nbytes for v in self.fit.values()) + sum(v.nbytes for v in parts_out[0].values())
        room = min(VIEW_SHARE * max(budget, 0.0) / max(once, 1e-3), VIEW_BYTES / max(size, 1))
        for _ in range(int(min(MAX_VIEWS - 1, room - 1)) if _augmentable(self.fit) else 0):
            view = _augment(self.fit, rng)
            parts_in.append(view)
            parts_out.append(self._teacher(view))
        self.views = len(parts_in)
        self.inputs = {k: np.concatenate([p[k] for p in parts_in]) for k in self.fit}
        self.teacher = {k: np.concatenate([p[k] for p in parts_out]) for k in parts_out[0]}
        for name in self.teacher:
            self.scale[name] = max(float(np.var(self.teacher[name], dtype=np.float64)), 1e-12)

    # -- running and scoring -------------------------------------------------------------------

    def _forward(self, feeds: dict[str, np.ndarray], extra: list[str]) -> dict:
        """Executor outputs (plus ``extra`` tensors) for some samples, run in chunks of the static
        batch size, or of :data:`BATCH` samples (a training mini-batch is one chunk)."""
        torch = self.torch
        n = calib.count(feeds)
        size = self.static or BATCH
        chunks = [self.net({k: torch.from_numpy(np.ascontiguousarray(v[i:i + size]))
                            for k, v in feeds.items()}, extra) for i in range(0, n, size)]
        return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}

    def _loss(self, got: dict, want: dict[str, np.ndarray], temperature: float,
              with_match: bool) -> tuple:
        """(objective, summed KL) of student values ``got`` against teacher values ``want``."""
        torch = self.torch
        total, kl = 0.0, 0.0
        for t, s in self.pairs:
            target = torch.from_numpy(want[t])
            if classifier_like(t, want[t]):
                term = torch.nn.functional.kl_div(
                    torch.log_softmax(got[s] / temperature, 1), torch.log_softmax(target / temperature, 1),
                    reduction="batchmean", log_target=True) * temperature ** 2
                kl = kl + term
            else:
                term = torch.mean((got[s] - target) ** 2) / self.scale[t]
            total = total + term
        for t, s in self.match if with_match else ():
            target = torch.from_numpy(want[t])
            total = total + MATCH_WEIGHT * torch.mean((got[s] - target) ** 2) / self.scale[t]
        return total, kl

    def held_loss(self) -> float:
        """Held-out objective (temperature 1, outputs only) of the executor's current weights."""
        with self.torch.no_grad():
            loss, _ = self._loss(self._forward(self.held, []), self.held_teacher, 1.0, False)
        return float(loss)

    # -- training ------------------------------------------------------------------------------

    def train(self, rng: np.random.Generator, deadline: float, held_loss: float) -> int:
        """Adam with a cosine-decayed relative step until ``deadline``; keeps the weights with
        the best held-out loss (the starting ones unless something beats ``held_loss``)."""
        torch = self.torch
        params = list(self.net.params)
        start_values = [p.detach().clone() for p in params]
        norms = [max(float(v.pow(2).sum()), 1e-12) for v in start_values]
        rates = [LR * max(float(v.pow(2).mean().sqrt()), LR_FLOOR) for v in start_values]
        opt = torch.optim.Adam([{"params": [p], "lr": r} for p, r in zip(params, rates)])
        best, best_values = held_loss, [v.clone() for v in start_values]
        n = calib.count(self.inputs)
        batch = min(BATCH if self.static is None else max(BATCH // self.static, 1) * self.static,
                    n // (self.static or 1) * (self.static or 1))
        began = time.perf_counter()
        span = max(deadline - began, 1e-3)
        next_eval, steps = began + span / EVALS, 0
        extra = [s for _, s in self.match]
        while time.perf_counter() < deadline:
            frac = min((time.perf_counter() - began) / span, 1.0)
            for group, rate in zip(opt.param_groups, rates):
                group["lr"] = rate * 0.5 * (1.0 + math.cos(math.pi * frac))
            pick = np.sort(rng.choice(n, batch, replace=False))
            got = self._forward({k: v[pick] for k, v in self.inputs.items()}, extra)
            loss, _ = self._loss(got, {k: v[pick] for k, v in self.teacher.items()}, TEMPERATURE, True)
            pull = sum((p - v).pow(2).sum() / m for p, v, m in zip(params, start_values, norms))
            opt.zero_grad()
            (loss + L2 * pull).backward()
            opt.step()
            steps += 1
            now = time.perf_counter()
            if now >= next_eval or now >= deadline:
                next_eval = now + span / EVALS
                score = self.held_loss()
                if score < best:
                    best, best_values = score, [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, v in zip(params, best_values):
                p.copy_(v)
        return steps

    def ort_score(self, model: onnx.ModelProto) -> dict:
        """Held-out loss, KL and top-1 agreement (first classifier-like output; None without
        one) of ``model`` run with onnxruntime."""
        got = calib.Tap(model, []).collect(self.held, [s for _, s in self.pairs])
        tensors = {k: self.torch.from_numpy(v) for k, v in got.items()}
        loss, kl = self._loss(tensors, self.held_teacher, 1.0, False)
        first = next(((t, s) for t, s in self.pairs if classifier_like(t, self.held_teacher[t])), None)
        if first is None:
            return {"loss": float(loss), "kl": None, "agreement": None}
        agreement = float(np.mean(self.held_teacher[first[0]].argmax(1) == got[first[1]].argmax(1)))
        return {"loss": float(loss), "kl": float(kl), "agreement": agreement}

    def write_back(self, pruned: onnx.ModelProto) -> onnx.ModelProto:
        """A copy of ``pruned`` with the executor's trainable initializers, same names and dtypes."""
        values = self.net.trained()
        out = copy.deepcopy(pruned)
        for init in out.graph.initializer:
            if init.name in values:
                dtype = numpy_helper.to_array(init).dtype
                init.CopyFrom(numpy_helper.from_array(values[init.name].astype(dtype), init.name))
        return out


def _augmentable(samples: dict[str, np.ndarray]) -> bool:
    """Augment when every 4-D float input is an image batch of one common spatial size."""
    images = [v for v in samples.values() if v.ndim == 4 and np.issubdtype(v.dtype, np.floating)]
    return bool(images) and len({v.shape[2:] for v in images}) == 1


def _augment(samples: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per sample: a random horizontal flip and a random shift of up to 1/12 of the width
    (edge-padded), the same for every 4-D float input; other inputs are copied."""
    n = calib.count(samples)
    flips = rng.random(n) < FLIP
    out = {}
    for name, value in samples.items():
        if value.ndim != 4 or not np.issubdtype(value.dtype, np.floating):
            out[name] = value
            continue
        h, w = value.shape[2:]
        m = max(1, w // 12)
        shifts = rng.integers(-m, m + 1, (n, 2))
        padded = np.pad(value, ((0, 0), (0, 0), (m, m), (m, m)), mode="edge")
        view = np.empty_like(value)
        for i, (dy, dx) in enumerate(shifts):
            view[i] = padded[i, :, m + dy:m + dy + h, m + dx:m + dx + w]
        out[name] = np.where(flips[:, None, None, None], view[..., ::-1], view)
    return out
