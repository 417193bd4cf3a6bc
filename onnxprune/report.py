"""Report: what people read, rendered from the plain report data (``TargetResult.to_dict()``, the
ratio report, the analysis rows): the numbers every view reads, console tables, the JSON bits
and the report data of a run; the figures are :mod:`onnxprune.figures`, the HTML page
:mod:`onnxprune.page`.

One story: every latency a view shows derives from the run's one ``baseline_ms`` and interleaved
speedups (``ms = baseline_ms / speedup`` wherever a field is missing, :func:`figures`), and the
console and the HTML page render the very same cells (:class:`Grid`), so the tables, the JSON,
the plots and the page cannot contradict each other. Fields this module does not know are
ignored; missing optional ones leave their row, column or section out (never an empty column).
"""

from __future__ import annotations

import html
import json
import math
import os
import platform
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from . import runtimes, search
from .distill import summary as distill_summary
from .graph import ChannelGraph
from .inputs import graph_inputs
from .profile import GroupProfile

if TYPE_CHECKING:
    from .api import PruneRun

console = Console(stderr=False)


# -- the numbers every view reads --------------------------------------------------------------

@dataclass
class LatencyStory:
    """A run's latency story: one baseline, the target, the final model's interleaved speedup.
    ``ms`` values are ``baseline_ms / speedup``; None where the run has no such figure."""

    baseline_ms: float | None
    target_ms: float | None
    target_speedup: float | None
    speedup: float | None
    ms: float | None
    ratio_p10: float | None
    ratio_p90: float | None

    @property
    def met(self) -> bool | None:
        """Whether the final model meets the target (speedup >= target speedup)."""
        if self.speedup is None or self.target_speedup is None:
            return None
        return self.speedup >= self.target_speedup


def latency_story(data: dict) -> LatencyStory:
    """The latency figures of one report (tolerant of older field names). A run whose
    ``run.goal`` names no latency target (``--max-drop`` alone, ``--ratio``) has none."""
    base = data.get("baseline_ms")
    ts, tm = data.get("target_speedup"), data.get("target_ms")
    goal = (data.get("run") or {}).get("goal")
    if goal is not None and not {"speedup", "target_ms", "speedups"} & set(goal):
        ts = tm = None
    if ts is None and tm and base:
        ts = base / tm
    if tm is None and ts and base:
        tm = base / ts
    f = data.get("final") or {}
    sp = f.get("speedup", f.get("speedup_interleaved"))
    ms = f.get("ms")
    if ms is None and sp and base:
        ms = base / sp
    return LatencyStory(base, tm, ts, sp, ms, f.get("ratio_p10"), f.get("ratio_p90"))


def point_ms(point: dict, baseline_ms: float | None) -> float | None:
    """A judged candidate's latency: its ``ms``, else ``baseline_ms / speedup``."""
    if point.get("ms") is not None:
        return point["ms"]
    sp = point.get("speedup")
    return baseline_ms / sp if sp and baseline_ms else None


def fidelity_kept(point: dict) -> float | None:
    """A judged point's fidelity kept (1 - its drop), None when it was not judged."""
    return None if point.get("drop") is None else 1.0 - point["drop"]


def fidelity_of(data: dict) -> dict | None:
    """The final model's held-out fidelity (``quality.fidelity``), or None without data."""
    return (data.get("quality") or {}).get("fidelity")


def is_share(fid: dict | None) -> bool:
    """Whether ``1 - drop`` is a share of samples (agreement), not a metric or a cosine."""
    return bool(fid) and (fid.get("metric") is None or fid.get("baseline_metric") is None) and (
        fid.get("agreement") is not None or fid.get("neighbours") is not None)


def drop_meaning(fid: dict | None) -> str:
    """What ``1 - drop`` is for this run's fidelity (see ``fidelity.Fidelity.drop``)."""
    if not fid:
        return "fidelity"
    if fid.get("metric") is not None and fid.get("baseline_metric") is not None:
        return "1 - drop of your evaluate() metric"
    if fid.get("agreement") is not None:
        return "top-1 agreement with the original"
    if fid.get("neighbours") is not None:
        return "nearest-neighbour agreement"
    return "worst output cosine"


