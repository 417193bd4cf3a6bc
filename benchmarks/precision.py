"""Pruning in the precision the model ships in, beside the runtime's own quantizer.

Setting as ``benchmarks/fidelity.py --setting realistic``: calibration = 300 distinct Tux Paint
photos, test = every GCompris photo (another source), agreement = with the unpruned float
model. Per model and target, rows:

* ``fp32`` / ``int8``: ``onnxprune --speedup S --precision P`` (one profile, table and
  runtime-quantizer measurement per precision, shared by its targets);
* ``auto``: the more faithful of those two that meets the target (what ``--precision auto``
  returns: it runs the same two searches);
* ``ORT minmax`` / ``ORT percentile``: onnxruntime's ``quant_pre_process`` then
  ``quantize_static`` of the unpruned model (QDQ, per-channel int8 weights, uint8 activations, 128 of the same calibration photos) --
  the user's 20-line alternative, measured in the same run (one row per model, at every target).

Columns: measured = the tool's pooled interleaved speedup over the float original; bench = a
fresh interleaved A/B ratio (ORT CPU, 1 thread); held-out = the tool's own top-1 agreement
with its 95% interval; test top-1 / top-5; tool s = wall seconds (a precision's shared search
split over its targets). ``meets`` marks rows whose bench speedup is at least the target.

Usage: python benchmarks/precision.py [--models mobilenet_v2,efficientnet_lite0]
       [--speedups 1.5,2,2.5,3] [--precisions fp32,int8] [--json F]
(the ``auto`` row needs both precisions; ``float`` = nodes an int8 row keeps in fp32)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import onnx
from fidelity import agreement, data, logits, model_path, pct

from onnxprune import OnnxPruneError, backends, quantize, recover, runtimes
from onnxprune.job import Job
from onnxprune.pipeline import pick_precision, prune_to_target, start_search
from onnxprune.preparation import prepare
from onnxprune.profile import default_cache_path

HEADER = (f"{'model':18} {'target':>6} {'row':15} {'measured':>8} {'bench':>7} {'meets':>5} "
          f"{'held-out [95%]':>20} {'top-1':>7} {'top-5':>7} {'tool s':>6} {'float':>5}")


def line(r: dict) -> str:
    held = "-"
    if r.get("held") is not None:
        lo, hi = r.get("interval") or (None, None)
        held = f"{pct(r['held'])} [{pct(lo)}..{pct(hi)}]" if lo is not None else pct(r["held"])
    if r.get("error"):
        return f"{r['model']:18} {r['target']:>6.2f} {r['row']:15} {r['error']}"
    measured = "-" if r.get("measured") is None else f"{r['measured']:.3f}x"
    return (f"{r['model']:18} {r['target']:>6.2f} {r['row']:15} {measured:>8} {r['bench']:>6.3f}x "
            f"{'yes' if r['bench'] >= r['target'] else 'no':>5} {held:>20} {pct(r['top1']):>7} "
            f"{pct(r['top5']):>7} {r['seconds']:>6.0f} {r.get('float', '-'):>5}")


def searched(name: str, path: str, precision: str, speedups: list[float], calib_x, test_x,
             ref, source) -> tuple[list[dict], list, list[dict]]:
    """The rows of one precision (one search shared by the targets), the results (None where
    the target is below the reachable floor) and the runtime quantizer's rows of that run."""
    start = time.perf_counter()
    settings = {"recovery": recover.STEPS, "progress": False, "cache_path": default_cache_path()}
    prep = prepare(path, calib_data={_input(path): calib_x}, precision=precision)
    ctx = start_search(prep, source, Job.of(prep.original, speedup=speedups[0], **settings))
    results, rows = [], []
    for s in speedups:
        try:
            results.append(prune_to_target(prep, source, Job.of(prep.original, speedup=s, **settings), ctx))
        except OnnxPruneError as exc:
            results.append(None)
            rows.append({"model": name, "target": s, "row": precision, "error": str(exc)[:110]})
    seconds = (time.perf_counter() - start) / len(speedups)
    for s, tr in zip(speedups, results):
        if tr is not None:
            rows.append(judged(name, s, precision, tr, prep, test_x, ref, seconds, source))
    return rows, results, ctx.quantizer


def _input(path: str) -> str:
    return onnx.load(path).graph.input[0].name


def judged(name, target, row, tr, prep, test_x, ref, seconds, source) -> dict:
    fid = tr.result.quality.fidelity
    cmp = source.compare(
        prep.original.SerializeToString(), tr.result.model.SerializeToString(), prep.feeds, rounds=40)
    return {"model": name, "target": target, "row": row, "measured": tr.speedup, "bench": cmp.speedup,
            "held": fid.agreement, "interval": fid.interval, "precision": tr.result.quality.precision,
            "float": len(tr.result.quality.float_nodes),
            **agreement(ref, logits(tr.result.model, test_x), None), "seconds": seconds,
            "widths": {str(k): v for k, v in tr.widths.items()}}


def runtime_rows(name, path, calib_x, test_x, ref, quantizer: list[dict], speedups) -> list[dict]:
    """The runtime quantizer's rows: its measured speedup and held-out figure from the run
    (calibrated on the fit part), its test agreement here calibrated as a user would (128 of
    all the calibration photos)."""
    model = onnx.load(path)
    out = []
    for q in quantizer:
        made = quantize.quantize(model, {_input(path): calib_x}, quantize.Quantization(q["method"]))
        got = agreement(ref, logits(made.model, test_x), None)
        for s in speedups:
            out.append({"model": name, "target": s, "row": f"ORT {q['method']}", "measured": q["speedup"],
                        "bench": q["speedup"], "held": q["fidelity"].get("agreement"),
                        "interval": q["fidelity"].get("interval"), **got, "seconds": q["seconds"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    ap.add_argument("--speedups", default="1.5,2,2.5,3")
    ap.add_argument("--calib-n", type=int, default=300)
    ap.add_argument("--precisions", default=",".join(quantize.MODEL_PRECISIONS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    precisions = args.precisions.split(",")
    speedups = sorted(float(v) for v in args.speedups.split(","))
    source = backends.Local(runtimes.RuntimeConfig())
    rows: list[dict] = []
    print(HEADER)
    for name in args.models.split(","):
        path = model_path(name)
        calib_x, test_x, _ = data("realistic", name, args.calib_n)
        ref = logits(onnx.load(path), test_x)
        by_precision, quantizer = {}, []
        for precision in precisions:
            got, results, q = searched(name, path, precision, speedups, calib_x, test_x, ref, source)
            by_precision[precision] = (got, results)
            quantizer = quantizer or q
            for r in got:
                print(line(r), flush=True)
            rows += got
        for k, s in enumerate(speedups):
            if set(by_precision) != set(quantize.MODEL_PRECISIONS):
                break
            both = [by_precision[p][1][k] for p in quantize.MODEL_PRECISIONS]
            if all(tr is None for tr in both):
                continue
            pick = pick_precision([tr for tr in both if tr is not None])
            precision = quantize.MODEL_PRECISIONS[both.index(pick)]
            twin = next(r for r in by_precision[precision][0] if r["target"] == s and "error" not in r)
            auto = {**twin, "row": "auto", "seconds": sum(
                next((r["seconds"] for r in by_precision[p][0] if r["target"] == s and "seconds" in r), 0.0)
                for p in quantize.MODEL_PRECISIONS)}
            print(line(auto), flush=True)
            rows.append(auto)
        for r in runtime_rows(name, path, calib_x, test_x, ref, quantizer, speedups):
            print(line(r), flush=True)
            rows.append(r)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
