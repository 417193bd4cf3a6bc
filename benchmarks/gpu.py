"""Every GPU check of issue 19 in one run of at most ``--budget`` seconds (default 8 minutes).

Steps, each under its own timeout (shrunk to what is left of the budget, skipped when too
little is left); each step's output is appended to ``OUT/gpu.log`` and ``OUT/gpu.json`` is
rewritten after every step, so a run stopped at any point leaves what it measured:

1. ``staircase``: a 3x3 conv 64->Cout at 56x56, batch 1 and 32, Cout in 31 32 33 63 64 65 127
   128 129 184 192 248 255: every width timed in one interleaved layer batch on the provider
   (the profiler's own measuring path), session/engine build seconds apart.
2. ``prune``: ResNet-18, ResNet-50 (full width, random weights, built in plain torch from
   models/zoo.py's blocks, exported once into ``--work``) and MobileNetV2 (models/) at batch
   32 with ``--speedup`` 1.5 / 1.5 / 1.3, run as a user would (``python -m onnxprune``, cold
   profile cache): tool seconds, profile seconds, the loop's measured speedup.
3. ``bench``: ``onnxprune bench original pruned --json`` of each (interleaved A/B).
4. ``cross``: MobileNetV2 at ``--cross-batch`` pruned for the CPU and for the provider, each
   measured on both (a 2x2 table: does pruning for the device matter?).

On a GPU machine (onnxruntime-gpu importable, see ../shared/gpu/README.md; torch for the
ResNet exports)::

    python benchmarks/gpu.py --out $OUT                       # CUDA EP
    python benchmarks/gpu.py --out $OUT --provider tensorrt --fp16

Tested without a GPU (tiny shapes, narrow zoo ResNets, short timeouts; every figure is CPU)::

    python benchmarks/gpu.py --provider cpu --smoke --out /tmp/gpu-smoke

Only a few files go to ``--out`` (gpu.log, gpu.json, gpu.md); models and caches go to ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from onnxprune import runtimes

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (31, 32, 33, 63, 64, 65, 127, 128, 129, 184, 192, 248, 255)
MODELS = (("resnet18", 1.5), ("resnet50", 1.5), ("mobilenet_v2", 1.3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-out", help="logs, tables, JSON")
    ap.add_argument("--work", default="/tmp/onnxprune-gpu", help="models, pruned models, caches")
    ap.add_argument("--provider", default="cuda", help="onnxruntime EP measured on (cuda, tensorrt, cpu)")
    ap.add_argument("--fp16", action="store_true", help="TensorRT half precision")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cross-batch", type=int, default=8)
    ap.add_argument("--cross-threads", type=int, default=8, help="CPU threads of the cross-check")
    ap.add_argument("--value", default="sensitivity", help="what the search keeps (--value of the tool)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny settings (tests the script, no GPU): batch 2 (MobileNetV2: 1), 64x64 "
                         "ResNets of the zoo's widths, --value importance, short timeouts")
    ap.add_argument("--step", help=argparse.SUPPRESS)  # internal: one step in a subprocess
    args = ap.parse_args()
    if args.step == "staircase":
        return staircase(args)
    Run(args).all()


class Run:
    """One run: the budget, the log, the results so far."""

    def __init__(self, args):
        self.args = args
        self.start = time.perf_counter()
        self.out, self.work = Path(args.out), Path(args.work)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.results: dict = {"provider": args.provider, "fp16": args.fp16, "smoke": args.smoke,
                              "batch": self.batch, "budget_s": args.budget, "steps": {}}
        self.cache = self.work / f"cache-{int(time.time())}"  # cold: the tool's real time
        (self.out / "gpu.log").write_text("")

    @property
    def batch(self) -> int:
        return 2 if self.args.smoke else self.args.batch

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.start)

    def log(self, text: str) -> None:
        print(text, flush=True)
        with open(self.out / "gpu.log", "a") as f:
            f.write(text + "\n")

    def save(self) -> None:
        tmp = self.out / "gpu.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=2))
        os.replace(tmp, self.out / "gpu.json")

    def deploy(self, provider: str | None = None, threads: int = 1) -> list[str]:
        provider = provider or self.args.provider
        flags = ["--provider", provider, "--threads", str(threads)]
        return flags + (["--fp16"] if self.args.fp16 and provider == "tensorrt" else [])

    def call(self, name: str, cmd: list[str], timeout: float) -> tuple[int | None, str, float]:
        """Run one step's command within its timeout (or what is left of the budget)."""
        timeout = min(timeout, self.left() - 5)
        if timeout < 10:
            self.log(f"== {name}: skipped ({self.left():.0f} s of the budget left)")
            return None, "", 0.0
        self.log(f"== {name} (timeout {timeout:.0f} s): {' '.join(cmd)}")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "ONNXPRUNE_CACHE": str(self.cache)}
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                                  cwd=ROOT, check=False)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, out = None, (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = f"timed out after {timeout:.0f} s"
        seconds = time.perf_counter() - start
        self.log(out.rstrip())
        if err.strip():
            self.log("stderr: " + err.strip().replace("\n", "\nstderr: "))
        self.log(f"-- {name}: exit {code}, {seconds:.1f} s")
        return code, out, seconds

    def all(self) -> None:
        self.results["steps"]["staircase"] = self.staircases()
        self.save()
        models = self.models()
        pruned = {}
        for name, speedup in MODELS:
            pruned[name] = self.prune(name, models.get(name), speedup)
            self.save()
        for name, _ in MODELS:
            self.results["steps"][f"bench/{name}"] = self.bench(models.get(name), pruned[name])
            self.save()
        self.results["steps"]["cross"] = self.cross(models.get("mobilenet_v2"))
        self.results["seconds"] = time.perf_counter() - self.start
        self.save()
        (self.out / "gpu.md").write_text(tables(self.results))
        self.log(tables(self.results))

    def staircases(self) -> dict:
        cmd = [sys.executable, __file__, "--step", "staircase", "--out", str(self.out),
               "--work", str(self.work), *self.deploy()[:2], *(["--smoke"] if self.args.smoke else []),
               *(["--fp16"] if self.args.fp16 else [])]
        code, out, seconds = self.call("staircase", cmd, 40 if self.args.smoke else 90)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return {"exit": code, "seconds": seconds, **(json.loads(lines[-1]) if lines else {})}

    def models(self) -> dict[str, str]:
        """ResNet-18/50 exported with torch (once, into --work), MobileNetV2 from models/."""
        size = 64 if self.args.smoke else 224
        paths = {"mobilenet_v2": str(ROOT / "models" / "mobilenet_v2.onnx")}
        try:
            sys.path.insert(0, str(ROOT / "models"))
            import zoo
            from export import export_classifier
        except ImportError as exc:  # torch missing: the ResNet steps are skipped, said so
            self.log(f"== models: ResNets skipped ({exc})")
            return paths
        builders = {
            "resnet18": lambda: zoo.resnet18() if self.args.smoke else zoo.resnet(
                zoo.basic_block, (2, 2, 2, 2), (64, 128, 256, 512), stem=64),
            "resnet50": lambda: zoo.resnet50() if self.args.smoke else zoo.resnet(
                zoo.bottleneck, (3, 4, 6, 3), (256, 512, 1024, 2048), stem=64),
        }
        for name, build in builders.items():
            path = self.work / f"{name}{'_smoke' if self.args.smoke else ''}.onnx"
            if not path.exists():
                import torch

                torch.manual_seed(0)
                export_classifier(build(), (1, 3, size, size), path)
            paths[name] = str(path)
        return paths

    def shape(self, model: str, batch: int | None = None) -> list[str]:
        """MobileNetV2 takes 224x224 only (and batch 1 in a smoke run)."""
        fixed = "mobilenet" in Path(model).name
        size = 224 if fixed or not self.args.smoke else 64
        batch = batch or (1 if fixed and self.args.smoke else self.batch)
        return ["--shape", f"input:{batch}x3x{size}x{size}"]

    def value(self) -> list[str]:
        return ["--value", "importance" if self.args.smoke else self.args.value]

    def prune(self, name: str, model: str | None, speedup: float) -> str | None:
        if model is None:
            return None
        out, report = self.work / f"{name}.pruned.onnx", self.work / f"{name}.report.json"
        report.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "onnxprune", model, "--speedup", str(speedup), "-o", str(out),
               "--report", str(report), *self.deploy(), *self.shape(model), *self.value()]
        limit = {"resnet18": 90, "resnet50": 180, "mobilenet_v2": 120}[name]
        code, _, seconds = self.call(f"prune/{name}", cmd, 90 if self.args.smoke else limit)
        got = {"exit": code, "tool_seconds": seconds, "speedup_asked": speedup}
        if code == 0 and report.exists():
            data = json.loads(report.read_text())
            got.update(profile_seconds=data.get("profile_seconds"),
                       loop_speedup=data.get("final", {}).get("speedup_interleaved"),
                       loop_steps=len(data.get("loop", [])),
                       macs=[data.get("final", {}).get("macs_before"), data.get("final", {}).get("macs_after")])
        self.results["steps"][f"prune/{name}"] = got
        return str(out) if code == 0 else None

    def bench(self, model: str | None, pruned: str | None, provider: str | None = None,
              threads: int = 1, batch: int | None = None) -> dict:
        if model is None or pruned is None:
            return {"skipped": "no pruned model"}
        cmd = [sys.executable, "-m", "onnxprune", "bench", model, pruned, "--json", "--rounds", "40",
               *self.deploy(provider, threads), *self.shape(model, batch)]
        code, out, seconds = self.call(f"bench {Path(pruned).name} on {provider or self.args.provider}",
                                       cmd, 30 if self.args.smoke else 60)
        if code != 0:
            return {"exit": code}
        data = json.loads(out)
        return {"speedup": data["speedup"], "ratio_p10": data["ratio_p10"], "ratio_p90": data["ratio_p90"],
                "ms": [data["timing_a"]["median_ms"], data["timing_b"]["median_ms"]], "seconds": seconds}

    def cross(self, model: str | None) -> dict:
        """MobileNetV2 pruned for the CPU and for the provider, each measured on both."""
        batch, threads = (1, 1) if self.args.smoke else (self.args.cross_batch, self.args.cross_threads)
        places = {"cpu": ("cpu", threads), "device": (self.args.provider, 1)}
        pruned = {}
        for place, (provider, n) in places.items():
            out = self.work / f"cross.{place}.onnx"
            cmd = [sys.executable, "-m", "onnxprune", model, "--speedup", "1.3", "-o", str(out),
                   *self.deploy(provider, n), *self.shape(model, batch), *self.value()]
            code, _, _ = self.call(f"cross/prune for {place}", cmd, 60 if self.args.smoke else 90)
            pruned[place] = str(out) if code == 0 else None
        return {f"{made} on {place}": self.bench(model, pruned[made], provider, n, batch)
                for made in places for place, (provider, n) in places.items()}