def share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def num_text(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def ms_text(x: float | None) -> str:
    return num_text(x, ".3f")


def x_text(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}x"


# -- tables: one Grid of strings, rendered to the console or to HTML ----------------------------

@dataclass
class Grid:
    """A table as strings: ``text`` columns (names) are left-aligned and wrap; the others are
    figures, right-aligned. ``note``: one line under the table."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    text: tuple[int, ...] = (0,)
    note: str = ""


def rich_table(grid: Grid) -> Table:
    """The console view: names wrap (fold), never cut."""
    table = Table(title=grid.title, caption=grid.note or None, caption_justify="left")
    for i, col in enumerate(grid.columns):
        table.add_column(col, justify="left" if i in grid.text else "right", overflow="fold")
    for row in grid.rows:
        table.add_row(*row)
    return table


def print_grid(grid: Grid) -> None:
    console.print(rich_table(grid))


def html_table(grid: Grid) -> str:
    """The HTML view of the same cells; names may break after each ``/``."""
    def cell(tag: str, i: int, text: str) -> str:
        cls = ' class="t"' if i in grid.text else ""
        body = html.escape(text).replace("/", "/<wbr>") if i in grid.text else html.escape(text)
        return f"<{tag}{cls}>{body}</{tag}>"

    head = ("<thead><tr>" + "".join(cell("th", i, c) for i, c in enumerate(grid.columns))
            + "</tr></thead>") if any(grid.columns) else ""
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>"
                   for row in grid.rows)
    note = f'<p class="note">{html.escape(grid.note)}</p>' if grid.note else ""
    return (f"<table><caption>{html.escape(grid.title)}</caption>{head}"
            f"<tbody>{body}</tbody></table>{note}")


def _counted(group) -> bool:
    """Groups the analysis counts: channel groups of the model (a graph input's channels are
    not a group the model computes)."""
    return any(s.op_type != "Input" for s in group.sources)


def groups_table(g: ChannelGraph, precisions: dict[str, str] | None = None) -> list[dict]:
    """One row per channel group: members, width, prunable channels, importance, frozen reason.
    ``first_quarter_share``: the share of the group's channel importance held by the quarter of
    its channels removed first (25% = all alike; lower = cheap to cut), None when frozen. With
    ``precisions`` (a QDQ model's, node name -> ``int8``/``fp32``): ``precision``, what the
    group's weight-bearing members compute in (see :func:`group_precision`)."""
    rows = []
    spaces = g.group_spaces()
    for group in g.groups:
        if not _counted(group):
            continue
        imp = group.importance if group.importance is not None else np.zeros(group.width)
        mine = set(spaces[group.id])
        maps = sorted({f"{a[0]} -> {b[0]}: {g.spaces.edges[a, b]['how']}"
                       for a, b in g.spaces.edges(mine) if a in mine and b in mine})
        quarter = None
        if len(group.prunable) and group.importance is not None and imp.sum() > 0:
            cut = max(1, group.width // 4)
            cut = min(cut, len(group.prunable))
            quarter = 1.0 - search.kept_importance(group, group.width - cut) / float(imp.sum())
        rows.append({
            "id": group.id,
            "name": group.name,
            "sources": [s.node for s in group.sources],
            "members": sorted({f"{p.node}:{p.param}[axis {p.axis}]" for p in group.members}),
            "width": group.width,
            "prunable": len(group.prunable),
            "importance_mean": float(imp.mean()) if len(imp) else 0.0,
            "importance_min": float(imp.min()) if len(imp) else 0.0,
            "first_quarter_share": quarter,
            "frozen": group.frozen_reason,
            "spaces": [f"{t}[axis {a}]" for t, a in spaces[group.id]],
            "index_maps": maps,
        })
        if precisions:
            rows[-1]["precision"] = group_precision(group, precisions)
    return rows


def group_precision(group, precisions: dict[str, str]) -> str:
    """``int8`` or ``fp32`` when every weight-bearing node among the group's sources and
    members computes in it, else the count of each (``int8 2, fp32 1``); ``-`` when none
    bears a weight."""
    nodes = {s.node for s in group.sources} | {p.node for p in group.members}
    counts: dict[str, int] = {}
    for name in sorted(nodes):
        if name in precisions:
            counts[precisions[name]] = counts.get(precisions[name], 0) + 1
    if len(counts) <= 1:
        return next(iter(counts), "-")
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: kv[0] != "int8"))


def analysis_summary(rows: list[dict]) -> dict:
    """Counts over exactly the rows the analysis lists."""
    channels = sum(r["width"] for r in rows)
    prunable = sum(r["prunable"] for r in rows)
    return {"groups": len(rows), "prunable_groups": sum(1 for r in rows if r["prunable"]),
            "channels": channels, "prunable_channels": prunable,
            "prunable_share": prunable / channels if channels else 0.0}


def analysis_grid(rows: list[dict]) -> Grid:
    """The analysis table; a ``precision`` column where the rows have one (a QDQ model)."""
    s = analysis_summary(rows)
    shown = any("precision" in r for r in rows)
    grid = Grid("channel groups", ["id", "name", "width", "prunable", "weights", "first 25% cut hold",
                                   *(["precision"] if shown else []), "frozen because"],
                text=(1, 6, 7) if shown else (1, 6),
                note=f"{s['prunable_groups']}/{s['groups']} groups prunable, {s['prunable_channels']}/"
                     f"{s['channels']} channels ({s['prunable_share']:.0%}). weights: coupled weight "
                     "slices; first 25% cut hold: share of the group's channel importance held by "
                     "the quarter of its channels removed first (25% = all alike, lower = cheap to cut)")
    for r in rows:
        grid.rows.append([str(r["id"]), r["name"], str(r["width"]), str(r["prunable"]),
                          str(len(r["members"])), share(r["first_quarter_share"]),
                          *([r.get("precision", "-")] if shown else []), r["frozen"] or "-"])
    return grid


def print_analysis(g: ChannelGraph, as_json: bool, precisions: dict[str, str] | None = None) -> None:
    rows = groups_table(g, precisions)
    if as_json:
        print(json.dumps({"summary": analysis_summary(rows), "groups": rows}, indent=2))
        return
    print_grid(analysis_grid(rows))


def print_kv(title: str, rows: list[tuple[str, ...]],
             columns: tuple[str, ...] = ("", "before", "after")) -> None:
    """A small table: a label column, then figures (before/after by default)."""
    print_grid(Grid(title, list(columns), [list(r) for r in rows]))


def print_kv_single(title: str, timing) -> None:
    """One model's latency statistics."""
    print_grid(Grid(title, ["median ms", "p90 ms", "min ms", "spread", "rounds"],
                    [[f"{timing.median_ms:.3f}", f"{timing.p90_ms:.3f}", f"{timing.min_ms:.3f}",
                      f"{timing.spread:.1%}", str(timing.runs)]], text=()))


def print_profiles(profs: list[GroupProfile]) -> None:
    """Per group: width, layers, latency at full width, steps and candidate widths."""
    grid = Grid("latency staircases (sum over the layers each group touches)",
                ["group", "name", "width", "layers", "ms @ full", "ms @ min", "candidate widths"],
                text=(1, 6))
    for p in profs:
        full = p.curve.get(p.width)
        low = p.curve[min(p.curve)] if p.curve else None
        grid.rows.append([str(p.group), p.name, str(p.width), str(len(p.layers)), ms_text(full), ms_text(low),
                          " ".join(map(str, p.candidates))])
    print_grid(grid)


# -- a latency-targeted run --------------------------------------------------------------------

def _measured_values(data: dict) -> bool:
    """Whether the search kept least measured distortion (else summed importance)."""
    return data.get("sensitivity") is not None


def summary_grid(data: dict, title: str | None = None) -> Grid:
    """Before/after: latency from the one baseline, speedup, sizes, zero-filter error."""
    fig = latency_story(data)
    f = data.get("final") or {}
    q = data.get("quality") or {}
    if title is None:
        title = (f"target {ms_text(fig.target_ms)} ms ({fig.target_speedup:.3f}x)"
                 if fig.target_ms is not None and fig.target_speedup else "before and after")
    grid = Grid(title, ["", "before", "after"])
    if fig.speedup is not None:
        band = (f" (p10..p90 {fig.ratio_p10:.3f}..{fig.ratio_p90:.3f})"
                if fig.ratio_p10 is not None and fig.ratio_p90 is not None else "")
        last = f.get("independent_speedup")
        pooled = bool(band) and last is not None and abs(last - fig.speedup) > 5e-4
        if pooled:  # the band is the last comparison's alone
            band = f" (last {x_text(last)}, p10..p90 {fig.ratio_p10:.3f}..{fig.ratio_p90:.3f})"
        grid.rows += [["latency ms (baseline / speedup)", ms_text(fig.baseline_ms), ms_text(fig.ms)],
                      ["speedup (interleaved)", "", x_text(fig.speedup) + band]]
        grid.note = ("speedup: median over rounds that time the original and the pruned model in "
                     "turn" + ("; pooled over every comparison of the chosen model, the last one "
                               "in brackets" if pooled else "")
                     + "; latency: the run's one baseline divided by it")
    for label, key in (("parameters", "params"), ("MACs", "macs")):
        before = f.get(f"{key}_before", q.get(f"{key}_before"))
        after = f.get(f"{key}_after", q.get(f"{key}_after"))
        if before is not None:
            grid.rows.append([label, f"{before:,}", f"{after:,}"])
    if q.get("channels_removed") is not None:
        grid.rows.append(["channels removed", "", f"{q['channels_removed']:,}"])
    zf = f.get("zero_filter_error", q.get("zero_filter_error"))
    if zf is not None:
        grid.rows.append(["zero-filter error", "", f"{zf:.1e}"])
    return grid


def groups_grid(data: dict, changed_only: bool = True) -> Grid:
    """Per group: width before -> after and what the search valued."""
    measured = _measured_values(data)
    title = "predicted distortion" if measured else "importance kept"
    grid = Grid(("groups changed" if changed_only else "groups")
                + f" (width before -> after, {title})", ["group", "name", "width", title], text=(1,))
    for row in data.get("groups") or []:
        if changed_only and row["width_after"] >= row["width_before"]:
            continue
        value = (num_text(row.get("distortion"), ".3g") if measured
                 else share(row.get("importance_kept")))
        grid.rows.append([str(row["group"]), row["name"],
                          f"{row['width_before']} -> {row['width_after']}", value])
    return grid


def loop_grid(data: dict) -> Grid:
    """The hardware loop: each knapsack answer measured (interleaved with the original)."""
    measured = _measured_values(data)
    title = "predicted distortion" if measured else "importance kept"
    grid = Grid("hardware in the loop", ["step", "predicted ms", "measured ms", title, "in band"])
    for k, s in enumerate(data.get("loop") or []):
        kept = num_text(-s["importance"], ".3g") if measured else f"{s['importance']:.0f}"
        grid.rows.append(["all at floor" if k == 0 else str(k),
                          "-" if k == 0 else ms_text(s.get("predicted_ms")), ms_text(s.get("measured_ms")),
                          kept, "yes" if s.get("accepted") and k else ""])
    return grid


def print_target(data: dict) -> None:
    """Summary tables of a latency-targeted run (``TargetResult.to_dict()`` plus ``run``)."""
    if data.get("final") is None:
        return
    print_grid(groups_grid(data))
    print_grid(loop_grid(data))
    print_grid(summary_grid(data))
    shapes = (data.get("run") or {}).get("input_shapes")
    if shapes:
        console.print(f"measured at input shapes {shapes_text(shapes)}: the speedup holds for these "
                      "shapes (another sequence length or batch: profile it with --shape)")


def input_shapes(g: ChannelGraph) -> dict[str, list[int]]:
    """The graph inputs' concrete shapes every latency was measured at."""
    names = [i.name for i in graph_inputs(g.model)]
    return {n: list(g.shapes[n]) for n in names if n in g.shapes}


def shapes_text(shapes: dict[str, list[int]]) -> str:
    """``x 1x3x224x224, mask 1x128``."""
    return ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in shapes.items())


