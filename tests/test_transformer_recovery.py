"""Pruning half of a BERT's heads and FFN units with calibration data: the least-squares refit
of the output and down projections (mask tuning) brings the sentence embeddings back, and the
held-out check reports embedding cosine and nearest-neighbour agreement."""

import hf  # skips this module without torch / transformers
import numpy as np
import pytest

from onnxprune import runtime
from onnxprune.job import Job
from onnxprune.pipeline import prune_ratio
from onnxprune.preparation import prepare


def sentences(n: int, seed: int) -> dict[str, np.ndarray]:
    """Token ids of ``n`` sentences of random lengths, padded to hf.SEQ."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, hf.SEQ + 1, n)
    mask = (np.arange(hf.SEQ)[None] < lengths[:, None]).astype(np.int64)
    return {"input_ids": rng.integers(1, 100, (n, hf.SEQ)) * mask, "attention_mask": mask}


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return hf.export("bert", False, tmp_path_factory.mktemp("bert") / "bert.onnx")


def test_refit_recovers_embeddings(bert):
    prep = prepare(bert, calib_data=sentences(64, 0))
    result = prune_ratio(prep, Job.of(prep.original, ratio=0.5))
    steps = {s["step"]: s for s in result.quality.recovery.steps}
    assert steps["lsq"]["kept"]
    assert steps["lsq"]["embedding_cosine"] > steps["none"]["embedding_cosine"]
    assert steps["lsq"]["neighbours"] >= steps["none"]["neighbours"]
    assert result.quality.fidelity.agreement is None  # not a classifier
    out = runtime.run_outputs(result.model, prep.feeds)
    ref = prep.reference()
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in ref.items()}
