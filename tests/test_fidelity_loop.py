"""Fidelity in the loop: --max-drop is a constraint the search meets by trading latency."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune import OnnxPruneError, prune
from onnxprune.stats import param_count

MNIST = str(Path(__file__).resolve().parents[1] / "models" / "mnist_cnn.onnx")


def _calib(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return [{"input": rng.standard_normal((n, 1, 28, 28)).astype(np.float32)}]


def test_max_drop_alone_gives_the_fastest_model_within_it(tmp_path):
    out = prune(MNIST, max_drop=0.05, calib=_calib(), cache_path=str(tmp_path / "p.json"))
    points = out.report["tradeoff"]
    chosen = [p for p in points if p["chosen"]]
    assert len(chosen) == 1 and chosen[0]["drop"] <= 0.05
    assert out.report["quality"]["fidelity"]["drop"] <= 0.05
    # the chosen one is the fastest judged candidate within the drop
    within = [p for p in points if p["drop"] <= 0.05]
    assert chosen[0]["ms"] == min(p["ms"] for p in within)
    assert param_count(out.model) < param_count(onnx.load(MNIST))


def test_target_and_drop_that_cannot_both_hold_show_the_frontier(tmp_path):
    original = param_count(onnx.load(MNIST))

    def evaluate(path: str) -> float:  # any pruning costs the whole metric
        return 1.0 if param_count(onnx.load(path)) == original else 0.0

    with pytest.raises(OnnxPruneError, match="cannot hold both.*measured frontier"):
        prune(MNIST, speedup=1.2, max_drop=0.5, calib=_calib(), evaluate=evaluate,
              cache_path=str(tmp_path / "p.json"))