# -- fidelity -----------------------------------------------------------------------------------

def _worst(d: dict, key: str, pick) -> float | None:
    values = (d.get(key) or {}).values()
    return pick(values) if values else None


# (column, how to read it from a fidelity dict, how to print it)
FIDELITY_COLUMNS = (
    ("top-1 agreement", lambda d: d.get("agreement"), share),
    ("top-5", lambda d: d.get("top5"), share),
    ("embedding cosine", lambda d: d.get("embedding_cosine"), num_text),
    ("NN agreement", lambda d: d.get("neighbours"), share),
    ("evaluate()", lambda d: d.get("metric"), num_text),
    ("distortion", lambda d: d.get("distortion"), lambda x: num_text(x, ".3g")),
    ("min cosine", lambda d: _worst(d, "cosine", min), num_text),
    ("max rel. L2", lambda d: _worst(d, "rel_l2", max), num_text),
)


def _fidelity_grid(title: str, first: str, rows: list[tuple[str, dict]], extra: str = "") -> Grid:
    """Fidelity rows (label, fidelity dict); only the columns some row has a value for."""
    cols = [c for c in FIDELITY_COLUMNS if any(c[1](d) is not None for _, d in rows)]
    grid = Grid(title, [first] + [c[0] for c in cols] + ([extra] if extra else []))
    for label, d in rows:
        cells = [label] + [c[2](c[1](d)) for c in cols]
        if extra:
            cells.append("yes" if d.get("kept") else "no")
        grid.rows.append(cells)
    return grid


