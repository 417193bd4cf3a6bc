"""Progress lines when stderr is not a terminal (one per stage and per group), silence on
request, and the sensitivity table's per-group resume."""

import os
import subprocess
import sys

import fakes
import numpy as np
import onnx
import pytest
import tiny
from test_sensitivity import _group, _samples, _two_paths

from onnxprune import progress, sensitivity
from onnxprune.inputs import input_shapes
from onnxprune.job import Job
from onnxprune.output import write_model
from onnxprune.pipeline import prune_to_target
from onnxprune.preparation import prepare


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "onnxprune", *args], capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_profile_prints_one_plain_line_per_stage_and_group(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny.residual(), path)
    groups = len(prepare(tiny.residual()).graph.prunable_groups())
    proc = _cli("profile", str(path), "--cache", str(tmp_path / "p.json"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert all(line.startswith("onnxprune: [") for line in lines), lines
    assert sum("prepare done" in line for line in lines) == 1
    per_group = [line for line in lines if " profile group " in line]
    assert len(per_group) == groups and f"group {groups}/{groups}" in per_group[-1]
    assert "left" in per_group[0]  # an estimate of what remains
    assert "profile done" in lines[-1] and "\x1b" not in proc.stderr  # plain text, no bar
    for quiet in (["--quiet"], ["--json"]):
        proc = _cli("profile", str(path), "--cache", str(tmp_path / "p.json"), *quiet)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_every_stage_of_a_target_run_reports(tmp_path, capsys):
    model = tiny.residual()
    (name, shape), = input_shapes(model).items()
    calib = {name: np.random.default_rng(0).standard_normal((24, *shape[1:])).astype(np.float32)}
    progress.configure(True)
    try:
        prep = prepare(model, importance="l1", calib_data=calib)
        tr = prune_to_target(prep, fakes.Analytic(), Job.of(prep.original, speedup=1.3,
                                                            cache_path=str(tmp_path / "p.json"),
                                                            recovery=("bias",), progress=True))
        write_model(tr.result.model, str(tmp_path / "out.onnx"), prep.feeds)
    finally:
        progress.configure(False)
    err = capsys.readouterr().err
    for stage in ("prepare done", "profile group 1/", "profile done", "sensitivity table group 1/",
                  "sensitivity table done", "search: candidate measured", "recovery done",
                  "verify done", "write done"):
        assert stage in err, (stage, err)
    progress.line("silent")  # off again: nothing
    assert capsys.readouterr().err == ""


def test_sensitivity_table_resumes_at_the_group_it_stopped_in(tmp_path, monkeypatch):
    prep = prepare(_two_paths(), calib_data=_samples())
    samples, _ = prep.value_samples()
    widths = {_group(prep, "convA").id: [4, 6], _group(prep, "convB").id: [4, 6]}
    full = sensitivity.sensitivity_table(prep.graph, widths, samples, prep.stats)
    real, rows = sensitivity._row, []

    def dies_on_second(*args):
        rows.append(args[0].group.id)
        if len(rows) == 2:
            raise KeyboardInterrupt  # stopped while measuring the second group
        return real(*args)

    monkeypatch.setattr(sensitivity, "_row", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        sensitivity.sensitivity_table(prep.graph, widths, samples, prep.stats, cache_dir=str(tmp_path))
    monkeypatch.setattr(sensitivity, "_row", lambda *args: rows.append(args[0].group.id) or real(*args))
    resumed = sensitivity.sensitivity_table(prep.graph, widths, samples, prep.stats, cache_dir=str(tmp_path))
    assert rows[2:] == [rows[1]]  # only the group that was interrupted is measured again
    assert resumed.values == full.values and not resumed.cached
    again = sensitivity.sensitivity_table(prep.graph, widths, samples, prep.stats, cache_dir=str(tmp_path))
    assert again.cached and len(rows) == 3
