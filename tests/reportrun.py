"""The one real pruning run the report, figure and page tests read: ``onnxprune IN --speedup
1.3 --calib ... --report r.json --report r.html --plot t.png`` on the tiny residual net, with
the deterministic ``fakes.Analytic`` latency source, through the CLI."""

import contextlib
import io
import json

import numpy as np
import onnx
import pytest
import tiny
from fakes import Analytic

from onnxprune import cli


def prune_with_reports(tmp) -> dict:
    """Run it in ``tmp``: its stdout, the JSON and HTML reports and the folder."""
    model = tmp / "in.onnx"
    onnx.save(tiny.residual(), model)
    rng = np.random.default_rng(0)
    np.savez(tmp / "calib.npz", x=rng.standard_normal((24, 3, 16, 16)).astype(np.float32))
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(cli.Deployment, "source", lambda self: Analytic())
        cli.main([str(model), "--speedup", "1.3", "-o", str(tmp / "out.onnx"), "--calib",
                  str(tmp / "calib.npz"), "--recover", "bias", "--cache", str(tmp / "p.json"),
                  "--report", str(tmp / "r.json"), "--report", str(tmp / "r.html"),
                  "--plot", str(tmp / "t.png")])
    return {"dir": tmp, "stdout": out.getvalue(), "json": json.loads((tmp / "r.json").read_text()),
            "html": (tmp / "r.html").read_text()}