def held_out_name(quality: dict) -> str:
    """What the fidelity was judged on: the user's --val data or held-out calibration clusters."""
    fid = quality.get("fidelity") or {}
    return "--val data" if fid.get("data") == "val" else "held-out calibration samples"


def interval_note(quality: dict) -> str:
    """The held-out agreement with its 95% interval over clusters of near-duplicates."""
    fid = quality.get("fidelity") or {}
    if not fid.get("interval"):
        return ""
    what = "top-1 agreement" if fid.get("agreement") is not None else "nearest-neighbour agreement"
    value = fid.get("agreement") if fid.get("agreement") is not None else fid.get("neighbours")
    lo, hi = fid["interval"]
    return (f"{what} {share(value)} on {fid.get('samples')} {held_out_name(quality)} in "
            f"{fid.get('clusters')} distinct clusters: 95% interval {share(lo)}..{share(hi)}")


def fidelity_grid(quality: dict) -> Grid | None:
    """The final model's fidelity on held-out calibration data or ``--val`` data."""
    if not isinstance(quality.get("fidelity"), dict):
        return None
    grid = _fidelity_grid("fidelity of the pruned model (vs the original's outputs)", "data",
                          [(held_out_name(quality), quality["fidelity"])])
    fid = quality["fidelity"]
    notes = [interval_note(quality)]
    if fid.get("metric") is not None and fid.get("baseline_metric") is not None:
        notes.append(f"evaluate(): {fid['baseline_metric']:.4f} -> {fid['metric']:.4f}")
    grid.note = "; ".join(n for n in notes if n)
    return grid


