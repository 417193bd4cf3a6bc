"""Report: what people read, rendered from the plain report data (``TargetResult.to_dict()``, the
ratio report, the analysis rows): console tables, plots, and one self-contained HTML page.

One story: every latency a view shows derives from the run's one ``baseline_ms`` and interleaved
speedups (``ms = baseline_ms / speedup`` wherever a field is missing, :func:`figures`), and the
console and the HTML page render the very same cells (:class:`Grid`), so the tables, the JSON,
the plots and the page cannot contradict each other. Fields this module does not know are
ignored; missing optional ones leave their row, column or section out (never an empty column).
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import os
import platform
import shlex
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from . import backends, runtime, search
from .distill import summary as distill_summary
from .graph import ChannelGraph
from .profile import GroupProfile

if TYPE_CHECKING:
    from .api import PruneRun

console = Console(stderr=False)


# -- the numbers every view reads --------------------------------------------------------------

@dataclass
class Figures:
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


def figures(data: dict) -> Figures:
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
    return Figures(base, tm, ts, sp, ms, f.get("ratio_p10"), f.get("ratio_p90"))


def point_ms(point: dict, baseline_ms: float | None) -> float | None:
    """A judged candidate's latency: its ``ms``, else ``baseline_ms / speedup``."""
    if point.get("ms") is not None:
        return point["ms"]
    sp = point.get("speedup")
    return baseline_ms / sp if sp and baseline_ms else None


def fidelity_of(data: dict) -> dict | None:
    """The final model's held-out fidelity (``quality.fidelity``), or None without data."""
    return (data.get("quality") or {}).get("fidelity")


def _is_share(fid: dict | None) -> bool:
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


