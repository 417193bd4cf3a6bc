"""What people read: the console tables, the JSON, the plots and the HTML page of one run tell
the same story (one baseline; ms = baseline / speedup), the page is self-contained and renders
in a real headless browser, and the plots carry what they promise (every judged candidate, the
target line, the chosen model inside the axes, full group names, a colour bar, step edges only
where a curve steps).

One real pruning run (tiny residual net, calibration data, the deterministic ``fakes.Analytic``
latency source through the CLI) feeds most tests."""

import contextlib
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import onnx
import pytest
import tiny
from fakes import Analytic, Staircase

from onnxprune import cli, report
from onnxprune.preparation import prepare
from onnxprune.profile import GroupProfile, Layer, LayerProfile
from onnxprune.sensitivity import Table


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``onnxprune IN --speedup 1.3 --calib ... --report r.json --report r.html --plot t.png``."""
    tmp = tmp_path_factory.mktemp("report")
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


def test_table_json_and_plot_tell_one_story(run):
    data, text = run["json"], run["stdout"]
    fig = report.figures(data)
    assert fig.ms == pytest.approx(fig.baseline_ms / fig.speedup)
    assert fig.target_ms == pytest.approx(fig.baseline_ms / 1.3)
    assert fig.met == (fig.ms <= fig.target_ms) and fig.met
    # the console prints the same numbers, rounded
    assert f"target {fig.target_ms:.3f} ms (1.300x)" in text
    row = next(line for line in text.splitlines() if "latency ms" in line)
    assert re.findall(r"\d+\.\d{3}", row) == [f"{fig.baseline_ms:.3f}", f"{fig.ms:.3f}"]
    assert f"{fig.speedup:.3f}x" in text
    # the plot: the target line and the chosen model at those very numbers, inside the axes
    ax = report.tradeoff_figure(data).axes[0]
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
    h, w = matplotlib.image.imread(run["dir"] / "t.png").shape[:2]
    assert (w, h) == (770, 484)  # 7 x 4.4 in at 110 dpi


def test_every_judged_candidate_is_plotted():
    points = [{"ms": ms, "drop": d, "chosen": False} for ms, d in
              ((0.6, 0.0), (0.5, 0.02), (0.45, 0.05), (0.42, 0.2))]
    points[1]["chosen"] = True
    data = {"baseline_ms": 0.8, "target_ms": 0.55, "tradeoff": points,
            "final": {"speedup": 0.8 / 0.52}, "quality": {"fidelity": {"agreement": 0.98, "drop": 0.02}}}
    ax = report.tradeoff_figure(data).axes[0]
    judged = next(line for line in ax.lines if line.get_label().startswith("judged"))
    assert sorted(judged.get_xdata()) == [0.42, 0.45, 0.6]  # the chosen one is drawn as chosen
    assert ax.get_ylabel().startswith("top-1 agreement")
    # the frontier: one line per target, each target's model labelled with its target
    other = {**data, "target_ms": 0.44, "final": {"speedup": 0.8 / 0.43},
             "quality": {"fidelity": {"agreement": 0.9, "drop": 0.1}}}
    ax = report.frontier_figure([data, other]).axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert any(t.startswith("1.45x -> 1.538x") for t in labels)
    assert any(t.startswith("1.82x -> 1.860x") for t in labels)
    assert len([line for line in ax.lines if line.get_linestyle() == "--"]) == 2


class _Page(HTMLParser):
    """Cards (data-key -> value), table rows, and every external reference of a page."""

    def __init__(self):
        super().__init__()
        self.cards, self.rows, self.refs, self.tags = {}, [], [], set()
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if "data-key" in attrs:
            self.cards[attrs["data-key"]] = float(attrs["data-value"])
        for key in ("src", "href"):
            if key in attrs:
                self.refs.append(attrs[key])
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_html_report_carries_the_json_numbers(run):
    data, page = run["json"], _Page()
    page.feed(run["html"])
    fig = report.figures(data)
    assert page.cards["speedup"] == data["final"].get("speedup", fig.speedup)
    assert page.cards["ms"] == pytest.approx(fig.baseline_ms / fig.speedup)
    assert page.cards["agreement_fidelity"] == data["quality"]["fidelity"]["agreement"]
    latency = next(r for r in page.rows if r[0].startswith("latency ms"))
    assert latency[1:] == [f"{fig.baseline_ms:.3f}", f"{fig.ms:.3f}"]
    # every group's widths, the frozen output group and why, the recovery steps, the run
    for g in data["groups"]:
        assert [str(g["group"]), g["name"], f"{g['width_before']} -> {g['width_after']}"] in \
            [r[:3] for r in page.rows]
    assert any("reaches graph output" in r[-1] for r in page.rows)
    assert [r[0] for r in page.rows if r[0] in ("none", "bias", "lsq", "bn")] == ["none", "bias"]
    command = next(r[1] for r in page.rows if r[0] == "command")
    assert "--speedup 1.3" in command and "--report" in command
    assert next(r[1] for r in page.rows if r[0] == "input shapes") == "x 1x3x16x16"
    assert next(r[1] for r in page.rows if r[0] == "latency measured on").startswith("staircase|ort:cpu")
    # self-contained: inline images only, no scripts, no external anything
    assert page.refs and all(ref.startswith("data:image/png;base64,") for ref in page.refs)
    assert "script" not in page.tags and "link" not in page.tags


def test_html_report_renders_in_headless_chromium(run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    page = (run["dir"] / "r.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1800", page],
                   capture_output=True, timeout=120, check=True)
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    fig = report.figures(run["json"])
    assert f"{fig.speedup:.3f}x" in dom and "judged candidates" in dom
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1800, 1200)
    ink = (pixels[..., :3].mean(axis=2) < 0.6).mean()
    assert 0.01 < ink < 0.5  # text, tables and the plot, not a blank or an error page
    print(f"screenshot: {shot}")


def test_ratio_report_page_without_calibration(tmp_path):
    model = tmp_path / "in.onnx"
    onnx.save(tiny.residual(), model)
    cli.main([str(model), "-o", str(tmp_path / "o.onnx"), "--ratio", "0.25", "--no-latency",
              "--report", str(tmp_path / "r.htm")])
    page = _Page()
    page.feed((tmp_path / "r.htm").read_text())
    assert 0 < page.cards["params"] < 1
    assert any(r[:2] == ["parameters", "20,282"] for r in page.rows)


def test_heatmap_names_whole_wrapped_with_colour_bar_and_blank_legend():
    g = prepare(tiny.residual()).graph
    long = "/features/features.17/conv/conv.0/conv.0.0/Conv_with_a_rather_long_suffix_name"
    g.groups[2].name = long
    table = Table({2: {4: 0.5, 8: 0.01, 12: 1e-4}, 3: {8: 0.2, 16: 0.003, 24: 2e-5, 28: 1e-5}})
    fig = report.heatmap_figure(g, table)
    ax, bar = fig.axes[0], fig.axes[1]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0].replace("\n", "") == f"2 {long}"  # whole, wrapped, not cut
    assert all(len(line) <= 36 for line in labels[0].splitlines()) and "\n" in labels[0]
    assert "log10" in bar.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["25%", "50%", "75%", "88%"]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1  # group 2 (16 wide) has no width at 88%
    assert any("blank" in t.get_text() for t in fig.legends[0].get_texts())


def test_step_edges_only_where_the_curve_steps():
    line = {w: 0.01 * w + 0.05 for w in range(1, 97)}
    assert report.step_edges(line) == []
    stairs = {w: 0.1 * (1 + (w - 1) // 16) for w in [*range(1, 97, 4), 16, 17, 32, 33, 48, 49]}
    assert report.step_edges(stairs) == [16, 32, 48, 61, 77]  # the last measured width before
    spiky = {**stairs, 40: 0.9}  # one slow measurement inside a tread
    assert report.step_edges(spiky) == [16, 32, 48, 61, 77]


def _profile(gid, width, curve):
    layer = Layer(f"/block{gid}/conv/Conv", "Conv", "out", 0, 1, "sig")
    return GroupProfile(gid, f"/block{gid}/conv/Conv", width, 1, [LayerProfile(layer, dict(curve))],
                        dict(curve), candidates=[width])


def test_profile_plot_is_one_overview_unless_groups_are_asked(tmp_path, monkeypatch, capsys):
    profs = [_profile(i, 32, {w: 0.01 * (1 + (w - 1) // 8) for w in range(1, 33)}) for i in range(7)]
    fig = report.profiles_figure(profs)
    used = [ax for ax in fig.axes if ax.lines]
    assert len(used) == 7 and all(len(ax.lines[1].get_xdata()) == 3 for ax in used)  # 8, 16, 24
    model = tmp_path / "in.onnx"
    onnx.save(tiny.residual(), model)
    monkeypatch.setattr(cli.Deployment, "source", lambda self: Staircase())
    args = ["profile", str(model), "--cache", str(tmp_path / "p.json"), "--plot"]
    cli.main([*args, str(tmp_path / "one")])
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["profile.png"]
    cli.main([*args, str(tmp_path / "all"), "--plot-groups"])
    names = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert names[-1] == "profile.png" and len(names) == 1 + 4 and names[0] == "group_001.png"
    w = matplotlib.image.imread(tmp_path / "one" / "profile.png").shape[1]
    assert w == 1040  # four groups side by side, 2.6 in each at 100 dpi


def test_val_fidelity_and_frontier_pages(run):
    data = run["json"]
    assert report.held_out_name(data["quality"]) == "held-out calibration samples"
    val = {**data["quality"]["fidelity"], "agreement": 0.75, "top5": 0.9, "data": "val"}
    with_val = {**data, "quality": {**data["quality"], "fidelity": val}}
    page = _Page()
    page.feed(report.run_html(with_val))
    assert page.cards["agreement_fidelity"] == 0.75
    rows = {r[0]: r for r in page.rows}
    assert rows["--val data"][1:3] == ["75.0%", "90.0%"]
    # the frontier page: one row and one details section per target, the same figures
    other = {**data, "target_ms": data["baseline_ms"] / 1.2, "target_speedup": 1.2}
    text = report.frontier_html([other, data])
    page = _Page()
    page.feed(text)
    fig = report.figures(data)
    assert [r[:3] for r in page.rows if r[0] in ("1.2x", "1.3x")] == [
        [f"{t}x", f"{fig.speedup:.3f}x", f"{fig.ms:.3f}"] for t in ("1.2", "1.3")]
    assert text.count("<details>") == 2 and "script" not in page.tags


def test_summary_says_which_comparison_its_band_is_from():
    """The pooled speedup is printed with the band of the last comparison, said so; a run
    whose only comparison is the last one prints the band alone."""
    from onnxprune.report import summary_grid

    final = {"speedup": 1.25, "independent_speedup": 1.2, "ratio_p10": 1.15, "ratio_p90": 1.24}
    row = {r[0]: r[2] for r in summary_grid({"baseline_ms": 10.0, "final": final}).rows}
    assert row["speedup (interleaved)"] == "1.250x (pooled; last comparison 1.200x, p10..p90 1.150..1.240)"
    final["independent_speedup"] = 1.25
    row = {r[0]: r[2] for r in summary_grid({"baseline_ms": 10.0, "final": final}).rows}
    assert row["speedup (interleaved)"] == "1.250x (p10..p90 1.150..1.240)"
