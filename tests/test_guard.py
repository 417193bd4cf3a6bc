"""Cost guard: a run whose shapes need more memory than the budget is refused in one line that
names the input and the dimension, before anything runs; MemoryError is one line too."""

import time

import numpy as np
import onnx
import pytest
import tiny
from onnx import TensorProto, helper, numpy_helper

from onnxprune import OnnxPruneError, api, guard, preparation
from onnxprune.cli import main
from onnxprune.graph import trace


def _wide(dims) -> onnx.ModelProto:
    """x [dims] -> three 1x1 convs of 512 channels -> y: at H = 100000 every activation is
    about 46 GB, far over any machine's budget."""
    rng = np.random.default_rng(0)
    nodes, inits, h, cin = [], [], "x", 3
    for k, cout in enumerate((512, 512, 4)):
        w = numpy_helper.from_array(rng.standard_normal((cout, cin, 1, 1)).astype(np.float32), f"w{k}")
        inits.append(w)
        nodes.append(helper.make_node("Conv", [h, w.name], [f"c{k}"], name=f"conv{k}"))
        h, cin = f"c{k}", cout
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info(h, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def refusal(capsys, argv) -> str:
    """Run the CLI in this process: it must exit 2 with one ``onnxprune: error:`` line."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxprune: error:"), lines
    return lines[0]


@pytest.mark.parametrize("static", [True, False])
def test_a_100000_dimension_is_refused_at_once(static, tmp_path, capsys):
    path, out = tmp_path / "wide.onnx", tmp_path / "out.onnx"
    onnx.save(_wide([1, 3, 100000, 224] if static else ["N", 3, "H", "W"]), path)
    shape = [] if static else ["--shape", "x:1x3x100000x224"]
    start = time.monotonic()
    line = refusal(capsys, [str(path), "-o", str(out), "--ratio", "0.3", "--no-latency", *shape])
    assert time.monotonic() - start < 5
    assert "input 'x' at 1x3x100000x224 (axis 2 = 100000)" in line and "GB of memory" in line
    assert ("export it with a smaller one" if static else "try --shape x:1x3x224x224") in line
    assert not out.exists()


def test_max_memory_sets_the_budget(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), path)
    args = [str(path), "-o", str(tmp_path / "o.onnx"), "--ratio", "0.3", "--no-latency"]
    assert "(--max-memory)" in refusal(capsys, [*args, "--max-memory", "20KB"])
    assert "bad --max-memory" in refusal(capsys, [*args, "--max-memory", "lots"])
    main([*args, "--max-memory", "1GB"])
    assert (tmp_path / "o.onnx").exists()


def test_estimate_counts_every_activation():
    model = tiny.residual()
    cost = guard.estimate(model)
    shapes = trace(model)[0]
    outputs = [o for n in model.graph.node for o in n.output]
    assert cost.activations == sum(4 * int(np.prod(shapes[o])) for o in outputs)
    assert cost.weights == sum(4 * int(np.prod(i.dims)) for i in model.graph.initializer)
    assert cost.inputs == 4 * 3 * 16 * 16 and cost.macs > 0
    assert guard.parse_size("1.5GiB") == 3 * 2**29 and guard.parse_size("8GB") == 8 * 10**9
    assert 0 < guard.budget()[0] <= guard.available_memory()


def test_an_unknown_data_type_is_left_to_the_loader():
    """Shape inference carries a bias's unknown type (a fuzz find) into the activation after
    it: still sized, then refused by the loader."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    b = numpy_helper.from_array(np.ones(4, np.float32), "b")
    b.data_type = 99
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["b", "h"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, b]),
        opset_imports=[helper.make_opsetid("", 17)])
    assert guard.estimate(model).activations > 0
    with pytest.raises(OnnxPruneError, match="initializer 'b' has an unknown data type"):
        preparation.prepare(model)


def test_calibration_samples_of_a_huge_shape_are_refused(tmp_path):
    samples = {"x": np.zeros((2, 3, 8, 100000), np.float32)}
    guard.set_max_memory("200MB")
    try:
        with pytest.raises(OnnxPruneError, match="calibration samples of 'x' are 3x8x100000 each"):
            preparation.prepare(tiny.dynamic(), calib_data=samples)
    finally:
        guard.set_max_memory(None)


def test_a_huge_npz_is_refused_from_its_headers(tmp_path, capsys):
    """A file whose header announces 10^12 floats is refused without reading any data."""
    npz = tmp_path / "calib.npz"
    import zipfile
    with zipfile.ZipFile(npz, "w") as zf, zf.open("x.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (1000000, 3, 1000, 1000)})
    model = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), model)
    line = refusal(capsys, [str(model), "-o", str(tmp_path / "o.onnx"), "--ratio", "0.3",
                             "--calib", str(npz)])
    assert "the calibration arrays take 12.0 TB ('x': 1000000 samples of 3x1000x1000" in line


def test_memory_error_is_one_line(tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise MemoryError("Unable to allocate 37.4 GiB for an array with shape (10, 1000000000)")
    monkeypatch.setattr(api, "prepare", boom)
    path = tmp_path / "m.onnx"
    onnx.save(tiny.conv_chain(), path)
    line = refusal(capsys, [str(path), "-o", str(tmp_path / "o.onnx"), "--ratio", "0.3"])
    assert "needs about 37.4 GiB for one array alone" in line and "--shape" in line


def test_val_samples_are_checked_against_one_estimate(monkeypatch):
    """--val data is held together with the calibration data: over the budget together, the
    run is refused naming both; the graph is estimated (shape inference) once."""
    calls = []
    real = guard.estimate
    monkeypatch.setattr(guard, "estimate", lambda *a, **k: calls.append(1) or real(*a, **k))
    small = {"x": np.zeros((2, 3, 16, 16), np.float32)}
    big = {"x": np.zeros((64, 3, 224, 224), np.float32)}  # 38.5 MB of samples
    model = tiny.conv_chain()
    guard.set_max_memory("30MB")
    try:
        cost = guard.check(model, {"x": (1, 3, 16, 16)}, small, None, small)
        assert calls == [1] and cost.samples == 2 * small["x"].nbytes
        with pytest.raises(OnnxPruneError, match=r"the calibration and --val data \(2 \+ 64 samples"):
            guard.check(model, {"x": (1, 3, 16, 16)}, small, None, big)
        half = {"x": np.zeros((32, 3, 224, 224), np.float32)}  # 19.3 MB each, 38.5 MB together
        guard.check(model, {"x": (1, 3, 16, 16)}, half)
        with pytest.raises(OnnxPruneError, match=r"the calibration and --val data \(32 \+ 32 samples"):
            guard.check(model, {"x": (1, 3, 16, 16)}, half, None, half)
    finally:
        guard.set_max_memory(None)