def quantizer_grid(data: dict) -> Grid | None:
    """The chosen model beside onnxruntime's own quantizer of the unpruned model, measured in
    the same run on the same data (``data["quantizer"]``, :func:`onnxprune.pipeline.runtime_quantizer`):
    speedup and held-out fidelity of each; None without those rows."""
    rows = data.get("quantizer") or []
    quality = data.get("quality") or {}
    if not rows or not isinstance(quality.get("fidelity"), dict):
        return None
    labelled = [(f"onnxprune {quality.get('precision', 'fp32')}", quality["fidelity"],
                 (data.get("final") or {}).get("speedup"))]
    labelled += [(f"ORT quantizer {r['method']}", r["fidelity"], r["speedup"]) for r in rows]
    grid = _fidelity_grid(f"beside onnxruntime's own int8 quantizer (fidelity on {held_out_name(quality)})",
                          "model", [(label, fid) for label, fid, _ in labelled])
    grid.columns.insert(1, "speedup")
    for row, (_, _, speedup) in zip(grid.rows, labelled):
        row.insert(1, x_text(speedup))
    grid.note = ("the quantizer: the unpruned model, QDQ, per-channel int8 weights, uint8 "
                 "activations, calibrated on the same samples")
    return grid


def recovery_grid(quality: dict) -> Grid | None:
    """Held-out fidelity after each recovery step, and whether the step was kept."""
    steps = (quality.get("recovery") or {}).get("steps")
    if not steps:
        return None
    grid = _fidelity_grid(f"recovery steps (fidelity on {held_out_name(quality)})", "step",
                          [(s["step"], s) for s in steps], extra="kept")
    notes = [interval_note(quality)]  # and what gradient recovery did: steps, time, why it stopped
    notes += [distill_summary(s["distill"]) for s in steps if isinstance(s.get("distill"), dict)]
    grid.note = "; ".join(n for n in notes if n)
    return grid


