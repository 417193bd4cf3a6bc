import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))


@pytest.fixture(scope="session")
def report_run(tmp_path_factory):
    """One real pruning run with every report (see tests/reportrun.py), shared by the report,
    figure and page tests."""
    from reportrun import prune_with_reports

    return prune_with_reports(tmp_path_factory.mktemp("report"))
