"""The HTML page carries the JSON's numbers (cards, tables, the frozen groups, the recovery
steps, the run), is self-contained (inline images, no scripts) and renders in a real headless
browser; ratio, --val and frontier pages."""

import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.image
import onnx
import pytest
import tiny

from onnxprune import cli, report
from onnxprune.page import frontier_html, run_html


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


def test_html_report_carries_the_json_numbers(report_run):
    data, page = report_run["json"], _Page()
    page.feed(report_run["html"])
    fig = report.latency_story(data)
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


def test_html_report_renders_in_headless_chromium(report_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    page = (report_run["dir"] / "r.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1800", page],
                   capture_output=True, timeout=120, check=True)
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    fig = report.latency_story(report_run["json"])
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


def test_val_fidelity_and_frontier_pages(report_run):
    data = report_run["json"]
    assert report.held_out_name(data["quality"]) == "held-out calibration samples"
    val = {**data["quality"]["fidelity"], "agreement": 0.75, "top5": 0.9, "data": "val"}
    with_val = {**data, "quality": {**data["quality"], "fidelity": val}}
    page = _Page()
    page.feed(run_html(with_val))
    assert page.cards["agreement_fidelity"] == 0.75
    rows = {r[0]: r for r in page.rows}
    assert rows["--val data"][1:3] == ["75.0%", "90.0%"]
    # the frontier page: one row and one details section per target, the same figures
    other = {**data, "target_ms": data["baseline_ms"] / 1.2, "target_speedup": 1.2}
    text = frontier_html([other, data])
    page = _Page()
    page.feed(text)
    fig = report.latency_story(data)
    assert [r[:3] for r in page.rows if r[0] in ("1.2x", "1.3x")] == [
        [f"{t}x", f"{fig.speedup:.3f}x", f"{fig.ms:.3f}"] for t in ("1.2", "1.3")]
    assert text.count("<details>") == 2 and "script" not in page.tags
