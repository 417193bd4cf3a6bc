"""The tool's own time, stage by stage, cold cache: what a user waits for per model and target.

Each row is one run of ``python -m onnxprune MODEL --speedup 1.3 --threads 1 -o ... --report
...`` in a fresh ``$ONNXPRUNE_CACHE`` (nothing measured before), from a checkout (``--repo``,
repeatable: before/after). Stage seconds come from the run's progress lines (``[  T s] STAGE
done in S s``): prepare, profile, sensitivity table, recovery, verify; search = the time
between the table's end and the last verify outside the verifies (verify
wraps recovery: its own share is printed); whole = the run's wall time. Speedup and
fidelity come from its report.

Models (``--models``):

* ``mobilenet_v2``: ``models/mobilenet_v2.onnx``, ``--calib`` = Tux Paint's photos
  (``models/photos.py``), ``--preprocess imagenet``;
* ``yolov8n``: the YOLOv8n-style detector at 320 (``benchmarks/detectors.py``), no calibration;
* ``ppocr_det``: the PP-OCR-det-like detector at 640x640 (``benchmarks/detectors.py``);
* ``vgg19``: the onnx wheel's IR-3 VGG19 (``backend/test/data/light``), as ``../shared/sweep.sh``.

Usage: python benchmarks/tool_time.py [--models a,b] [--repo PATH ...] [--timeout S] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "models"))

STAGES = ("prepare", "profile", "sensitivity table", "recovery", "verify")
LINE = re.compile(r"\[\s*([\d.]+) s\] (.+?) done in ([\d.]+) s")
STAMP = re.compile(r"\[\s*([\d.]+) s\]")


def model_args(name: str, work: Path) -> list[str]:
    """The model path and the extra arguments of model ``name``."""
    if name == "mobilenet_v2":
        from photos import photo_dirs

        return [str(ROOT / "models" / "mobilenet_v2.onnx"), "--calib", str(photo_dirs()["tuxpaint"]),
                "--preprocess", "imagenet"]
    if name in ("yolov8n", "ppocr_det"):
        from detectors import build

        return [str(build(name, work))]
    if name == "vgg19":
        import onnx

        return [os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                             "light_vgg19.onnx")]
    return [name]  # a model path


def stage_seconds(err: str) -> dict[str, float]:
    """Stage seconds from a run's progress lines (see the module docstring). Verify wraps
    recovery and may run for more than one candidate: both are summed over their lines,
    verify less the recovery inside it; search is what lies between the table's end and the
    last verify's end outside the verifies."""
    total: dict[str, float] = {}
    last: dict[str, float] = {}
    for stamp, stage, took in LINE.findall(err):
        total[stage] = total.get(stage, 0.0) + float(took)
        last[stage] = float(stamp)
    out = {s: total[s] for s in STAGES if s in total}
    if "verify" in total:
        out["verify"] = total["verify"] - total.get("recovery", 0.0)
        if "sensitivity table" in last:
            out["search"] = last["verify"] - last["sensitivity table"] - total["verify"]
    return out


def run(repo: Path, name: str, work: Path, timeout: float) -> dict:
    """One cold run of model ``name`` from checkout ``repo``."""
    args = model_args(name, work)
    with tempfile.TemporaryDirectory(prefix="tool-time-") as tmp:
        cmd = [sys.executable, "-m", "onnxprune", *args, "--speedup", "1.3", "--threads", "1",
               "-o", f"{tmp}/out.onnx", "--report", f"{tmp}/r.json"]
        env = {**os.environ, "ONNXPRUNE_CACHE": f"{tmp}/cache", "PYTHONPATH": str(repo)}
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, check=False, cwd=repo, env=env, capture_output=True, text=True,
                                  timeout=timeout)
            err, status = done.stderr, "ok" if done.returncode == 0 else f"rc {done.returncode}"
        except subprocess.TimeoutExpired as exc:
            err = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
            status = "timeout"
        row = {"model": name, "checkout": _label(repo), "status": status,
               "whole": time.perf_counter() - start, **stage_seconds(err)}
        stamps = STAMP.findall(err)
        row["last"] = err.strip().splitlines()[-1][:160] if err.strip() else ""
        row["progress"] = [ln for ln in err.splitlines() if " done in " in ln or "search:" in ln]
        if status == "timeout" and stamps:
            row["whole"] = float(stamps[-1])
        report = Path(tmp) / "r.json"
        if report.exists():
            data = json.loads(report.read_text())
            fid = (data.get("quality") or {}).get("fidelity") or {}
            row.update(speedup=(data.get("final") or {}).get("speedup"), top1=fid.get("agreement"),
                       top5=fid.get("top5"), distortion=fid.get("distortion"),
                       table_samples=(data.get("sensitivity") or {}).get("samples"))
    return row


def _label(repo: Path) -> str:
    got = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                         check=False, capture_output=True, text=True)
    return got.stdout.strip() or repo.name


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,yolov8n,ppocr_det,vgg19")
    ap.add_argument("--repo", action="append", type=Path, help="checkout to run (repeatable)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "detectors")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    repos = [r.resolve() for r in args.repo or [ROOT]]
    rows = []
    head = (f"{'model':<13} {'checkout':<9} {'prepare':>7} {'profile':>7} {'table':>6} {'search':>6} "
            f"{'recover':>7} {'verify':>6} {'whole':>6} {'table%':>6} {'speedup':>7} {'top-1':>6} "
            f"{'top-5':>6}  status")
    print(head, flush=True)
    for name in args.models.split(","):
        for repo in repos:
            r = run(repo, name, args.work, args.timeout)
            rows.append(r)
            share = r.get("sensitivity table", 0) / r["whole"] * 100 if r["whole"] else None
            print(f"{name:<13} {r['checkout']:<9} {_num(r.get('prepare'), '7.0f')} "
                  f"{_num(r.get('profile'), '7.0f')} {_num(r.get('sensitivity table'), '6.0f')} "
                  f"{_num(r.get('search'), '6.0f')} {_num(r.get('recovery'), '7.0f')} "
                  f"{_num(r.get('verify'), '6.0f')} {r['whole']:6.0f} {_num(share, '6.0f')} "
                  f"{_num(r.get('speedup'), '7.2f')} {_num(r.get('top1'), '6.3f')} "
                  f"{_num(r.get('top5'), '6.3f')}  {r['status']}", flush=True)
            if r["status"] != "ok":
                print(f"  last line: {r['last']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