def staircase(args) -> None:
    """Step 1, in its own process: every width of the issue's table, both batches, one
    interleaved batch of isolated convs each (as the profiler times layers); one JSON line."""
    sys.path.insert(0, str(ROOT))
    from onnxprune.backends import Local

    config = runtimes.RuntimeConfig(provider=args.provider, fp16=args.fp16)
    source = Local(config)
    hw, widths = (14, WIDTHS[:6]) if args.smoke else (56, WIDTHS)
    result = {"config": config.key(), "widths": list(widths), "ms": {}, "build_seconds": {}}
    for batch in (1, 2 if args.smoke else 32):
        built = source.builds["seconds"]
        ms = source.layers([conv(batch, 64, cout, hw) for cout in widths])
        result["ms"][f"b{batch}"] = ms
        result["build_seconds"][f"b{batch}"] = source.builds["seconds"] - built
        print(f"b{batch}: " + " ".join(f"{w}:{t:.3f}" for w, t in zip(widths, ms)), flush=True)
    print(json.dumps(result), flush=True)


def conv(batch: int, cin: int, cout: int, hw: int) -> tuple[bytes, dict]:
    """A 3x3 conv (padding 1) cin->cout at hw x hw as model bytes, and its feeds."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * 0.1).astype(np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, cin, hw, hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString(), {"x": rng.standard_normal((batch, cin, hw, hw)).astype(np.float32)}


def tables(results: dict) -> str:
    """The run's tables (markdown)."""
    steps = results["steps"]
    out = [(f"# GPU checks: provider {results['provider']}{' fp16' if results['fp16'] else ''}, "
           f"batch {results['batch']}{' (smoke: tiny settings)' if results['smoke'] else ''}"), ""]
    stair = steps.get("staircase", {})
    if stair.get("ms"):
        widths = stair["widths"]
        out += [("Staircase, 3x3 conv 64->Cout, ms (one interleaved batch per row; "
                f"session builds {sum(stair['build_seconds'].values()):.1f} s apart):"), "",
                "| Cout | " + " | ".join(map(str, widths)) + " |", "|---" * (len(widths) + 1) + "|"]
        out += [f"| {b} | " + " | ".join(f"{t:.3f}" for t in ms) + " |" for b, ms in stair["ms"].items()]
        out.append("")
    out += ["| model | asked | exit | tool s | profile s | loop speedup | bench speedup (p10..p90) |",
            "|---|---|---|---|---|---|---|"]
    for name, _ in MODELS:
        p, b = steps.get(f"prune/{name}", {}), steps.get(f"bench/{name}", {})
        bench = (f"{b['speedup']:.3f}x ({b['ratio_p10']:.3f}..{b['ratio_p90']:.3f})" if "speedup" in b else "-")
        loop = f"{p['loop_speedup']:.3f}x" if p.get("loop_speedup") else "-"
        prof = f"{p['profile_seconds']:.0f}" if p.get("profile_seconds") is not None else "-"
        out.append(f"| {name} | {p.get('speedup_asked', '-')}x | {p.get('exit', '-')} | "
                   f"{p.get('tool_seconds', 0):.0f} | {prof} | {loop} | {bench} |")
    cross = steps.get("cross", {})
    if cross:
        out += ["", "MobileNetV2 pruned for (rows) vs measured on (columns), speedup over the original:", "",
                "| pruned for \\ on | cpu | device |", "|---|---|---|"]
        for made in ("cpu", "device"):
            cells = [f"{cross[f'{made} on {on}']['speedup']:.3f}x" if "speedup" in cross.get(f"{made} on {on}", {})
                     else "-" for on in ("cpu", "device")]
            out.append(f"| {made} | " + " | ".join(cells) + " |")
    out.append(f"\n{results.get('seconds', 0):.0f} s in all (budget {results['budget_s']:.0f} s)")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
