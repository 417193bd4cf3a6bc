"""Figures (matplotlib, drawn on demand): the trade-off plot of a run and of a frontier, the
sensitivity heatmap, the latency staircases of the profiled groups; saved as PNG or embedded.

Every latency a figure shows comes from the report data through :func:`onnxprune.report.latency_story`
and :func:`onnxprune.report.point_ms` (the run's one baseline over interleaved speedups), so a
plot cannot contradict the tables.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import cachefile
from .graph import ChannelGraph
from .profile import GroupProfile
from .report import (
    drop_meaning,
    fidelity_kept,
    fidelity_of,
    is_share,
    latency_story,
    ms_text,
    point_ms,
    x_text,
)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig, path: str, dpi: int = 110) -> str:
    """Write a figure (PNG) atomically (:func:`onnxprune.cachefile.atomic_path`), creating its
    directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with cachefile.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=os.path.splitext(path)[1][1:] or "png")
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



def _tradeoff_axes(ax, baseline: float, points: list[dict], targets: list[tuple[float, str]],
                   marks: list[Mark], fid: dict | None, quantizer: Sequence[dict] = ()) -> None:
    """Judged candidates (measured latency, measured fidelity), the original, target lines,
    the chosen models and the runtime quantizer's models (``quantizer``: the report's rows,
    measured in the same run), on axes padded so that nothing sits on the frame; speedup on
    top."""
    share_axis = is_share(fid)
    pts = _placed(points, baseline)
    if pts:
        ax.plot([x for x, _ in pts], [y for _, y in pts], "o", color="tab:blue", alpha=0.7,
                label=f"judged candidates ({len(pts)})")
    ax.plot([baseline], [1.0], "*", color="black", ms=13, label=f"original {baseline:.3f} ms")
    rows = [r for r in quantizer if _placed([r], baseline)]  # those with a speedup and a drop
    ours = _placed(rows, baseline)
    for (x, y), row in zip(ours, rows):
        ax.plot([x], [y], "D", ms=7, label=f"onnxruntime quantizer, {row['method']}")
    _draw_targets(ax, targets)
    _draw_marks(ax, marks)
    xs = [baseline] + [x for x, _ in pts + ours] + [t for t, _ in targets] + [m.ms for m in marks]
    ys = [1.0] + [y for _, y in pts + ours] + [m.y for m in marks]
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


def _placed(points: Sequence[dict], baseline: float) -> list[tuple[float, float]]:
    """(latency, fidelity kept) of the points that have both."""
    pts = [(point_ms(p, baseline), fidelity_kept(p)) for p in points]
    return [(x, y) for x, y in pts if x is not None and y is not None]


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
    fig, fid = latency_story(data), fidelity_of(data)
    if fig.ms is None or not fid or fid.get("drop") is None:
        return None
    return Mark(fig.ms, 1.0 - fid["drop"], label)


def tradeoff_figure(data: dict):
    """One run: every judged candidate, the original, the target line, the chosen model at its
    final measurement and the runtime quantizer's models (the same figures as the tables)."""
    fig = latency_story(data)
    plot = _figure(7.0, 4.4)
    ax = plot.subplots()
    targets = ([(fig.target_ms, f"target {fig.target_ms:.3f} ms ({fig.target_speedup:.2f}x)")]
               if fig.target_ms is not None and fig.target_speedup else [])
    mark = _mark(data, f"chosen: {ms_text(fig.ms)} ms, {x_text(fig.speedup)}")
    others = [p for p in data.get("tradeoff") or [] if not p.get("chosen")]
    _tradeoff_axes(ax, fig.baseline_ms, others, targets, [mark] if mark else [], fidelity_of(data),
                   data.get("quantizer") or [])
    ax.set_title("measured latency vs measured fidelity", fontsize=10)
    return plot


def frontier_figure(datas: list[dict]):
    """Several targets of one run: all judged candidates, one line per target, each target's
    chosen model labelled with its target and measured speedup."""
    plot = _figure(7.0, 4.4)
    ax = plot.subplots()
    base = latency_story(datas[0]).baseline_ms if datas else 1.0
    seen, points, marks, targets = set(), [], [], []
    chosen = {(p.get("ms"), p.get("drop")) for d in datas for p in d.get("tradeoff") or []
              if p.get("chosen")}
    for d in datas:
        fig = latency_story(d)
        if fig.target_ms is not None and fig.target_speedup:
            targets.append((fig.target_ms, f"{fig.target_speedup:.3g}x"))
        mark = _mark(d, f"{fig.target_speedup:.3g}x -> {x_text(fig.speedup)}")
        if mark:
            marks.append(mark)
        for p in d.get("tradeoff") or []:
            key = (p.get("ms"), p.get("drop"))
            if key not in seen and key not in chosen:
                seen.add(key)
                points.append(p)
    _tradeoff_axes(ax, base, points, targets, marks, fidelity_of(datas[-1]) if datas else None,
                   (datas[0].get("quantizer") or []) if datas else [])
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


