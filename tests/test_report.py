"""What people read tells one story: the console tables, the JSON and the trade-off plot of one
run show the same numbers (one baseline; ms = baseline / speedup), and the summary says which
comparison its band is from. The run: ``reportrun.prune_with_reports`` (conftest's
``report_run``)."""

import re

import matplotlib.image
import pytest

from onnxprune import figures, report


def test_table_json_and_plot_tell_one_story(report_run):
    data, text = report_run["json"], report_run["stdout"]
    fig = report.latency_story(data)
    assert fig.ms == pytest.approx(fig.baseline_ms / fig.speedup)
    assert fig.target_ms == pytest.approx(fig.baseline_ms / 1.3)
    assert fig.met == (fig.ms <= fig.target_ms) and fig.met
    # the console prints the same numbers, rounded
    assert f"target {fig.target_ms:.3f} ms (1.300x)" in text
    row = next(line for line in text.splitlines() if "latency ms" in line)
    assert re.findall(r"\d+\.\d{3}", row) == [f"{fig.baseline_ms:.3f}", f"{fig.ms:.3f}"]
    assert f"{fig.speedup:.3f}x" in text
    # the plot: the target line and the chosen model at those very numbers, inside the axes
    ax = figures.tradeoff_figure(data).axes[0]
    target = next(line for line in ax.lines if line.get_label().startswith("target"))
    assert target.get_xdata()[0] == pytest.approx(fig.target_ms)
    chosen = next(line for line in ax.lines if line.get_label().startswith("chosen"))
    x, y = chosen.get_xdata()[0], chosen.get_ydata()[0]
    assert x == pytest.approx(fig.ms) and y == pytest.approx(1 - data["quality"]["fidelity"]["drop"])
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 < x < x1 and y0 < y < y1 and x0 < fig.baseline_ms < x1  # padded, not on the frame
    assert (x1 - x) > 0.02 * (x1 - x0) and (y1 - y) > 0.02 * (y1 - y0)
    assert any("chosen" in t.get_text() for t in ax.texts)
    original = next(line for line in ax.lines if line.get_label().startswith("original"))
    assert original.get_xdata()[0] == pytest.approx(fig.baseline_ms)
    # the file written by --plot is that figure
    h, w = matplotlib.image.imread(report_run["dir"] / "t.png").shape[:2]
    assert (w, h) == (770, 484)  # 7 x 4.4 in at 110 dpi


def test_summary_says_which_comparison_its_band_is_from():
    """The pooled speedup is printed with the band of the last comparison, said so; a run
    whose only comparison is the last one prints the band alone."""
    from onnxprune.report import summary_grid

    final = {"speedup": 1.25, "independent_speedup": 1.2, "ratio_p10": 1.15, "ratio_p90": 1.24}
    grid = summary_grid({"baseline_ms": 10.0, "final": final})
    row = {r[0]: r[2] for r in grid.rows}
    assert row["speedup (interleaved)"] == "1.250x (last 1.200x, p10..p90 1.150..1.240)"
    assert "pooled over every comparison of the chosen model, the last one in brackets" in grid.note
    final["independent_speedup"] = 1.25
    grid = summary_grid({"baseline_ms": 10.0, "final": final})
    assert {r[0]: r[2] for r in grid.rows}["speedup (interleaved)"] == "1.250x (p10..p90 1.150..1.240)"
    assert "pooled" not in grid.note
