"""CLI of the accuracy side: frontier, sensitivity heatmap, bench --data, the no-calib warning."""

import json
from pathlib import Path

import numpy as np
import onnx

from onnxprune.cli import main

MNIST = str(Path(__file__).resolve().parents[1] / "models" / "mnist_cnn.onnx")


def _npz(path, n=64, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, input=rng.standard_normal((n, 1, 28, 28)).astype(np.float32))
    return str(path)


def test_frontier_writes_every_operating_point(tmp_path, capsys):
    calib = _npz(tmp_path / "c.npz")
    report, plot = tmp_path / "f.json", tmp_path / "f.png"
    main(["frontier", MNIST, "--calib", calib, "--speedups", "1.1,1.2", "--cache", str(tmp_path / "p.json"),
          "--report", str(report), "--plot", str(plot), "-o", str(tmp_path / "models")])
    assert "measured frontier" in capsys.readouterr().out
    points = json.loads(report.read_text())
    assert len(points) == 2 and all(p["quality"]["fidelity"]["agreement"] is not None for p in points)
    assert plot.stat().st_size > 0
    for s in ("1.1", "1.2"):
        onnx.checker.check_model(onnx.load(str(tmp_path / "models" / f"mnist_cnn.{s}x.onnx")))


def test_analyze_draws_the_sensitivity_heatmap(tmp_path, capsys):
    main(["analyze", MNIST, "--calib", _npz(tmp_path / "c.npz"), "--plot", str(tmp_path / "hm")])
    assert (tmp_path / "hm" / "sensitivity.png").stat().st_size > 0
    assert "sensitivity heatmap" in capsys.readouterr().out


def test_bench_data_reports_agreement_of_a_model_with_itself(tmp_path, capsys):
    main(["bench", MNIST, MNIST, "--rounds", "3", "--data", _npz(tmp_path / "t.npz"), "--json"])
    got = json.loads(capsys.readouterr().out)
    assert got["fidelity"]["agreement"] == 1.0 and got["fidelity"]["top5"] == 1.0


def test_ratio_without_calibration_warns_once_after_success(tmp_path, capsys):
    main([MNIST, "-o", str(tmp_path / "o.onnx"), "--ratio", "0.25", "--no-latency"])
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("onnxprune: [")]  # progress lines (stages done) come first
    assert len(err) == 1 and err[0].startswith("onnxprune: warning: no --calib")
