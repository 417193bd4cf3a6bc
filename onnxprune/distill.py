"""Distill: gradient-based recovery of a pruned model towards the original's function.

An optional recovery step (needs the ``onnxprune[torch]`` extra). Student and teacher are both
run by a differentiable torch executor of our own (:mod:`.torchexec`): the pruned graph, whose
weights are tuned, and the ORIGINAL graph, run without gradients on the same random view of
every mini-batch (so every view is fresh and the teacher is never asked about an input the
student does not see; held-out teacher values are computed once).

Objective: per output, KL divergence of the softmaxed logits at :data:`TEMPERATURE` for
classifier-like outputs ([N, K], K > 1), otherwise MSE divided by the teacher output's variance
(real tokens only when the inputs carry an attention mask); plus, weighted by
:data:`MATCH_WEIGHT`, the mean over the ``match`` tensors (intermediate block outputs, see
:class:`Match`) of the MSE divided by each channel's teacher variance; plus an L2 pull towards
the starting weights. Views (:class:`_Views`): random resized crops, flips and small colour
changes of image inputs; token dropout of text inputs, the attention mask kept consistent.

Invariants:

* the graph structure never changes: only trainable initializers (Conv/ConvTranspose/Gemm/MatMul
  weights and biases, normalisation scales and biases) are tuned, and written back into a copy
  of ``pruned`` under the same names and dtypes;
* training starts only if the torch executor matches onnxruntime on both models to
  :data:`NUMERIC_TOL` (relative); otherwise the pruned model is returned with a skip reason;
* repeatable: the wall-clock budget becomes a step count once (the time of the first steps,
  rounded down to whole epochs or a coarse grid), stored under ``$ONNXPRUNE_CACHE/distill.json``
  keyed by models, data, settings, torch version, threads and device; a second run reuses it.
  Every random choice is seeded, torch runs deterministic algorithms with a fixed thread count,
  and held-out evaluations fall on fixed steps: same inputs and cache, same written bytes;
* the returned model is the best one on ``held`` (evaluated every epoch, at least
  :data:`MIN_EVALS` times; training stops early after :data:`PATIENCE` evaluations and as many
  epochs without a gain), and it is ``pruned`` itself (report ``kept: False``) unless the loss on
  ``held``, re-measured with onnxruntime, improved. In a recovery ``held`` is a slice of the fit
  samples (:func:`selection_split`): the run's held-out samples judge the result only once.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from . import cachefile, calib, runtime, runtimes
from .errors import OnnxPruneError
from .fidelity import classifier_like

NUMERIC_TOL = 1e-4  # executor vs onnxruntime, relative to the largest output magnitude
LR = 3e-4  # Adam step relative to each tensor's RMS (cosine-decayed after a short ramp)
LR_FLOOR = 1e-2  # RMS floor for the per-tensor step (near-zero biases still move)
RAMP = 5  # steps of linearly rising step size at the start
L2 = 1e-2  # weight of the relative L2 pull towards the starting weights
TEMPERATURE = 2.0  # softmax temperature of the KL term while training (held-out KL uses 1)
MATCH_WEIGHT = 1.0  # weight of the mean intermediate-activation term
VAR_FLOOR = 1e-2  # per-channel variance floor of a matched tensor, relative to its mean variance
BATCH = 32  # mini-batch size (a multiple of the model's static batch size when it has one)
EVAL_BATCH = 64  # samples per held-out evaluation pass
DECIDE = 3  # the step count is decided after this many steps (their median time, the first left out)
MIN_EVALS = 8  # held-out evaluations over a run at least (else one per epoch)
PATIENCE = 3  # early stop after this many evaluations and epochs without a held-out gain
GAIN = 1e-3  # a held-out loss counts as a gain when it is this much (relative) below the best
MAX_EPOCHS = 60  # the step count never plans more epochs than this
DEFAULT_SECONDS = 240.0  # --distill-seconds default (see the README: MobileNetV2 at 1.3x)
PLAIN = 0.2  # share of image views that keep the whole frame (flipped or not)
CROP_AREA = (0.25, 1.0)  # random resized crop: area share of the frame
CROP_RATIO = (3 / 4, 4 / 3)  # and aspect ratio
FLIP = 0.5  # probability of a horizontal flip
BRIGHTNESS, CONTRAST, SATURATION = 0.1, 0.2, 0.2  # colour jitter amplitudes
TOKEN_DROP = 0.1  # token dropout: share of real tokens (not the first or last) removed


@dataclass
class Match:
    """An intermediate tensor to match: ``teacher`` in the original graph, ``student`` in the
    pruned one; the student keeps the teacher's channel positions ``keep`` along ``axis`` (None:
    all of them)."""

    teacher: str
    student: str
    axis: int = 1
    keep: np.ndarray | None = None


def require_torch():
    """torch (the optional extra), imported here. Its first import in the process gets
    ``OMP_WAIT_POLICY=PASSIVE`` unless the caller chose a policy: OpenMP threads that wait for
    each other then sleep instead of spinning, so a machine busy with other work does not slow
    every op down several times (a MobileNetV2 training step with 2 threads on 2 busy cores:
    6.5 s spinning, 1.9 s passive; the results are the same)."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError as exc:
        raise OnnxPruneError(
            "the 'distill' recovery step needs PyTorch: pip install 'onnxprune[torch]'") from exc
    return torch


