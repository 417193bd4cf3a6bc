"""Progressive pruning: the target is reached in stages, each pruned, recovered and measured
again (a new channel graph, statistics and sensitivity table on the stage's model), while every
speedup is a ratio against the unpruned model and every fidelity figure compares with it."""

import numpy as np
from fakes import Analytic
from test_holdout import _classifier, _crops

from onnxprune import runtime, search
from onnxprune.job import Job
from onnxprune.pipeline import prune_to_target
from onnxprune.preparation import prepare
from onnxprune.stats import param_count


def test_two_stages_reach_the_target_against_the_unpruned_model(tmp_path):
    samples = _crops(24, 3)[0]
    prep = prepare(_classifier(), calib_data=samples)
    tr = prune_to_target(prep, Analytic(), Job.of(prep.original, speedup=1.5, progress=False,
                                                  stages=2, cache_path=str(tmp_path / "c.json")))
    assert tr.stages == 2 and tr.result is not None
    exact = Analytic().compare(prep.model.SerializeToString(), tr.result.model.SerializeToString(), {})
    assert exact.speedup >= 1.5 * search.BAND[0] * 0.99
    assert tr.speedup >= 1.5
    r = tr.result
    assert r.params_before == param_count(prep.model) > r.params_after
    # fidelity is measured against the unpruned model on the held-out samples
    held = prep.split.held
    ref = runtime.run_outputs(prep.model, held)["logits"]
    got = runtime.run_outputs(r.model, held)["logits"]
    assert abs(r.quality.fidelity.agreement - np.mean(ref.argmax(1) == got.argmax(1))) < 1e-9
