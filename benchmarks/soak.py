"""Soak: the same ``--speedup`` run again and again while a CPU hog runs beside it.

Each run is the CLI, in its own process, with its own comparisons cache (so every run makes
its own latency decisions; the layer profiles and the sensitivity table are shared, as a user's
cache would be), while ``--hogs`` busy processes keep cores loaded. Printed per run: the tool's
pooled interleaved speedup, a fresh interleaved ``bench`` of the written model against the
original (taken under the same load), whether both are inside the band [target, 1.05 x target],
the written model's size and the widths' digest; then the spread over runs.

Usage: python benchmarks/soak.py [--model models/zoo/resnet18.onnx] [--speedup 1.3] [--runs 10]
       [--hogs 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hog(stop) -> None:
    """Keep one core busy until ``stop`` is set."""
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def run(args, work: Path, k: int) -> dict:
    cache = work / f"run{k}"
    cache.mkdir()
    for name in ("profiles.json", "sensitivity"):  # the shared, deterministic measurements
        src = work / "shared" / name
        if src.is_file():
            shutil.copy(src, cache / name)
        elif src.is_dir():
            shutil.copytree(src, cache / name)
    out, report = work / f"out{k}.onnx", work / f"r{k}.json"
    env = {**os.environ, "ONNXPRUNE_CACHE": str(cache)}
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "onnxprune", args.model, "--speedup", str(args.speedup), "-o", str(out),
           "--report", str(report), "--cache", str(cache / "profiles.json"), *args.extra]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        return {"run": k, "error": (done.stderr.strip().splitlines() or ["?"])[-1], "seconds": seconds}
    data = json.loads(report.read_text())
    bench = subprocess.run([sys.executable, "-m", "onnxprune", "bench", args.model, str(out), "--json",
                            "--rounds", "40"], cwd=ROOT, env=env, capture_output=True, text=True)
    widths = json.dumps([[g["group"], g["width_after"]] for g in data["groups"]])
    for name in ("profiles.json", "sensitivity"):  # keep what the first run measured for the next
        if k == 0 and (cache / name).exists():
            dest = work / "shared" / name
            (shutil.copytree if (cache / name).is_dir() else shutil.copy)(cache / name, dest)
    return {"run": k, "speedup": data["final"]["speedup"],
            "bench": json.loads(bench.stdout)["speedup"] if bench.returncode == 0 else None,
            "bytes": out.stat().st_size, "widths": hashlib.sha256(widths.encode()).hexdigest()[:8],
            "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "zoo" / "resnet18.onnx"))
    ap.add_argument("--speedup", type=float, default=1.3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--hogs", type=int, default=1)
    ap.add_argument("extra", nargs="*", help="more CLI arguments (after --)")
    args = ap.parse_args()
    lo, hi = args.speedup, 1.05 * args.speedup
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=hog, args=(stop,), daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "shared").mkdir()
            print(f"{'run':>3} {'speedup':>8} {'bench':>7} {'in band':>8} {'bytes':>9} {'widths':>8} {'s':>5}")
            for k in range(args.runs):
                r = run(args, work, k)
                rows.append(r)
                if "error" in r:
                    print(f"{k:>3} error: {r['error']}", flush=True)
                    continue
                inside = lo <= r["speedup"] <= hi and (r["bench"] is None or lo * 0.98 <= r["bench"] <= hi * 1.02)
                print(f"{k:>3} {r['speedup']:>7.3f}x {r['bench'] or 0:>6.3f}x {'yes' if inside else 'NO':>8} "
                      f"{r['bytes']:>9,} {r['widths']:>8} {r['seconds']:>5.0f}", flush=True)
    finally:
        stop.set()
        for h in hogs:
            h.join()
    ok = [r for r in rows if "error" not in r]
    if ok:
        sp = [r["speedup"] for r in ok]
        sizes = [r["bytes"] for r in ok]
        print(f"band [{lo:.3f}, {hi:.3f}]: {sum(lo <= s <= hi for s in sp)}/{len(rows)} runs inside; "
              f"speedup {min(sp):.3f}..{max(sp):.3f}x; sizes {min(sizes):,}..{max(sizes):,} bytes "
              f"({len({r['widths'] for r in ok})} distinct width sets)")


if __name__ == "__main__":
    main()