def device(torch):
    """The one place distill chooses its device: the first CUDA device when torch sees one
    (cuBLAS set up for deterministic results), else the CPU."""
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return torch.device("cuda")
    return torch.device("cpu")


def threads() -> int:
    """Torch threads: ``$ONNXPRUNE_DISTILL_THREADS``, else every core this process may run on
    (see :func:`require_torch` for a machine busy with other work)."""
    given = os.environ.get("ONNXPRUNE_DISTILL_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _settings(torch, dev, count: int):
    """``count`` torch threads while distilling, and on a GPU deterministic full-precision
    algorithms (no TF32: the executor must match onnxruntime to :data:`NUMERIC_TOL`); the
    caller's settings after. (On the CPU the ops used are deterministic for a fixed thread
    count; asking torch for it there would import its compiler stack, seconds.)"""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(count)
    cuda = dev.type == "cuda"
    if cuda:
        cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
        old = (torch.are_deterministic_algorithms_enabled(),
               torch.is_deterministic_algorithms_warn_only_enabled(),
               cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32)
        torch.use_deterministic_algorithms(True, warn_only=True)
        cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = False, True, False, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.set_num_threads(old_threads)
        if cuda:
            torch.use_deterministic_algorithms(old[0], warn_only=old[1])
            cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = old[2:]


SELECT_SHARE = 0.25  # the tail of the fit samples distill selects on when it runs in recovery


def selection_split(fit: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(train, select)``: the fit samples for :func:`distill` in a recovery, its last
    :data:`SELECT_SHARE` (the fit part is in content order, so other content) held back for
    picking the best step and stopping early. The run's held-out samples are thus never seen
    by the many evaluations of a distillation; they judge its result once, like every step."""
    n = calib.count(fit)
    cut = n - max(1, int(n * SELECT_SHARE))
    return {k: v[:cut] for k, v in fit.items()}, {k: v[cut:] for k, v in fit.items()}


def distill(original: onnx.ModelProto, pruned: onnx.ModelProto, fit: dict[str, np.ndarray],
            held: dict[str, np.ndarray], seconds: float = DEFAULT_SECONDS, seed: int = 0,
            match: list[Match] | None = None, steps: int | None = None
            ) -> tuple[onnx.ModelProto, dict]:
    """Tune ``pruned``'s weights within about ``seconds`` so it computes what ``original``
    computes on views of ``fit`` (calibration samples, input name -> [N, ...]); select and stop
    early on ``held``. ``steps``: make this many steps instead of a budgeted count (tests).

    Returns ``(model, report)``; ``report`` is ``{"skipped": reason}`` when the graph cannot be
    run by the torch executor or the budget does not allow a step (the model is then
    ``pruned``), else it holds ``steps`` (made), ``planned_steps`` and where that count came
    from (``plan``: measured or cache), ``epochs``, ``batch``, ``best_step``, ``stopped`` (why),
    ``seconds``, ``train_samples_per_s`` (student step with the teacher pass and the views),
    ``eval_samples_per_s``, ``views``, ``matched`` (intermediate tensors), ``device``,
    ``threads``, held-out ``loss``/``kl``/``agreement`` ``_before`` and ``_after`` (measured with
    onnxruntime; agreement None without a classifier-like output) and ``kept``."""
    torch = require_torch()
    start = time.perf_counter()
    dev = device(torch)
    with _settings(torch, dev, threads()):
        job = _Job.build(torch, dev, original, pruned, fit, held, list(match or []), seed)
        if isinstance(job, str):
            return pruned, {"skipped": job}
        plan = _Plan(original, pruned, fit, held, seconds, seed, job)
        if steps is not None:
            plan.steps, plan.source = steps, "given"
        run = job.train(plan, start, seconds)
        if run.get("skipped"):
            return pruned, {"skipped": run["skipped"]}
        candidate = job.write_back(pruned)
        after, baseline = job.ort_score(candidate), job.ort_score(pruned)
    kept = after["loss"] < baseline["loss"]
    report = {**run, "seconds": round(time.perf_counter() - start, 2), "kept": kept,
              **{f"{k}_before": v for k, v in baseline.items()},
              **{f"{k}_after": v for k, v in (after if kept else baseline).items()}}
    return (candidate if kept else pruned), report


def _whole_batches(samples: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray] | None:
    """``samples`` cut to a multiple of ``size`` (None when fewer than ``size``)."""
    n = (calib.count(samples) if samples else 0) // size * size
    return {k: v[:n] for k, v in samples.items()} if n else None


class _Plan:
    """How many steps a budget buys: decided once from measured step and evaluation times,
    rounded down to whole epochs (or to a coarse grid below one epoch), and cached under
    ``$ONNXPRUNE_CACHE/distill.json`` keyed by everything that decides it."""

    def __init__(self, original: onnx.ModelProto, pruned: onnx.ModelProto, fit: dict, held: dict,
                 seconds: float, seed: int, job: _Job):
        torch = job.torch
        h = hashlib.sha256(original.SerializeToString())
        for node in pruned.graph.node:
            h.update(node.SerializeToString())
        for init in pruned.graph.initializer:
            h.update(f"{init.name}:{list(init.dims)}".encode())
        for part in (fit, held):
            calib.digest(h, part)
        where = torch.cuda.get_device_name(job.dev) if job.dev.type == "cuda" else "cpu"
        settings = {"seconds": float(seconds), "seed": seed, "batch": job.batch,
                    "match": [[m.teacher, m.student] for m in job.match], "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "device": where,
                    "constants": [LR, L2, TEMPERATURE, MATCH_WEIGHT, RAMP, DECIDE, MIN_EVALS,
                                  MAX_EPOCHS, EVAL_BATCH]}
        h.update(json.dumps(settings, sort_keys=True).encode())
        self.key = h.hexdigest()[:32]
        self.path = os.path.join(cachefile.cache_dir(), "distill.json")
        self.steps: int | None = cachefile.read(self.path).get(self.key, {}).get("steps")
        self.source = "measured" if self.steps is None else "cache"

    def decide(self, remaining: float, step_s: float, eval_s: float, per_epoch: int,
               done: int) -> int:
        """Total steps: ``done`` plus what ``remaining`` seconds allow after ``done`` steps
        (each step ``step_s``; a held-out evaluation ``eval_s`` per epoch, at least
        :data:`MIN_EVALS` of them), at most :data:`MAX_EPOCHS` epochs; stored in the cache."""
        more = min((remaining - MIN_EVALS * eval_s) / step_s, remaining / (step_s + eval_s / per_epoch))
        total = done + max(int(more), 0)
        if total >= per_epoch:
            total = min(total // per_epoch, MAX_EPOCHS) * per_epoch
        else:  # below one epoch: 2, 3, 4, 6, 8, 12, 16, ...
            grid = [g for k in range(12) for g in (2 ** k, 3 * 2 ** k // 2) if g >= 2]
            total = max([g for g in grid if g <= total], default=done)
        return self.store(max(total, done), step_s, eval_s)

    def store(self, steps: int, step_s: float, eval_s: float) -> int:
        """Remember ``steps`` for this key (with the times it came from); returns it."""
        self.steps = steps
        with contextlib.suppress(OSError):  # an unwritable cache costs repeatability, not the run
            cachefile.update(self.path, {self.key: {"steps": steps, "step_seconds": round(step_s, 4),
                                                    "eval_seconds": round(eval_s, 4)}})
        return self.steps


class _Job:
    """One distillation run: student and teacher executors, views, held-out values, training."""

    def __init__(self, torch, dev, executors: tuple, original: onnx.ModelProto,
                 pruned: onnx.ModelProto, fit: dict, held: dict, match: list[Match],
                 static: int | None, seed: int):
        """``executors``: the (student, teacher) torch executors."""
        student, teacher = executors
        self.torch, self.dev, self.student, self.teacher = torch, dev, student, teacher
        self.original, self.pruned, self.fit, self.held = original, pruned, fit, held
        self.match, self.static, self.seed = match, static, seed
        names = [o.name for o in original.graph.output]
        same = set(names) == set(student.outputs)
        # (teacher output, student output) pairs: by name when they agree, else by position.
        self.pairs = [(n, n) for n in names] if same else list(zip(names, student.outputs))
        n = calib.count(fit)
        unit = static or 1
        self.batch = min(max(BATCH // unit, 1) * unit, n // unit * unit)
        self.views = _Views(torch, dev, fit, seed)
        self.fit_t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev) for k, v in fit.items()}
        self.index = {m.teacher: torch.from_numpy(np.flatnonzero(m.keep)).to(dev)
                      for m in match if m.keep is not None and not m.keep.all()}
        self.classes: set[str] = set()
        self.scale: dict[str, float] = {}
        self.channel_var: dict[str, object] = {}
        self.held_teacher: dict[str, np.ndarray] = {}
        self.held_t: dict = {}

    @classmethod
    def build(cls, torch, dev, original: onnx.ModelProto, pruned: onnx.ModelProto, fit: dict,
              held: dict, match: list[Match], seed: int) -> _Job | str:
        """A job ready to train, or why the models cannot be distilled."""
        from . import torchexec

        try:
            student = torchexec.Executor(pruned, torchexec.trainable_names(pruned),
                                         [m.student for m in match], channels_last=True).place(dev)
            teacher = torchexec.Executor(original, (), [m.teacher for m in match],
                                         channels_last=True).place(dev)
        except ValueError as exc:  # UnsupportedOp included: "no torch rule for <op>"
            return str(exc)
        if not student.trainable:
            return "no trainable float weights"
        size, static = calib.batch_size(pruned, BATCH)
        unit = size if static else 1  # a static batch dimension: samples go in whole batches of it
        fit, held = _whole_batches(fit, unit), _whole_batches(held, unit)
        if fit is None or held is None:
            return "too few calibration samples for the model's batch size"
        job = cls(torch, dev, (student, teacher), original, pruned, fit, held, match,
                  size if static else None, seed)
        return job.check() or job

    # -- set-up ------------------------------------------------------------------------------

    def check(self) -> str | None:
        """Why the executors cannot be trusted (outputs differ from onnxruntime), or None;
        caches the teacher's held-out outputs and the matched tensors' channel variances."""
        n = self.static or min(8, calib.count(self.held))
        feeds = {k: v[:n] for k, v in self.held.items()}
        cfg = runtimes.RuntimeConfig(opt_level="disable")
        inputs, ran = self._tensors(feeds), []
        for net, model in ((self.student, self.pruned), (self.teacher, self.original)):
            ref = runtime.run_outputs(runtimes.session(model, cfg), feeds)
            try:
                got = self._run(net, inputs, EVAL_BATCH, grad=False)
            except Exception as exc:  # noqa: BLE001 -- a torch rule that cannot handle these inputs
                return f"torch executor failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            err = runtime.max_rel_error(ref, {k: got[k].cpu().numpy() for k in ref})
            if not err <= NUMERIC_TOL:
                return f"torch executor differs from onnxruntime ({err:.1e} relative)"
            ran.append(got)
        student, teacher = ran
        for m in self.match:
            want = tuple(self._teacher_tap(m, teacher[m.teacher]).shape)
            if want != tuple(student[m.student].shape):
                return f"match {m.teacher!r}: shapes {want} and {tuple(student[m.student].shape)} differ"
        self._held_teacher()
        return None

    def _tensors(self, samples: dict[str, np.ndarray]) -> dict:
        return {k: self.torch.from_numpy(np.ascontiguousarray(v)).to(self.dev) for k, v in samples.items()}

    def _teacher_tap(self, m: Match, value):
        index = self.index.get(m.teacher)
        return value if index is None else value.index_select(m.axis % value.dim(), index)

    def _held_teacher(self) -> None:
        """Teacher outputs on the held-out samples (kept), per-channel variances of the
        matched tensors there (the rest is dropped) and each output's variance."""
        torch = self.torch
        outs: dict[str, list] = {t: [] for t, _ in self.pairs}
        s1: dict[str, object] = {}
        s2: dict[str, object] = {}
        rank: dict[str, int] = {}
        count = 0
        for part in calib.batches(self.held, EVAL_BATCH):
            got = self._run(self.teacher, self._tensors(part), EVAL_BATCH, grad=False)
            count += 1
            for t, _ in self.pairs:
                outs[t].append(got[t])
            for m in self.match:
                x = self._teacher_tap(m, got[m.teacher]).double()
                rank[m.teacher] = x.dim()
                axes = tuple(a for a in range(x.dim()) if a != m.axis % x.dim())
                s1[m.teacher] = s1.get(m.teacher, 0) + x.mean(axes)
                s2[m.teacher] = s2.get(m.teacher, 0) + (x * x).mean(axes)
        self.held_t = {t: torch.cat(v) for t, v in outs.items()}
        self.held_teacher = {t: v.cpu().numpy() for t, v in self.held_t.items()}
        for t, value in self.held_teacher.items():
            self.scale[t] = max(float(np.var(value, dtype=np.float64)), 1e-12)
            if classifier_like(t, value):
                self.classes.add(t)
        for m in self.match:
            var = (s2[m.teacher] / count - (s1[m.teacher] / count) ** 2).clamp(min=0)
            var = var + VAR_FLOOR * float(var.mean()) + 1e-12
            shape = [1] * rank[m.teacher]
            shape[m.axis % len(shape)] = -1
            self.channel_var[m.teacher] = var.float().reshape(shape)

    # -- running and scoring -------------------------------------------------------------------

    def _run(self, net, feeds: dict, chunk: int, grad: bool) -> dict:
        """``net`` on tensors ``feeds`` in pieces of the static batch size (or ``chunk``)."""
        torch = self.torch
        n = len(next(iter(feeds.values())))
        size = self.static or chunk
        with torch.enable_grad() if grad else torch.inference_mode():
            parts = [net({k: v[i:i + size] for k, v in feeds.items()}) for i in range(0, n, size)]
        if len(parts) == 1:
            return parts[0]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _loss(self, got: dict, want: dict, temperature: float, mask=None, taps: dict | None = None):
        """Objective of student values ``got`` against teacher values ``want`` (outputs), plus
        the matched tensors when ``taps`` (teacher values by name) is given. ``mask``: the
        views' attention mask [N, S] (token outputs count real tokens only)."""
        torch = self.torch
        total = 0.0
        for t, s in self.pairs:
            target = want[t]
            if t in self.classes:
                term = torch.nn.functional.kl_div(
                    torch.log_softmax(got[s].float() / temperature, 1),
                    torch.log_softmax(target.float() / temperature, 1),
                    reduction="batchmean", log_target=True) * temperature ** 2
            else:
                term = _mean(torch, (got[s] - target) ** 2, mask) / self.scale[t]
            total = total + term
        if taps and self.match:
            extra = [_mean(torch, (got[m.student] - self._teacher_tap(m, taps[m.teacher])) ** 2
                           / self.channel_var[m.teacher], mask) for m in self.match]
            total = total + MATCH_WEIGHT * sum(extra) / len(extra)
        return total

    def held_loss(self) -> float:
        """Held-out objective (temperature 1, outputs only) of the student's current weights."""
        held = self._tensors(self.held)
        got = self._run(self.student, held, EVAL_BATCH, grad=False)
        mask = self.views.mask_of(held)
        return float(self._loss(got, self.held_t, 1.0, mask))

    # -- training ------------------------------------------------------------------------------

    def train(self, plan: _Plan, start: float, seconds: float) -> dict:
        """Adam with a per-tensor relative step (ramped up, then cosine-decayed over the planned
        steps); keeps the weights with the best held-out loss, the starting ones unless
        something beats them. Returns the report entries of the run."""
        began = time.perf_counter()
        loss = self.held_loss()
        eval_s = time.perf_counter() - began
        params = list(self.student.params)
        start_values, norms, rates, opt = self._optimiser(params)
        best = _Best(loss, [v.clone() for v in start_values])
        batches = _Batches(calib.count(self.fit), self.batch, self.seed)
        total, times, step = plan.steps, [], 0
        stopped = "the given steps made" if plan.source == "given" else "budget"
        if total is None and seconds - (time.perf_counter() - start) <= 2 * eval_s:
            total = plan.store(0, 0.0, eval_s)  # set-up took the budget: no step, now and on reruns
        if total == 0:
            return {"skipped": f"a budget of {seconds:g} s allows no training step"}
        while total is None or step < total:
            if total is None and step == DECIDE:
                total = plan.decide(seconds - (time.perf_counter() - start) - 2 * eval_s,
                                    float(np.median(times[1:])), eval_s, batches.per_epoch, step)
                if step >= total:
                    break
            pick = batches.next()
            _set_rates(opt, rates, step, total)
            tick = time.perf_counter()
            self._step(opt, pick, params, start_values, norms)
            times.append(time.perf_counter() - tick)
            step += 1
            if _evaluates(step, total, batches.per_epoch):
                best.offer(self.held_loss(), params, step)
                if best.stale(step, batches.per_epoch):
                    stopped = f"early stop: no held-out gain in {best.since} evaluations"
                    break
        if stopped == "budget" and total is not None and total == MAX_EPOCHS * batches.per_epoch:
            stopped = f"epoch cap ({MAX_EPOCHS})"
        best.restore(self.torch, params)
        return self._report(plan, step, total, best.step, stopped, times, eval_s)

    def _optimiser(self, params: list) -> tuple[list, list[float], list[float], object]:
        """``(start values, squared norms, rates, Adam)`` for ``params``: copies of the starting
        weights (the L2 pull's anchor), their squared norms (floored at 1e-12), each tensor's
        step size (:data:`LR` x its RMS, floored at :data:`LR_FLOOR`) and one Adam parameter
        group per tensor at that rate."""
        start_values = [p.detach().clone() for p in params]
        norms = [max(float(v.pow(2).sum()), 1e-12) for v in start_values]
        rates = [LR * max(float(v.pow(2).mean().sqrt()), LR_FLOOR) for v in start_values]
        opt = self.torch.optim.Adam([{"params": [p], "lr": r} for p, r in zip(params, rates)])
        return start_values, norms, rates, opt

    def _report(self, plan: _Plan, step: int, total: int | None, best_step: int, stopped: str,
                times: list[float], eval_s: float) -> dict:
        """The report entries of a run of ``step`` steps (of ``total`` planned): the median step
        time leaves the first step out (NaN without steps), samples per second use it."""
        n = calib.count(self.fit)
        step_s = float(np.median(times[1:] if len(times) > 1 else times)) if times else float("nan")
        return {"steps": step, "planned_steps": total, "plan": plan.source,
                "epochs": round(step * self.batch / n, 2), "batch": self.batch, "best_step": best_step,
                "stopped": stopped, "train_samples_per_s": round(self.batch / step_s, 2),
                "eval_samples_per_s": round(calib.count(self.held) / max(eval_s, 1e-9), 2),
                "views": self.views.kinds, "matched": [m.student for m in self.match],
                "device": str(self.dev), "threads": self.torch.get_num_threads()}

    def _step(self, opt, pick: np.ndarray, params: list, start_values: list, norms: list) -> None:
        """One Adam step on a fresh view of the samples ``pick``."""
        torch = self.torch
        index = torch.from_numpy(pick).to(self.dev)
        view = self.views({k: v.index_select(0, index) for k, v in self.fit_t.items()})
        want = self._run(self.teacher, view, self.batch, grad=False)
        want = {k: v.clone() for k, v in want.items()}  # inference tensors cannot enter autograd
        got = self._run(self.student, view, self.batch, grad=True)
        loss = self._loss(got, want, TEMPERATURE, self.views.mask_of(view), want)
        pull = sum((p - v).pow(2).sum() / m for p, v, m in zip(params, start_values, norms))
        opt.zero_grad(set_to_none=True)
        (loss + L2 * pull).backward()
        opt.step()

    def ort_score(self, model: onnx.ModelProto) -> dict:
        """Held-out loss, KL and top-1 agreement (first classifier-like output; None without
        one) of ``model`` run with onnxruntime."""
        torch = self.torch
        got = calib.Tap(model, []).collect(self.held, [s for _, s in self.pairs])
        want = {k: torch.from_numpy(v) for k, v in self.held_teacher.items()}
        tensors = {k: torch.from_numpy(v) for k, v in got.items()}
        mask = self.views.mask_of({k: torch.from_numpy(v) for k, v in self.held.items()})
        loss = float(self._loss(tensors, want, 1.0, None if mask is None else mask.cpu()))
        first = next(((t, s) for t, s in self.pairs if t in self.classes), None)
        if first is None:
            return {"loss": loss, "kl": None, "agreement": None}
        t, s = first
        kl = float(torch.nn.functional.kl_div(torch.log_softmax(tensors[s].double(), 1),
                                              torch.log_softmax(want[t].double(), 1),
                                              reduction="batchmean", log_target=True))
        agreement = float(np.mean(self.held_teacher[t].argmax(1) == got[s].argmax(1)))
        return {"loss": loss, "kl": kl, "agreement": agreement}

    def write_back(self, pruned: onnx.ModelProto) -> onnx.ModelProto:
        """A copy of ``pruned`` with the student's trainable initializers, same names and dtypes."""
        values = self.student.trained()
        out = copy.deepcopy(pruned)
        for init in out.graph.initializer:
            if init.name in values:
                dtype = numpy_helper.to_array(init).dtype
                init.CopyFrom(numpy_helper.from_array(values[init.name].astype(dtype), init.name))
        return out


def _set_rates(opt, rates: list[float], step: int, total: int | None) -> None:
    """Each tensor's step size at ``step`` (0-based) of ``total``: its rate times a linear ramp
    over the first :data:`RAMP` steps, times a cosine decay from 1 to 0 over the steps after
    the ramp (no decay while ``total`` is still undecided)."""
    frac = (step - RAMP) / max(total - RAMP, 1) if total is not None and step >= RAMP else 0.0
    scale = min((step + 1) / RAMP, 1.0) * 0.5 * (1.0 + math.cos(math.pi * min(max(frac, 0), 1)))
    for group, rate in zip(opt.param_groups, rates):
        group["lr"] = rate * scale


def _evaluates(step: int, total: int | None, per_epoch: int) -> bool:
    """Whether the held-out loss is measured after ``step`` steps: after the first
    :data:`DECIDE` steps, every epoch or every ``total / MIN_EVALS`` steps if that is sooner
    (``total`` undecided: every epoch), and after the last planned step."""
    every = max(1, min(per_epoch, math.ceil((total or per_epoch) / MIN_EVALS)))
    return step > DECIDE and (step % every == 0 or step == total)


class _Batches:
    """Mini-batches of ``n`` samples from one generator seeded ``seed``: each epoch a fresh
    permutation appended to what is left of the last, taken ``size`` at a time (sorted); every
    sample once per epoch when ``size`` divides ``n``."""

    def __init__(self, n: int, size: int, seed: int):
        self.n, self.size = n, size
        self.per_epoch = math.ceil(n / size)
        self.rng = np.random.default_rng(seed)
        self.order = np.empty(0, dtype=np.int64)

    def next(self) -> np.ndarray:
        """The sorted sample indices of the next mini-batch."""
        if len(self.order) < self.size:  # a new epoch: a fresh permutation of the fit samples
            self.order = np.concatenate([self.order, self.rng.permutation(self.n)])
        pick, self.order = np.sort(self.order[:self.size]), self.order[self.size:]
        return pick


class _Best:
    """The lowest held-out loss so far, the weights and step it came with (0: the starting
    weights), and the evaluations since the last gain: a loss more than :data:`GAIN`
    (relative) below the best."""

    def __init__(self, loss: float, values: list):
        self.loss, self.values, self.step = loss, values, 0
        self.since = self.gained = 0

    def offer(self, loss: float, params: list, step: int) -> None:
        """Record the held-out ``loss`` of ``params`` after ``step`` steps."""
        if loss < self.loss * (1.0 - GAIN):
            self.loss, self.values, self.step = loss, [p.detach().clone() for p in params], step
            self.since, self.gained = 0, step
        else:
            self.since += 1

    def stale(self, step: int, per_epoch: int) -> bool:
        """No gain in :data:`PATIENCE` evaluations and as many epochs: time to stop early."""
        return self.since >= PATIENCE and step - self.gained >= PATIENCE * per_epoch

    def restore(self, torch, params: list) -> None:
        """Copy the best weights back into ``params``."""
        with torch.no_grad():
            for p, v in zip(params, self.values):
                p.copy_(v)


def _mean(torch, err, mask):
    """Mean of ``err``; over the real tokens only when ``err`` is [N, S, ...] and ``mask`` [N, S]."""
    if mask is None or err.dim() < 3 or tuple(err.shape[:2]) != tuple(mask.shape):
        return err.mean()
    w = mask.to(err.dtype).reshape(*mask.shape, *[1] * (err.dim() - 2))
    return (err * w).sum() / (w.sum() * (err[0, 0].numel())).clamp(min=1)


class _Views:
    """Random views of a mini-batch that keep its content, made on the device from a seeded
    generator: for image inputs (every 4-D float input, one common spatial size; all of them
    get the same geometry) a random resized crop (:data:`CROP_AREA`, :data:`CROP_RATIO`; a
    :data:`PLAIN` share keep the whole frame), a flip and small brightness / contrast /
    saturation changes; for text inputs (integer [N, S] inputs beside a 0/1 attention mask)
    token dropout: real tokens other than the first and last are removed with probability
    :data:`TOKEN_DROP`, the rest close up, the mask and the other token inputs follow (position
    inputs, rows of 0..S-1, stay). Other inputs pass unchanged."""

    def __init__(self, torch, dev, samples: dict[str, np.ndarray], seed: int):
        self.torch, self.dev = torch, dev
        self.gen = torch.Generator().manual_seed(seed)  # host generator: the same on every device
        images = {k: v.shape[2:] for k, v in samples.items()
                  if v.ndim == 4 and np.issubdtype(v.dtype, np.floating)}
        self.images = list(images) if len(set(images.values())) == 1 else []
        self.mask: str | None = None
        self.tokens: dict[str, int] = {}  # token input -> its padding value
        for name, value in samples.items():
            if value.ndim == 2 and calib.attention_mask({name: value}, value.shape) is not None:
                self.mask = self.mask or name
        if self.mask is not None:
            real = samples[self.mask] != 0
            for name, value in samples.items():
                if (name == self.mask or value.shape != real.shape
                        or not np.issubdtype(value.dtype, np.integer)
                        or (value == np.arange(value.shape[1])).all()):
                    continue
                pads = value[~real]
                self.tokens[name] = int(pads[0]) if len(pads) else 0
        kinds = ["crops, flips, colour"] if self.images else []
        kinds += ["token dropout"] if self.tokens else []
        self.kinds = ", ".join(kinds) or "none"

    def mask_of(self, feeds: dict):
        """The attention mask among ``feeds`` (None without one)."""
        return feeds.get(self.mask) if self.mask is not None else None

    def __call__(self, batch: dict) -> dict:
        out = dict(batch)
        if self.images:
            out.update(self._images({k: batch[k] for k in self.images}))
        if self.tokens:
            out.update(self._tokens(batch))
        return out

    def _uniform(self, n: int, k: int):
        return self.torch.rand(n, k, generator=self.gen).to(self.dev)

    def _images(self, images: dict) -> dict:
        torch = self.torch
        F = torch.nn.functional
        first = next(iter(images.values()))
        n = len(first)
        u = self._uniform(n, 9)
        lo, hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
        area = CROP_AREA[0] + (CROP_AREA[1] - CROP_AREA[0]) * u[:, 0]
        ratio = torch.exp(lo + (hi - lo) * u[:, 1])
        plain = u[:, 2] < PLAIN
        sx = torch.where(plain, 1.0, torch.sqrt(area * ratio).clamp(max=1.0))
        sy = torch.where(plain, 1.0, torch.sqrt(area / ratio).clamp(max=1.0))
        cx, cy = (1 - sx) * (2 * u[:, 3] - 1), (1 - sy) * (2 * u[:, 4] - 1)
        flip = torch.where(u[:, 5] < FLIP, -1.0, 1.0)
        zero = torch.zeros_like(sx)
        theta = torch.stack([torch.stack([sx * flip, zero, cx], 1), torch.stack([zero, sy, cy], 1)], 1)
        out = {}
        for name, x in images.items():
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            y = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
            jitter = [(2 * u[:, k] - 1).to(x.dtype).reshape(n, 1, 1, 1) for k in (6, 7, 8)]
            if y.shape[1] == 3:  # saturation: towards or away from the grey image
                grey = y.mean(1, keepdim=True)
                y = grey + (1 + SATURATION * jitter[2]) * (y - grey)
            mean, std = y.mean((1, 2, 3), keepdim=True), y.std((1, 2, 3), keepdim=True)
            out[name] = mean + (1 + CONTRAST * jitter[1]) * (y - mean) + BRIGHTNESS * jitter[0] * std
        return out

    def _tokens(self, batch: dict) -> dict:
        torch = self.torch
        mask = batch[self.mask]
        real = mask != 0
        count = real.long().cumsum(1)
        edge = (count == 1) | (count == real.sum(1, keepdim=True))
        drop = real & ~edge & (self._uniform(*mask.shape) < TOKEN_DROP)
        keep = real & ~drop
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept tokens first
        placed = torch.arange(mask.shape[1], device=mask.device)[None] < keep.sum(1, keepdim=True)
        out = {self.mask: placed.to(mask.dtype)}
        for name, pad in self.tokens.items():
            moved = batch[name].gather(1, order)
            out[name] = torch.where(placed, moved, torch.full_like(moved, pad))
        return out


def summary(report: dict) -> str:
    """One line saying what a distill step did (its report dict), for the recovery table."""
    if "skipped" in report:
        return f"distill skipped: {report['skipped']}"

    def share(x):
        return "-" if x is None else f"{x:.1%}"
    return (f"distill: {report['steps']} steps ({report['epochs']:g} epochs, batch {report['batch']}, "
            f"step count {report['plan']}), stopped: {report['stopped']}, best at step "
            f"{report['best_step']}; {report['seconds']:.0f} s on {report['device']} x{report['threads']} "
            f"threads, {report['train_samples_per_s']:g} samples/s training, "
            f"{report['eval_samples_per_s']:g} evaluating; held-out loss {report['loss_before']:.4f} -> "
            f"{report['loss_after']:.4f}, top-1 {share(report['agreement_before'])} -> "
            f"{share(report['agreement_after'])}; {len(report['matched'])} block outputs matched; "
            f"views: {report['views']}; {'kept' if report['kept'] else 'not kept'}")