def print_quality(quality: dict) -> None:
    """Fidelity and recovery steps, when calibration data was given."""
    steps = recovery_grid(quality)
    grid = steps or fidelity_grid(quality)  # the fidelity grid's note carries the evaluate() line
    if grid is not None:
        print_grid(grid)
    fid = quality.get("fidelity") or {}
    if steps and fid.get("metric") is not None and fid.get("baseline_metric") is not None:
        console.print(f"evaluate(): {fid['baseline_metric']:.4f} -> {fid['metric']:.4f}")


def frozen_rows(data: dict) -> list[list[str]]:
    """Groups left at full width and why: by the analysis, then by the rewrite proof."""
    rows = [[str(f["group"]), f.get("name", ""), str(f.get("width", "")), f["reason"]]
            for f in (data.get("analysis") or {}).get("frozen", [])]
    names = {r["group"]: r["name"] for r in data.get("groups") or []}
    rows += [[str(f["group"]), names.get(f["group"], ""), "", f"rewrite not proven: {f['reason']}"]
             for f in (data.get("quality") or {}).get("frozen_groups", [])]
    return rows


def frozen_grid(data: dict) -> Grid:
    return Grid("frozen groups (left at full width) and why", ["group", "name", "width", "why"],
                frozen_rows(data), text=(1, 3))


def print_frozen(quality: dict) -> None:
    """The groups left unpruned because their rewrite could not be proven, with why."""
    for f in quality.get("frozen_groups", []):
        console.print(f"group {f['group']} left unpruned: {f['reason']}")


def frontier_grid(datas: list[dict]) -> Grid:
    """One row per operating point: target, measured speedup, latency, held-out fidelity."""
    grid = Grid("measured frontier (latency = baseline / speedup; fidelity on held-out "
                "calibration data)", ["target", "measured speedup", "ms", "target ms",
                                      "top-1 agreement", "top-5", "distortion"])
    for data in datas:
        fig = latency_story(data)
        fid = fidelity_of(data) or {}
        target = f"{fig.target_speedup:.3g}x" if fig.target_speedup else "-"
        if fig.speedup is None:
            grid.rows.append([target, "already met", ms_text(fig.baseline_ms), ms_text(fig.target_ms),
                              "-", "-", "-"])
            continue
        grid.rows.append([target, x_text(fig.speedup), ms_text(fig.ms), ms_text(fig.target_ms),
                          share(fid.get("agreement")), share(fid.get("top5")),
                          num_text(fid.get("distortion"), ".3g")])
    if datas and latency_story(datas[0]).baseline_ms:
        grid.note = f"baseline {ms_text(latency_story(datas[0]).baseline_ms)} ms, measured once for all targets"
    return grid


def print_frontier(datas: list[dict]) -> None:
    print_grid(frontier_grid(datas))


def tradeoff_grid(data: dict) -> Grid:
    """Every judged candidate (built, recovered, measured), fastest first."""
    base = latency_story(data).baseline_ms
    fid = fidelity_of(data)
    fmt = share if is_share(fid) else num_text
    grid = Grid("judged candidates (each built, recovered, timed against the original)",
                ["ms", "speedup", drop_meaning(fid), "top-5", "distortion", "chosen"], text=())
    for p in sorted(data.get("tradeoff") or [], key=lambda p: point_ms(p, base) or 0.0):
        ms = point_ms(p, base)
        grid.rows.append([ms_text(ms), x_text(base / ms if base and ms else p.get("speedup")),
                          fmt(fidelity_kept(p)), share(p.get("top5")), num_text(p.get("distortion"), ".3g"),
                          "yes" if p.get("chosen") else ""])
    return grid


