"""An honest held-out figure: calibration samples are clustered by what the model makes of
them, whole clusters are held out (crops of one photo never vouch for each other), the
agreement comes with a 95% interval over clusters, few clusters warn, and --val replaces the
held-out part with the user's own data."""

import numpy as np
import pytest
from onnx import helper, numpy_helper

from onnxprune import calib, load
from onnxprune.job import Job
from onnxprune.pipeline import prune_ratio
from onnxprune.preparation import prepare


def _classifier(size: int = 32):
    """x [N, 3, size, size] -> conv 3x3 (16) -> Relu -> conv 3x3 (16) -> Relu -> GAP ->
    Flatten -> Gemm (16 -> 10)."""
    rng = np.random.default_rng(0)

    def w(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:])))
                                       .astype(np.float32), name)
    inits = [w("w1", (16, 3, 3, 3)), w("w2", (16, 16, 3, 3)), w("wg", (10, 16)),
             numpy_helper.from_array(np.zeros(10, np.float32), "bg")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "cls", [helper.make_tensor_value_info("x", 1, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("logits", 1, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def _crops(photos: int, per_photo: int, seed: int = 0, size: int = 32):
    """``per_photo`` random crops (and flips) of each of ``photos`` distinct smooth 'photos'
    (own colour balance and texture scale each); returns (samples, photo id per sample)."""
    rng = np.random.default_rng(seed)
    big = size + size // 4
    xs, ids = [], []
    for p in range(photos):
        base = calib.synthetic(_classifier(big), 1, seed=seed * 1000 + p)["x"][0]
        base = base * rng.uniform(0.3, 2.0, (3, 1, 1)) + rng.uniform(-1.5, 1.5, (3, 1, 1))
        for _ in range(per_photo):
            y0, x0 = rng.integers(0, big - size, 2)
            crop = base[:, y0:y0 + size, x0:x0 + size]
            xs.append(crop[:, :, ::-1] if rng.random() < 0.5 else crop)
            ids.append(p)
    order = rng.permutation(len(xs))
    return {"x": np.stack(xs).astype(np.float32)[order]}, np.array(ids)[order]


def test_crops_of_one_photo_fall_in_one_cluster_and_on_one_side():
    samples, photo = _crops(photos=12, per_photo=6)
    model = load.normalise(_classifier())
    feats, labels, threshold = calib.near_duplicates(model, samples)
    assert 0.5 <= threshold < 1.0
    for c in np.unique(labels):  # a cluster never mixes... and a photo never spans clusters
        assert len(np.unique(photo[labels == c])) >= 1
    for p in np.unique(photo):
        assert len(np.unique(labels[photo == p])) == 1, f"photo {p} split over clusters"
    split = calib.split(samples, labels, feats)
    held = {tuple(x.ravel()[:8]) for x in split.held["x"]}
    held_photos = {int(photo[k]) for k in range(len(photo)) if tuple(samples["x"][k].ravel()[:8]) in held}
    fit_photos = set(photo.tolist()) - held_photos
    assert held_photos and fit_photos
    for k in range(len(photo)):  # every crop of a held photo is held, none is fitted
        in_held = tuple(samples["x"][k].ravel()[:8]) in held
        assert in_held == (int(photo[k]) in held_photos)


def test_distinct_samples_are_their_own_clusters():
    samples, _ = _crops(photos=24, per_photo=1, seed=1)
    _, labels, _ = calib.near_duplicates(load.normalise(_classifier()), samples)
    assert len(np.unique(labels)) >= 20


def test_few_clusters_warn_and_the_report_has_the_interval():
    samples, _ = _crops(photos=6, per_photo=8)
    prep = prepare(_classifier(), calib_data=samples)
    assert any("distinct cluster" in w for w in prep.warnings)
    fid = prune_ratio(prep, Job.of(prep.original, ratio=0.3)).quality.fidelity
    assert fid.clusters == prep.split.held_clusters and fid.clusters <= 3
    lo, hi = fid.interval
    assert lo <= fid.agreement <= hi


def test_val_replaces_the_held_out_part():
    samples, _ = _crops(photos=16, per_photo=3)
    val, _ = _crops(photos=5, per_photo=2, seed=7)
    prep = prepare(_classifier(), calib_data=samples, val_data=val)
    assert prep.split.source == "val"
    assert calib.count(prep.split.fit) == calib.count(samples)  # every calibration sample fits
    fid = prune_ratio(prep, Job.of(prep.original, ratio=0.3)).quality.fidelity
    assert fid.samples == calib.count(val)
    with pytest.raises(Exception, match="--val needs calibration"):
        prepare(_classifier(), val_data=val)
