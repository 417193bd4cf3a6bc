"""ConvTranspose: W axis 0 consumes input channels, axis 1 produces output channels."""

import tiny
from prunecheck import group_of, prove

from onnxprune.inputs import graph_inputs, input_shapes


def test_convtranspose_both_sides():
    prep = prove(tiny.convtranspose())
    up = group_of(prep, "deconv_0")
    assert len(up.prunable) == up.width
    assert any(p.node == "deconv_0" and p.role == "in" and p.axis == 0
               for g in prep.graph.groups for p in g.members)


def test_recovery_skips_convtranspose_with_a_reason():
    """Recovery refits the convs around it and names the ConvTranspose it leaves alone (its
    output is a stride-dependent scatter, not a conv window map)."""
    import numpy as np

    from onnxprune import prune

    model = tiny.convtranspose()
    inp = graph_inputs(model)[0]
    shape = input_shapes(model)[inp.name]
    rng = np.random.default_rng(0)
    calib = [{inp.name: rng.standard_normal((8, *shape[1:])).astype(np.float32)} for _ in range(4)]
    report = prune(model, ratio=0.3, calib=calib).report["recovery"]
    assert report["skipped"] == [{"node": "deconv_0", "skipped": report["skipped"][0]["skipped"]}]
    assert report["skipped"][0]["skipped"].startswith("ConvTranspose: no refit")
    assert {layer["node"] for layer in report["layers"]} == {"conv_1", "conv_2"}