# -- run details (command line, runtime and machine) -------------------------------------------

def run_info(g: ChannelGraph, argv: list[str], source_key: str | None = None,
             goal: dict | None = None) -> dict:
    """What a report needs to be reproduced: the command, what was asked (``goal``: speedup,
    target_ms, speedups, ratio, max_drop), the latency source (runtime, options, device), this
    machine, the input shapes latency was measured at, versions, the time."""
    import importlib.metadata

    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return {"command": shlex.join(["onnxprune", *argv]), "goal": goal or {}, "source": source_key,
            "machine": f"{runtimes.device_name(runtimes.RuntimeConfig())}, {os.cpu_count()} cores, "
                       f"{platform.platform()}",
            "input_shapes": input_shapes(g), "onnxprune": version("onnxprune"),
            "onnxruntime": version("onnxruntime"), "python": platform.python_version(),
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def analysis_info(g: ChannelGraph) -> dict:
    """The analysis' counts and the groups it froze (with why)."""
    rows = groups_table(g)
    return {"summary": analysis_summary(rows),
            "frozen": [{"group": r["id"], "name": r["name"], "width": r["width"], "reason": r["frozen"]}
                       for r in rows if r["frozen"] and not r["prunable"]]}


# -- what the commands print and report (cli.py hands its results here) ----------------------

def run_details(g: ChannelGraph, argv: list[str], source_key: str | None, **goal) -> dict:
    """How a report was made: command, what was asked (``goal``, None values dropped), runtime
    and machine, input shapes (``run``), and the analysis' frozen groups (``analysis``)."""
    goal = {k: v for k, v in goal.items() if v is not None}
    return {"run": run_info(g, argv, source_key, goal), "analysis": analysis_info(g)}


def prune_data(run: PruneRun, argv: list[str]) -> dict:
    """The report of ``onnxprune prune``: the target run's figures, or the ratio run's quality
    and quick interleaved timing; then :func:`run_details`."""
    target, max_drop, g = run.job.target, run.job.goal.max_drop, run.prep.graph
    key = run.source.key() if run.source else None
    if target.ratio is None:
        return {**run.result.to_dict(g), **run_details(g, argv, key, target_ms=target.target_ms,
                                                       speedup=target.target_speedup,
                                                       max_drop=max_drop)}
    data = {"ratio": target.ratio, "quality": run.result.to_dict()}
    cmp = run.latency
    if cmp is not None:
        data["baseline_ms"] = cmp.a.median_ms
        data["final"] = {"speedup": cmp.speedup, "ms": cmp.a.median_ms / cmp.speedup,
                         "ratio_p10": cmp.ratio_p10, "ratio_p90": cmp.ratio_p90}
    return {**data, **run_details(g, argv, key, ratio=target.ratio, max_drop=max_drop)}


def print_prune(data: dict, title: str, output: str) -> None:
    """What ``onnxprune prune`` prints once ``output`` is written (``title``: in -> out)."""
    if "ratio" in data:
        print_quality(data["quality"])
        print_frozen(data["quality"])
        print_grid(summary_grid(data, title))
    elif data["already_met"]:
        console.print(f"the model already meets the target: {data['baseline_ms']:.3f} ms <= "
                      f"{data['target_ms']:.3f} ms; wrote an unchanged copy to {output}")
    else:
        print_target(data)
        print_quality(data["quality"])
        grid = quantizer_grid(data)
        if grid is not None:
            print_grid(grid)
        print_frozen(data["quality"])


def print_warnings(lines: list[str]) -> None:
    """The run's warnings, one stderr line each, after its results (each once)."""
    for line in dict.fromkeys(lines):
        click.echo(f"onnxprune: warning: {line}", err=True)


def print_unchecked(value: str) -> None:
    """The one warning of a successful run without calibration data (printed last, so a failing
    run still prints only its error line)."""
    how = ("cuts were ranked by output distortion on synthetic images" if value == "sensitivity"
           else "cuts were ranked by weight norms")
    click.echo(f"onnxprune: warning: no --calib: accuracy was not checked; {how}", err=True)


def bench_json(config_key: str, timing=None, cmp=None, fid=None, **names) -> str:
    """``bench --json``: one model's timing, or the interleaved comparison (and fidelity)."""
    if cmp is None:
        return json.dumps({**names, "config": config_key, **timing.as_dict()}, indent=2)
    return json.dumps({**names, "config": config_key, "speedup": cmp.speedup,
                       "ratio_p10": cmp.ratio_p10, "ratio_p90": cmp.ratio_p90, "rounds": cmp.rounds,
                       "timing_a": cmp.a.as_dict(), "timing_b": cmp.b.as_dict(),
                       "fidelity": fid.as_dict() if fid else None}, indent=2)


def print_comparison(cmp, fid=None, title: str = "", precisions: tuple[str, str] = ("", "")) -> None:
    """``bench A B``: the interleaved A/B table (with what each model computes its weights in,
    when given), and B's fidelity to A (``title``) when known."""
    print_kv("interleaved A/B", [
        *([("precision", *precisions)] if any(precisions) else []),
        ("median ms", f"{cmp.a.median_ms:.3f}", f"{cmp.b.median_ms:.3f}"),
        ("p90 ms", f"{cmp.a.p90_ms:.3f}", f"{cmp.b.p90_ms:.3f}"),
        ("spread (p90-p10)/median", f"{cmp.a.spread:.1%}", f"{cmp.b.spread:.1%}"),
        ("speedup A/B (median of rounds)", "", f"{cmp.speedup:.3f}x"),
        ("ratio p10..p90", "", f"{cmp.ratio_p10:.3f}..{cmp.ratio_p90:.3f}"),
    ], columns=("", "A", "B"))
    if fid is None:
        return
    rows = [("mean cosine of outputs (worst output)", f"{min(fid.cosine.values()):.4f}")]
    if fid.agreement is not None:
        rows = [("top-1 agreement (B predicts A's class)", share(fid.agreement)),
                ("top-5 (A's class in B's top 5)", share(fid.top5)), *rows]
    if fid.neighbours is not None:
        rows += [("sentence-embedding cosine (mean-pooled)", f"{fid.embedding_cosine:.4f}"),
                 ("nearest-neighbour agreement", share(fid.neighbours))]
    print_kv(title, rows, columns=("", "B"))


def profile_json(run, config_key: str, source_key: str) -> str:
    """``profile --json``: the run's counts and every group's curve."""
    return json.dumps({"config": config_key, "source": source_key,
                       "seconds": run.seconds, "measured": run.measured, "cached": run.cached,
                       "builds": run.builds, "build_seconds": run.build_seconds,
                       "groups": [p.as_dict() for p in run.groups]}, indent=2)


def print_profile_run(run, source_key: str) -> None:
    """``profile``: every group's staircase, then what was measured and what came from cache."""
    print_profiles(run.groups)
    console.print(f"{len(run.groups)} groups in {run.seconds:.1f} s; {run.measured} new "
                  f"measurements, {run.cached} from cache; {run.builds} sessions built in "
                  f"{run.build_seconds:.1f} s ({source_key})")

def run_grid(data: dict) -> Grid:
    run = data.get("run") or {}
    rows = [["command", run.get("command")], ["latency measured on", run.get("source")],
            ["machine", run.get("machine")],
            ["input shapes", shapes_text(run["input_shapes"]) if run.get("input_shapes") else None],
            ["versions", " ".join(f"{k} {run[k]}" for k in ("onnxprune", "onnxruntime", "python")
                                  if run.get(k))],
            ["profiling", f"{data['profile_seconds']:.1f} s" if data.get("profile_seconds") else None],
            ["written", run.get("when")]]
    return Grid("run", ["", ""], [r for r in rows if r[1]], text=(0, 1))
