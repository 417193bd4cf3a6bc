"""GPTQ rounding of a QDQ model's int8 weights (onnxprune.ptq)."""

import numpy as np
import onnx
import pytest
import tiny
from onnx import numpy_helper

from onnxprune import calib, fidelity, ptq, quantize

RNG = np.random.default_rng(3)


def _samples(model: onnx.ModelProto, n: int = 32) -> calib.Samples:
    return calib.synthetic(model, n, seed=1)


def _consts(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("name", ["conv_chain", "depthwise_se", "flatten_gemm", "mlp"])
def test_rounding_moves_only_int8_weights_and_biases_and_brings_outputs_closer(name):
    model = getattr(tiny, name)()
    samples = _samples(model)
    flt = quantize.prepared(model)
    q = quantize.quantize(flt, samples, quantize.Quantization(prepared=True)).model
    out, done = ptq.rounded(q, flt, samples)
    assert done > 0
    before, after = _consts(q), _consts(out)
    assert [n.SerializeToString() for n in q.graph.node] == [n.SerializeToString() for n in out.graph.node]
    moved = [k for k in before if not np.array_equal(before[k], after[k])]
    assert moved and all(after[k].dtype in (np.int8, np.int32) for k in moved)  # scales kept
    assert all(np.abs(after[k]).max() <= 127 for k in moved if after[k].dtype == np.int8)
    reference = fidelity.outputs_on(flt, samples)
    near = fidelity.distortion(reference, fidelity.outputs_on(q, samples), samples)
    gptq = fidelity.distortion(reference, fidelity.outputs_on(out, samples), samples)
    assert gptq < near
    assert _consts(q).keys() == before.keys()  # the input model is not modified


def test_a_node_rounded_is_no_worse_on_its_own_hessian():
    w = RNG.standard_normal((6, 10))
    x = RNG.standard_normal((400, 10)) @ RNG.standard_normal((10, 10))  # correlated inputs
    rows = np.hstack([x, np.ones((len(x), 1))])
    h = rows.T @ rows
    scale = np.abs(w).max(1) / 127 * 20  # coarse steps: rounding matters
    v = np.hstack([w, RNG.standard_normal((6, 1))])
    ints, bias = ptq._gptq(v, h, scale, with_bias=True)
    near = np.hstack([np.clip(np.round(w / scale[:, None]), -127, 127) * scale[:, None], v[:, -1:]])
    ours = np.hstack([ints * scale[:, None], bias[:, None]])
    assert ints.shape == w.shape and np.all(ints == np.round(ints))
    assert ptq._error(v - ours, h) < 0.7 * ptq._error(v - near, h)


def test_gptq_rounding_is_cached_and_labelled(tmp_path):
    model = tiny.conv_chain()
    samples = _samples(model)
    how = quantize.Quantization(rounding="gptq")
    first = quantize.quantize(model, samples, how, str(tmp_path))
    again = quantize.quantize(model, samples, how, str(tmp_path))
    assert first.rounding == again.rounding == "gptq" and first.label == "int8 minmax gptq"
    assert _consts(first.model).keys() == _consts(again.model).keys()
    assert all(np.array_equal(v, _consts(again.model)[k]) for k, v in _consts(first.model).items())
