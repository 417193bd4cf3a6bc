"""An internal error inside an optional stage (the sensitivity table, a recovery step, a plot)
degrades that stage with one warning; the run still writes a valid, proven model."""

import numpy as np
import onnx
from fakes import Analytic
from test_holdout import _classifier, _crops

from onnxprune import cli, recover, sensitivity
from onnxprune.job import Job
from onnxprune.pipeline import prune_to_target
from onnxprune.preparation import prepare


def _boom(*args, **kwargs):
    raise RuntimeError("injected failure")


def test_a_failing_sensitivity_table_falls_back_to_importance(tmp_path, monkeypatch):
    monkeypatch.setattr(sensitivity, "sensitivity_table", _boom)
    prep = prepare(_classifier(), calib_data=_crops(16, 3)[0])
    tr = prune_to_target(prep, Analytic(), Job.of(prep.original, speedup=1.2, progress=False,
                                                  cache_path=str(tmp_path / "c.json")))
    assert tr.result is not None and tr.table is None
    assert any("sensitivity table failed" in w and "injected failure" in w for w in tr.warnings)
    onnx.checker.check_model(tr.result.model, full_check=True)


def test_a_failing_recovery_step_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(recover, "lsq_refit", _boom)
    prep = prepare(_classifier(), calib_data=_crops(16, 3)[0])
    tr = prune_to_target(prep, Analytic(), Job.of(prep.original, speedup=1.2, progress=False,
                                                  cache_path=str(tmp_path / "c.json")))
    steps = {s["step"]: s for s in tr.result.quality.recovery.steps}
    assert "failed" in steps["lsq"] and not steps["lsq"]["kept"] and steps["bias"]["kept"] is not None
    assert any("recovery step 'lsq' failed" in w for w in tr.warnings)
    assert tr.result.zero_filter_error < 1e-5


def test_a_failing_plot_is_one_warning_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "save_figure", _boom)
    monkeypatch.setattr(cli.Deployment, "source", lambda self: Analytic())
    model, calib_path = tmp_path / "m.onnx", tmp_path / "c.npz"
    onnx.save(_classifier(), str(model))
    np.savez(calib_path, x=_crops(16, 3)[0]["x"])
    out = tmp_path / "o.onnx"
    try:
        cli.main([str(model), "--speedup", "1.2", "-o", str(out), "--calib", str(calib_path),
                  "--plot", str(tmp_path / "p.png"), "--cache", str(tmp_path / "c.json")])
    except SystemExit as exc:
        assert exc.code in (0, None)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    plot = [line for line in err if line.startswith("onnxprune: warning: the trade-off plot")]
    assert plot == ["onnxprune: warning: the trade-off plot failed (RuntimeError: injected failure); skipped"]
    assert all(line.startswith("onnxprune: ") for line in err)  # progress and the warning only
    assert not any("error" in line or "Traceback" in line for line in err)
    onnx.checker.check_model(onnx.load(str(out)))