def _num(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _ms(x: float | None) -> str:
    return _num(x, ".3f")


def _x(x: float | None) -> str:
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


def groups_table(g: ChannelGraph) -> list[dict]:
    """One row per channel group: members, width, prunable channels, importance, frozen reason.
    ``first_quarter_share``: the share of the group's channel importance held by the quarter of
    its channels removed first (25% = all alike; lower = cheap to cut), None when frozen."""
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
    return rows


def analysis_summary(rows: list[dict]) -> dict:
    """Counts over exactly the rows the analysis lists."""
    channels = sum(r["width"] for r in rows)
    prunable = sum(r["prunable"] for r in rows)
    return {"groups": len(rows), "prunable_groups": sum(1 for r in rows if r["prunable"]),
            "channels": channels, "prunable_channels": prunable,
            "prunable_share": prunable / channels if channels else 0.0}


def analysis_grid(rows: list[dict]) -> Grid:
    s = analysis_summary(rows)
    grid = Grid("channel groups", ["id", "name", "width", "prunable", "weights", "first 25% cut hold",
                                   "frozen because"], text=(1, 6),
                note=f"{s['prunable_groups']}/{s['groups']} groups prunable, {s['prunable_channels']}/"
                     f"{s['channels']} channels ({s['prunable_share']:.0%}). weights: coupled weight "
                     "slices; first 25% cut hold: share of the group's channel importance held by "
                     "the quarter of its channels removed first (25% = all alike, lower = cheap to cut)")
    for r in rows:
        grid.rows.append([str(r["id"]), r["name"], str(r["width"]), str(r["prunable"]),
                          str(len(r["members"])), share(r["first_quarter_share"]), r["frozen"] or "-"])
    return grid


def print_analysis(g: ChannelGraph, as_json: bool) -> None:
    rows = groups_table(g)
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
        grid.rows.append([str(p.group), p.name, str(p.width), str(len(p.layers)), _ms(full), _ms(low),
                          " ".join(map(str, p.candidates))])
    print_grid(grid)


# -- a latency-targeted run --------------------------------------------------------------------

def _measured_values(data: dict) -> bool:
    """Whether the search kept least measured distortion (else summed importance)."""
    return data.get("sensitivity") is not None


def summary_grid(data: dict, title: str | None = None) -> Grid:
    """Before/after: latency from the one baseline, speedup, sizes, zero-filter error."""
    fig = figures(data)
    f = data.get("final") or {}
    q = data.get("quality") or {}
    if title is None:
        title = (f"target {_ms(fig.target_ms)} ms ({fig.target_speedup:.3f}x)"
                 if fig.target_ms is not None and fig.target_speedup else "before and after")
    grid = Grid(title, ["", "before", "after"])
    if fig.speedup is not None:
        band = (f" (p10..p90 {fig.ratio_p10:.3f}..{fig.ratio_p90:.3f})"
                if fig.ratio_p10 is not None and fig.ratio_p90 is not None else "")
        last = f.get("independent_speedup")
        if band and last is not None and abs(last - fig.speedup) > 5e-4:
            # pooled over the loop's comparisons; the band is the last comparison's alone
            band = f" (pooled; last comparison {_x(last)}, p10..p90 {fig.ratio_p10:.3f}..{fig.ratio_p90:.3f})"
        grid.rows += [["latency ms (baseline / speedup)", _ms(fig.baseline_ms), _ms(fig.ms)],
                      ["speedup (interleaved)", "", _x(fig.speedup) + band]]
        grid.note = ("speedup: median over rounds that time the original and the pruned model in "
                     "turn; latency: the run's one baseline divided by it")
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
        value = (_num(row.get("distortion"), ".3g") if measured
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
        kept = _num(-s["importance"], ".3g") if measured else f"{s['importance']:.0f}"
        grid.rows.append(["all at floor" if k == 0 else str(k),
                          "-" if k == 0 else _ms(s.get("predicted_ms")), _ms(s.get("measured_ms")),
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
    names = [i.name for i in runtime.graph_inputs(g.model)]
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
    ("embedding cosine", lambda d: d.get("embedding_cosine"), _num),
    ("NN agreement", lambda d: d.get("neighbours"), share),
    ("evaluate()", lambda d: d.get("metric"), _num),
    ("distortion", lambda d: d.get("distortion"), lambda x: _num(x, ".3g")),
    ("min cosine", lambda d: _worst(d, "cosine", min), _num),
    ("max rel. L2", lambda d: _worst(d, "rel_l2", max), _num),
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
        fig = figures(data)
        fid = fidelity_of(data) or {}
        target = f"{fig.target_speedup:.3g}x" if fig.target_speedup else "-"
        if fig.speedup is None:
            grid.rows.append([target, "already met", _ms(fig.baseline_ms), _ms(fig.target_ms),
                              "-", "-", "-"])
            continue
        grid.rows.append([target, _x(fig.speedup), _ms(fig.ms), _ms(fig.target_ms),
                          share(fid.get("agreement")), share(fid.get("top5")),
                          _num(fid.get("distortion"), ".3g")])
    if datas and figures(datas[0]).baseline_ms:
        grid.note = f"baseline {_ms(figures(datas[0]).baseline_ms)} ms, measured once for all targets"
    return grid


def print_frontier(datas: list[dict]) -> None:
    print_grid(frontier_grid(datas))


def tradeoff_grid(data: dict) -> Grid:
    """Every judged candidate (built, recovered, measured), fastest first."""
    base = figures(data).baseline_ms
    fid = fidelity_of(data)
    fmt = share if _is_share(fid) else _num
    grid = Grid("judged candidates (each built, recovered, timed against the original)",
                ["ms", "speedup", drop_meaning(fid), "top-5", "distortion", "chosen"], text=())
    for p in sorted(data.get("tradeoff") or [], key=lambda p: point_ms(p, base) or 0.0):
        ms = point_ms(p, base)
        grid.rows.append([_ms(ms), _x(base / ms if base and ms else p.get("speedup")),
                          fmt(_y_of(p)), share(p.get("top5")), _num(p.get("distortion"), ".3g"),
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
            "machine": f"{backends.device_name(runtime.RuntimeConfig())}, {os.cpu_count()} cores, "
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
    req, g = run.request, run.prep.graph
    key = run.source.key() if run.source else None
    if req.ratio is None:
        return {**run.result.to_dict(g), **run_details(g, argv, key, target_ms=req.target_ms,
                                                       speedup=req.speedup, max_drop=req.max_drop)}
    data = {"ratio": req.ratio, "quality": run.result.to_dict()}
    cmp = run.latency
    if cmp is not None:
        data["baseline_ms"] = cmp.a.median_ms
        data["final"] = {"speedup": cmp.speedup, "ms": cmp.a.median_ms / cmp.speedup,
                         "ratio_p10": cmp.ratio_p10, "ratio_p90": cmp.ratio_p90}
    return {**data, **run_details(g, argv, key, ratio=req.ratio, max_drop=req.max_drop)}


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


def print_comparison(cmp, fid=None, title: str = "") -> None:
    """``bench A B``: the interleaved A/B table, and B's fidelity to A (``title``) when known."""
    print_kv("interleaved A/B", [
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


# -- plots --------------------------------------------------------------------------------------

def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig, path: str, dpi: int = 110) -> str:
    """Write a figure (PNG) where its directory exists."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def figure_png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


@dataclass
class Mark:
    """A labelled point on a trade-off plot: a chosen model, at its final measurement."""

    ms: float
    y: float
    label: str


def _y_of(point: dict) -> float | None:
    return None if point.get("drop") is None else 1.0 - point["drop"]


def _tradeoff_axes(ax, baseline: float, points: list[dict], targets: list[tuple[float, str]],
                   marks: list[Mark], fid: dict | None) -> None:
    """Judged candidates (measured latency, measured fidelity), the original, target lines and
    the chosen models, on axes padded so that nothing sits on the frame; speedup on top."""
    share_axis = _is_share(fid)
    pts = [(point_ms(p, baseline), _y_of(p)) for p in points]
    pts = [(x, y) for x, y in pts if x is not None and y is not None]
    if pts:
        ax.plot([x for x, _ in pts], [y for _, y in pts], "o", color="tab:blue", alpha=0.7,
                label=f"judged candidates ({len(pts)})")
    ax.plot([baseline], [1.0], "*", color="black", ms=13, label=f"original {baseline:.3f} ms")
    _draw_targets(ax, targets)
    _draw_marks(ax, marks)
    xs = [baseline] + [x for x, _ in pts] + [t for t, _ in targets] + [m.ms for m in marks]
    ys = [1.0] + [y for _, y in pts] + [m.y for m in marks]
    lo, hi = _pad_limits(ax, xs, ys)
    if share_axis:
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    top = ax.secondary_xaxis("top", functions=(lambda x: baseline / np.maximum(x, 1e-9),
                                               lambda s: baseline / np.maximum(s, 1e-9)))
    top.set_xticks(_speedup_ticks(baseline, lo, hi))
    top.set_xlabel("speedup over the original (baseline / ms)", fontsize=8)
    ax.set_xlabel("latency, ms (baseline / measured interleaved speedup)")
    ax.set_ylabel(f"{drop_meaning(fid)} (held-out)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def _draw_targets(ax, targets: list[tuple[float, str]]) -> None:
    """A dashed green vertical line per ``(ms, label)`` target: labelled in the legend when
    there is one target, else each labelled beside its line (rotated, from the top)."""
    for ms, label in targets:
        ax.axvline(ms, color="tab:green", ls="--", lw=1.2, label=label if len(targets) == 1 else None)
        if len(targets) > 1:
            ax.annotate(label, (ms, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                        textcoords="offset points", fontsize=8, color="tab:green", rotation=90,
                        va="top")


def _draw_marks(ax, marks: list[Mark]) -> None:
    """Each chosen model as a red ring around a red dot, labelled beside it (labels alternately
    above and below); the first ring alone carries the legend entry."""
    for k, m in enumerate(marks):
        ax.plot([m.ms], [m.y], "o", ms=12, mfc="none", mec="tab:red", mew=2,
                label="chosen (final A/B measurement)" if k == 0 else None)
        ax.plot([m.ms], [m.y], "o", ms=5, color="tab:red")
        ax.annotate(m.label, (m.ms, m.y), xytext=(8, 10 if k % 2 == 0 else -16),
                    textcoords="offset points", fontsize=8, color="tab:red")


def _pad_limits(ax, xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Set ``ax``'s limits to the range of ``xs`` padded by 12% (10% of the largest when the
    range is empty) and of ``ys`` padded by 12% (at least 0.005; the bottom at least 0.02 below
    the top); return the x limits."""
    lo, hi = min(xs), max(xs)
    pad = 0.12 * (hi - lo) or 0.1 * hi
    ax.set_xlim(lo - pad, hi + pad)
    ylo, yhi = min(ys), max(ys)
    ypad = max(0.12 * (yhi - ylo), 0.005)
    ax.set_ylim(min(ylo - ypad, yhi - 0.02), yhi + ypad)
    return lo - pad, hi + pad


NICE_SPEEDUPS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def _speedup_ticks(baseline: float, lo: float, hi: float, spacing: float = 0.07) -> list[float]:
    """Round speedups whose latencies fall in [lo, hi] ms, at least ``spacing`` of the range
    apart on the latency axis (the speedup axis is not linear)."""
    ticks, last = [], None
    for s in NICE_SPEEDUPS:
        ms = baseline / s
        if lo <= ms <= hi and (last is None or last - ms >= spacing * (hi - lo)):
            ticks.append(s)
            last = ms
    return ticks


def _mark(data: dict, label: str) -> Mark | None:
    fig, fid = figures(data), fidelity_of(data)
    if fig.ms is None or not fid or fid.get("drop") is None:
        return None
    return Mark(fig.ms, 1.0 - fid["drop"], label)


def tradeoff_figure(data: dict):
    """One run: every judged candidate, the original, the target line, the chosen model at its
    final measurement (the same figures as the tables)."""
    fig = figures(data)
    plot = _figure(7.0, 4.4)
    ax = plot.subplots()
    targets = ([(fig.target_ms, f"target {fig.target_ms:.3f} ms ({fig.target_speedup:.2f}x)")]
               if fig.target_ms is not None and fig.target_speedup else [])
    mark = _mark(data, f"chosen: {_ms(fig.ms)} ms, {_x(fig.speedup)}")
    others = [p for p in data.get("tradeoff") or [] if not p.get("chosen")]
    _tradeoff_axes(ax, fig.baseline_ms, others, targets, [mark] if mark else [], fidelity_of(data))
    ax.set_title("measured latency vs measured fidelity", fontsize=10)
    return plot


def frontier_figure(datas: list[dict]):
    """Several targets of one run: all judged candidates, one line per target, each target's
    chosen model labelled with its target and measured speedup."""
    plot = _figure(7.0, 4.4)
    ax = plot.subplots()
    base = figures(datas[0]).baseline_ms if datas else 1.0
    seen, points, marks, targets = set(), [], [], []
    chosen = {(p.get("ms"), p.get("drop")) for d in datas for p in d.get("tradeoff") or []
              if p.get("chosen")}
    for d in datas:
        fig = figures(d)
        if fig.target_ms is not None and fig.target_speedup:
            targets.append((fig.target_ms, f"{fig.target_speedup:.3g}x"))
        mark = _mark(d, f"{fig.target_speedup:.3g}x -> {_x(fig.speedup)}")
        if mark:
            marks.append(mark)
        for p in d.get("tradeoff") or []:
            key = (p.get("ms"), p.get("drop"))
            if key not in seen and key not in chosen:
                seen.add(key)
                points.append(p)
    _tradeoff_axes(ax, base, points, targets, marks, fidelity_of(datas[-1]) if datas else None)
    ax.set_title("measured frontier: target -> measured speedup (green: targets)", fontsize=10)
    return plot


def _wrap_name(name: str, width: int = 36) -> str:
    """A layer path wrapped after its ``/`` separators (long parts split), never cut."""
    tokens, cur = [], ""
    for seg in name.replace("/", "/\0").split("\0"):
        if cur and len(cur) + len(seg) > width:
            tokens.append(cur)
            cur = ""
        cur += seg
        while len(cur) > width:
            tokens.append(cur[:width])
            cur = cur[width:]
    if cur:
        tokens.append(cur)
    return "\n".join(tokens)


def _heatmap_cells(g: ChannelGraph, table) -> tuple[list[int], list[float], dict]:
    """Rows (group ids), columns (kept shares, eighths used by at least a quarter of the rows)
    and cells ``{(row, column): (width, distortion)}``: each measured width goes to the nearest
    column, the closest width winning when two land on one cell."""
    rows = sorted(table.values)
    measured = [(gid, w, v, w / g.groups[gid].width) for gid in rows
                for w, v in table.values[gid].items() if w < g.groups[gid].width]
    eighths = [round(x * 8) / 8 for *_, x in measured]
    common = sorted(s for s in set(eighths) if eighths.count(s) >= max(1, len(rows) / 4))
    shares = common or sorted(set(eighths))
    cells: dict[tuple[int, int], tuple[int, float]] = {}
    for gid, w, v, x in measured:
        j = min(range(len(shares)), key=lambda k: abs(shares[k] - x))
        key = (rows.index(gid), j)
        width = g.groups[gid].width
        if key not in cells or abs(w / width - shares[j]) < abs(cells[key][0] / width - shares[j]):
            cells[key] = (w, v)
    return rows, shares, cells


def heatmap_figure(g: ChannelGraph, table, synthetic: bool = False, decades: float = 4.0):
    """Sensitivity: one row per group (full name, wrapped), one column per kept share, colour =
    log10 of the measured output distortion when only that group is cut that far (the colour
    scale spans the top ``decades``; lower values take its lightest colour). A cell whose width
    is not the column's share says its own share. Blank (hatched) cells: no width there."""
    import matplotlib

    rows, shares, cells = _heatmap_cells(g, table)
    grid = np.full((len(rows), len(shares)), np.nan)
    for (i, j), (_, v) in cells.items():
        grid[i, j] = np.log10(max(v, 1e-12))
    labels = [_wrap_name(f"{gid} {g.groups[gid].name}") for gid in rows]
    lines = sum(label.count("\n") + 1 for label in labels)
    plot = _figure(4.2 + 0.85 * max(len(shares), 1), 1.6 + 0.17 * lines + 0.08 * len(rows))
    ax = plot.subplots()
    finite = grid[np.isfinite(grid)]
    top = float(finite.max()) if finite.size else 0.0
    low = max(float(finite.min()), top - decades) if finite.size else -1.0
    cmap = matplotlib.colormaps["magma_r"].with_extremes(bad="#f2f2f2")
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=low,
                   vmax=max(top, low + 1e-3))
    _label_cells(ax, g, rows, shares, cells, grid, (low, top))
    ax.set_xticks(range(len(shares)), [f"{s:.0%}" for s in shares])
    ax.set_yticks(range(len(rows)), labels, fontsize=6.5)
    ax.set_xlabel("channels kept in the group")
    ax.set_title("output distortion when only this group is cut"
                 + (" (synthetic images)" if synthetic else ""), fontsize=9)
    bar = plot.colorbar(im, ax=ax, shrink=0.8, extend="min" if finite.size and finite.min() < low else "neither")
    bar.set_label("log10 distortion (darker = more sensitive)", fontsize=8)
    _blank_legend(plot)
    return plot


def _label_cells(ax, g: ChannelGraph, rows: list[int], shares: list[float], cells: dict,
                 grid: np.ndarray, scale: tuple[float, float]) -> None:
    """Row by row: hatch each empty cell; write each filled cell's distortion (and its own kept
    share when more than 1% from the column's), white on cells darker than the middle of the
    colour ``scale`` ``(low, top)``, else black."""
    from matplotlib.patches import Rectangle

    low, top = scale
    for i, j in itertools.product(range(len(rows)), range(len(shares))):
        if (i, j) not in cells:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                   edgecolor="#c8c8c8", lw=0))
            continue
        w, v = cells[i, j]
        text = f"{v:.0e}" if v > 0 else "0"
        x = w / g.groups[rows[i]].width
        if abs(x - shares[j]) > 0.01:
            text += f"\n({x:.0%})"
        ax.text(j, i, text, ha="center", va="center", fontsize=6,
                color="white" if grid[i, j] > (low + top) / 2 else "black")


def _blank_legend(plot) -> None:
    """The figure's legend, below the axes: what a blank (hatched) cell means."""
    from matplotlib.patches import Patch

    plot.legend(handles=[Patch(facecolor="#f2f2f2", hatch="///", edgecolor="#c8c8c8",
                               label="blank: the group has no width near that share "
                                     "(narrow group, or frozen channels keep more)")],
                loc="outside lower center", fontsize=7, frameon=False)


def plot_heatmap(g: ChannelGraph, table, directory: str, synthetic: bool = False) -> str:
    """``analyze --plot DIR``: DIR/sensitivity.png (see :func:`heatmap_figure`)."""
    return save_figure(heatmap_figure(g, table, synthetic), os.path.join(directory, "sensitivity.png"))


def step_edges(curve: dict[int, float], rel_tol: float = 0.05, sharpness: float = 3.0,
               window: int = 3, noise: float = 3.0) -> list[int]:
    """Widths where a measured latency curve really steps: the last width ``a`` before a rise to
    the next measured width ``b`` that is ``sharpness`` times steeper than the curve's mean slope
    (a straight line, however steep, has none) and that lasts: the median of the ``window``
    widths from ``b`` up exceeds the median of the ``window`` widths up to ``a`` by more than
    ``rel_tol`` and ``noise`` times the median change between neighbouring widths (a one-point
    spike is no step, nor is jitter)."""
    ws = sorted(curve)
    if len(ws) < 3:
        return []
    ts = [curve[w] for w in ws]
    mean = max((ts[-1] - ts[0]) / (ws[-1] - ws[0]), 0.0)
    jitter = float(np.median(np.abs(np.diff(ts))))
    edges = []
    for i in range(len(ws) - 1):
        rise = ts[i + 1] - ts[i]
        below = float(np.median(ts[max(0, i + 1 - window):i + 1]))
        above = float(np.median(ts[i + 1:i + 1 + window]))
        if (rise / (ws[i + 1] - ws[i]) > sharpness * mean and above > below * (1 + rel_tol)
                and above - below > noise * jitter):
            edges.append(ws[i])
    return edges


def _short(name: str, parts: int = 2) -> str:
    return "/".join(name.strip("/").split("/")[-parts:])


def profiles_figure(profs: list[GroupProfile]):
    """``profile --plot``: one overview figure, a small panel per group (summed latency over
    the kept width, red dots where it steps)."""
    n = max(len(profs), 1)
    cols = min(5, n)
    nrows = math.ceil(n / cols)
    plot = _figure(2.6 * cols, 0.6 + 1.9 * nrows)
    axes = np.atleast_1d(plot.subplots(nrows, cols, squeeze=False)).ravel()
    for ax, p in zip(axes, profs):
        ws = sorted(p.curve)
        ax.plot(ws, [p.curve[w] for w in ws], "-", color="tab:blue", lw=1.2)
        edges = step_edges(p.curve)
        ax.plot(edges, [p.curve[w] for w in edges], "o", color="tab:red", ms=3.5)
        ax.set_title(f"group {p.group}: {textwrap.shorten(_short(p.name), 34, placeholder='...')}",
                     fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_xlim(0, p.width * 1.04)
        ax.grid(alpha=0.25)
    for ax in axes[len(profs):]:
        ax.axis("off")
    plot.supxlabel("channels kept in the group", fontsize=8)
    plot.supylabel("latency, ms (layers the group touches)", fontsize=8)
    plot.suptitle("latency staircases; red: step edges (the width just before latency jumps)",
                  fontsize=9)
    return plot


def group_figure(prof: GroupProfile):
    """``profile --plot-groups``: one group's layers and their sum; step edges of the sum in red,
    the candidate widths the search may choose as ticks at the bottom."""
    plot = _figure(8.5, 3.8)
    ax = plot.subplots()
    ws = sorted(prof.curve)
    ax.plot(ws, [prof.curve[w] for w in ws], "-", color="black", lw=1.8, label="sum")
    names = [lp.layer.node for lp in prof.layers]
    common = os.path.commonprefix(names).rpartition("/")[0] if len(names) > 1 else ""
    for lp in prof.layers:
        lw = sorted(lp.points)
        name = lp.layer.node[len(common):].lstrip("/") if common else lp.layer.node
        ax.plot(lw, [lp.points[w] for w in lw], "-", lw=0.9, alpha=0.8,
                label=f"{_wrap_name(name, 30)} [{lp.layer.mode}]")
    edges = step_edges(prof.curve)
    ax.plot(edges, [prof.curve[w] for w in edges], "o", color="tab:red", ms=5, label="step edge")
    ax.plot(prof.candidates, [0.0] * len(prof.candidates), "|", color="tab:green", ms=12,
            label="candidate widths")
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("channels kept in the group")
    ax.set_ylabel("latency (ms)")
    ax.set_title(_wrap_name(f"group {prof.group}: {prof.name}", 90), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title=f"layers (under {common}/)" if common else "layers", title_fontsize=6)
    return plot


def plot_profiles(profs: list[GroupProfile], directory: str, per_group: bool = False) -> list[str]:
    """DIR/profile.png (overview) and, with ``per_group``, DIR/group_NNN.png for each group."""
    paths = [save_figure(profiles_figure(profs), os.path.join(directory, "profile.png"), dpi=100)]
    if per_group:
        paths += [save_figure(group_figure(p), os.path.join(directory, f"group_{p.group:03d}.png"),
                              dpi=100) for p in profs]
    return paths


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
    fig, q = figures(data), data.get("quality") or {}
    cards = []
    if fig.speedup is not None:
        sub = f"target {fig.target_speedup:.3f}x" if fig.target_speedup else ""
        cls = "" if fig.met is None else ("ok" if fig.met else "bad")
        cards.append(_card("speedup", "measured speedup", _x(fig.speedup), sub, fig.speedup, cls))
        sub = f"from {_ms(fig.baseline_ms)} ms" + (f", target {_ms(fig.target_ms)} ms"
                                                  if fig.target_ms is not None else "")
        cards.append(_card("ms", "latency (ms)", _ms(fig.ms), sub, fig.ms))
    elif data.get("already_met"):
        cards.append(_card("ms", "latency (ms)", _ms(fig.baseline_ms),
                           f"already meets the target {_ms(fig.target_ms)} ms", fig.baseline_ms))
    for key in ("fidelity",):
        d = q.get(key)
        label = "--val data" if isinstance(d, dict) and d.get("data") == "val" else "held-out"
        if isinstance(d, dict) and d.get("agreement") is not None:
            interval = (f", 95% {share(d['interval'][0])}..{share(d['interval'][1])}"
                        if d.get("interval") else "")
            cards.append(_card(f"agreement_{key}", f"top-1 agreement ({label})", share(d["agreement"]),
                               f"top-5 {share(d.get('top5'))}{interval}", d["agreement"]))
        elif isinstance(d, dict) and d.get("neighbours") is not None:
            cards.append(_card(f"neighbours_{key}", f"NN agreement ({label})", share(d["neighbours"]),
                               f"embedding cosine {_num(d.get('embedding_cosine'))}", d["neighbours"]))
    f = data.get("final") or q
    for key, label in (("params", "parameters"), ("macs", "MACs")):
        if f.get(f"{key}_before"):
            before, after = f[f"{key}_before"], f[f"{key}_after"]
            cards.append(_card(key, label, f"{after / before:.0%}", f"{after:,} of {before:,}",
                               after / before))
    return f'<div class="cards">{"".join(cards)}</div>'


def _verdict(data: dict) -> str:
    """One line per constraint asked: the latency target, ``--max-drop``."""
    fig, fid = figures(data), fidelity_of(data) or {}
    out = []
    if fig.met is not None:
        word = "met" if fig.met else "missed"
        out.append(f'<p class="{"ok" if fig.met else "bad"}">target {word}: measured '
                   f'{_x(fig.speedup)} ({_ms(fig.ms)} ms) against {fig.target_speedup:.3f}x '
                   f'({_ms(fig.target_ms)} ms), from the one baseline of {_ms(fig.baseline_ms)} ms</p>')
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
    if plot and data.get("tradeoff") and figures(data).baseline_ms:
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
        fig = figures(d)
        label = f"target {fig.target_speedup:.3g}x" if fig.target_speedup else "target"
        result = f": measured {_x(fig.speedup)}, {_ms(fig.ms)} ms" if fig.speedup else ": already met"
        body.append(f"<details><summary>{html.escape(label + result)}</summary>{_cards(d)}"
                    f"{_run_sections(d, plot=False)}</details>")
    body.append("<h2>Run</h2>" + _tables(run_grid(first)))
    return _page("onnxprune frontier", "".join(body))


def report_text(data: dict | list[dict], path: str) -> str:
    """The ``--report`` file's text: an HTML page for ``.html``/``.htm``, else JSON."""
    if os.path.splitext(path)[1].lower() in (".html", ".htm"):
        return frontier_html(data) if isinstance(data, list) else run_html(data)
    return json.dumps(data, indent=2)
