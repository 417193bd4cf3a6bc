"""The ``--report`` file: one self-contained HTML page (cards, the tables of
:mod:`onnxprune.report` rendered from the same :class:`~onnxprune.report.Grid` cells as the
console, the figures of :mod:`onnxprune.figures` embedded as PNG), or the report data as JSON.
"""

from __future__ import annotations

import base64
import html
import json
import os

from .figures import figure_png, frontier_figure, tradeoff_figure
from .report import (
    Grid,
    drop_meaning,
    fidelity_grid,
    fidelity_of,
    frontier_grid,
    frozen_grid,
    groups_grid,
    html_table,
    latency_story,
    loop_grid,
    ms_text,
    num_text,
    recovery_grid,
    run_grid,
    share,
    summary_grid,
    tradeoff_grid,
    x_text,
)

# -- the HTML page --------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d1d1f;
margin:0 auto;max-width:1080px;padding:20px 28px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #ddd;
padding-bottom:3px}.sub{color:#555;margin:0 0 14px;overflow-wrap:anywhere}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #d7d7db;border-radius:8px;padding:8px 14px;min-width:150px;background:#fafafa}
.card .k{font-size:12px;color:#555}.card .v{font-size:22px;font-weight:600}.card .s{font-size:12px;color:#555}
.ok{color:#17803d}.bad{color:#c0392b}
table{border-collapse:collapse;margin:6px 0 4px;font-size:13px;min-width:480px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border-bottom:1px solid #e4e4e7;padding:3px 9px;text-align:right;vertical-align:top}
th{background:#f3f3f5}th.t,td.t{text-align:left}td.t{max-width:460px;overflow-wrap:anywhere}
.note{font-size:12px;color:#555;margin:2px 0 10px;max-width:900px}
img{max-width:100%;height:auto;border:1px solid #eee}
code{background:#f3f3f5;padding:1px 4px;border-radius:3px;overflow-wrap:anywhere}
details{margin:8px 0}summary{font-weight:600}
"""


def _card(key: str, label: str, value: str, sub: str = "", raw: float | None = None,
          cls: str = "") -> str:
    attr = f' data-value="{raw!r}"' if raw is not None else ""
    return (f'<div class="card" data-key="{key}"{attr}><div class="k">{html.escape(label)}</div>'
            f'<div class="v {cls}">{html.escape(value)}</div>'
            f'<div class="s">{html.escape(sub)}</div></div>')


def _img(fig, alt: str) -> str:
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _cards(data: dict) -> str:
    fig, q = latency_story(data), data.get("quality") or {}
    cards = []
    if fig.speedup is not None:
        sub = f"target {fig.target_speedup:.3f}x" if fig.target_speedup else ""
        cls = "" if fig.met is None else ("ok" if fig.met else "bad")
        cards.append(_card("speedup", "measured speedup", x_text(fig.speedup), sub, fig.speedup, cls))
        sub = f"from {ms_text(fig.baseline_ms)} ms" + (f", target {ms_text(fig.target_ms)} ms"
                                                  if fig.target_ms is not None else "")
        cards.append(_card("ms", "latency (ms)", ms_text(fig.ms), sub, fig.ms))
    elif data.get("already_met"):
        cards.append(_card("ms", "latency (ms)", ms_text(fig.baseline_ms),
                           f"already meets the target {ms_text(fig.target_ms)} ms", fig.baseline_ms))
    d = q.get("fidelity")
    label = "--val data" if isinstance(d, dict) and d.get("data") == "val" else "held-out"
    if isinstance(d, dict) and d.get("agreement") is not None:
        interval = (f", 95% {share(d['interval'][0])}..{share(d['interval'][1])}"
                    if d.get("interval") else "")
        cards.append(_card("agreement_fidelity", f"top-1 agreement ({label})", share(d["agreement"]),
                           f"top-5 {share(d.get('top5'))}{interval}", d["agreement"]))
    elif isinstance(d, dict) and d.get("neighbours") is not None:
        cards.append(_card("neighbours_fidelity", f"NN agreement ({label})", share(d["neighbours"]),
                           f"embedding cosine {num_text(d.get('embedding_cosine'))}", d["neighbours"]))
    f = data.get("final") or q
    for key, label in (("params", "parameters"), ("macs", "MACs")):
        if f.get(f"{key}_before"):
            before, after = f[f"{key}_before"], f[f"{key}_after"]
            cards.append(_card(key, label, f"{after / before:.0%}", f"{after:,} of {before:,}",
                               after / before))
    return f'<div class="cards">{"".join(cards)}</div>'


def _verdict(data: dict) -> str:
    """One line per constraint asked: the latency target, ``--max-drop``."""
    fig, fid = latency_story(data), fidelity_of(data) or {}
    out = []
    if fig.met is not None:
        word = "met" if fig.met else "missed"
        out.append(f'<p class="{"ok" if fig.met else "bad"}">target {word}: measured '
                   f'{x_text(fig.speedup)} ({ms_text(fig.ms)} ms) against {fig.target_speedup:.3f}x '
                   f'({ms_text(fig.target_ms)} ms), from the one baseline of {ms_text(fig.baseline_ms)} ms</p>')
    limit = ((data.get("run") or {}).get("goal") or {}).get("max_drop")
    if limit is not None and fid.get("drop") is not None:
        ok = fid["drop"] <= limit
        out.append(f'<p class="{"ok" if ok else "bad"}">fidelity drop {fid["drop"]:.4f} '
                   f'({drop_meaning(fid)}) {"within" if ok else "over"} --max-drop {limit:g}</p>')
    return "".join(out)


def _tables(*grids: Grid | None) -> str:
    return "".join(html_table(g) for g in grids if g is not None and g.rows)


def _run_sections(data: dict, plot: bool = True) -> str:
    """Everything one run's page says, below its headline."""
    q = data.get("quality") or {}
    out = [_tables(summary_grid(data, "before and after"))]
    if plot and data.get("tradeoff") and latency_story(data).baseline_ms:
        out.append("<h2>Trade-off</h2>" + _img(tradeoff_figure(data), "latency vs fidelity")
                   + _tables(tradeoff_grid(data)))
    out.append("<h2>Fidelity</h2>" + (_tables(fidelity_grid(q), recovery_grid(q))
                                      or "<p>no calibration data: fidelity was not measured</p>"))
    out.append("<h2>Widths</h2>" + _tables(groups_grid(data, changed_only=False), frozen_grid(data)))
    if data.get("loop"):
        out.append("<h2>Hardware in the loop</h2>" + _tables(loop_grid(data)))
    return "".join(out)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f'</title><meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def _headline(data: dict, what: str) -> str:
    run = data.get("run") or {}
    command = f'<p class="sub"><code>{html.escape(run["command"])}</code></p>' if run.get("command") else ""
    return f"<h1>onnxprune: {html.escape(what)}</h1>{command}"


def run_html(data: dict) -> str:
    """One run's page (a target, --max-drop or --ratio run)."""
    what = "pruning report" if "ratio" not in data else f"ratio {data['ratio']:g} report"
    body = (_headline(data, what) + _cards(data) + _verdict(data) + _run_sections(data)
            + "<h2>Run</h2>" + _tables(run_grid(data)))
    return _page(f"onnxprune {what}", body)


def frontier_html(datas: list[dict]) -> str:
    """The frontier's page: the table and plot of every target, then each target's details."""
    first = datas[0] if datas else {}
    body = [_headline(first, "measured frontier"), _tables(frontier_grid(datas))]
    if any(d.get("tradeoff") for d in datas):
        body.append(_img(frontier_figure(datas), "measured frontier"))
    if datas:
        body.append('<h2>Targets</h2><p class="note">open a target for its widths, fidelity and '
                    "recovery steps</p>")
    for d in datas:
        fig = latency_story(d)
        label = f"target {fig.target_speedup:.3g}x" if fig.target_speedup else "target"
        result = f": measured {x_text(fig.speedup)}, {ms_text(fig.ms)} ms" if fig.speedup else ": already met"
        body.append(f"<details><summary>{html.escape(label + result)}</summary>{_cards(d)}"
                    f"{_run_sections(d, plot=False)}</details>")
    body.append("<h2>Run</h2>" + _tables(run_grid(first)))
    return _page("onnxprune frontier", "".join(body))


def report_text(data: dict | list[dict], path: str) -> str:
    """The ``--report`` file's text: an HTML page for ``.html``/``.htm``, else JSON."""
    if os.path.splitext(path)[1].lower() in (".html", ".htm"):
        return frontier_html(data) if isinstance(data, list) else run_html(data)
    return json.dumps(data, indent=2)
