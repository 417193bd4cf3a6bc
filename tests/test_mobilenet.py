"""The bundled real model: ImageNet MobileNetV2 (torchvision weights) prunes correctly."""

from pathlib import Path

import numpy as np
from prunecheck import prove

from onnxprune import load_model
from onnxprune.preparation import prepare

MODEL = Path(__file__).resolve().parents[1] / "models" / "mobilenet_v2.onnx"


def test_mobilenet_v2_groups_and_proof():
    prep = prove(load_model(str(MODEL)), ratio=0.3)
    s = prep.graph.summary()
    assert s["groups"] == 26 and s["prunable_groups"] == 25
    assert s["prunable_share"] > 0.85


def test_mobilenet_importance_is_comparable():
    prep = prepare(str(MODEL))
    means = [g.importance.mean() for g in prep.graph.prunable_groups()]
    members = [len([p for p in g.members if p.scored]) for g in prep.graph.prunable_groups()]
    assert np.allclose(means, members, rtol=1e-6)
