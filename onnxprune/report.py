"""Report: the human/JSON views of analyses and pruning results (rendering only)."""

from __future__ import annotations

import json

import numpy as np
from rich.console import Console
from rich.table import Table

from . import runtime
from .graph import ChannelGraph

console = Console(stderr=False)


def groups_table(g: ChannelGraph) -> list[dict]:
    """One row per group: members, width, prunable channels, importance, frozen reason."""
    rows = []
    spaces = g.group_spaces()
    for group in g.groups:
        imp = group.importance if group.importance is not None else np.zeros(group.width)
        mine = set(spaces[group.id])
        maps = sorted({f"{a[0]} -> {b[0]}: {g.spaces.edges[a, b]['how']}"
                       for a, b in g.spaces.edges(mine) if a in mine and b in mine})
        rows.append({
            "id": group.id,
            "name": group.name,
            "sources": [s.node for s in group.sources],
            "members": sorted({f"{p.node}:{p.param}[axis {p.axis}]" for p in group.members}),
            "width": group.width,
            "prunable": len(group.prunable),
            "importance_mean": float(imp.mean()) if len(imp) else 0.0,
            "importance_min": float(imp.min()) if len(imp) else 0.0,
            "frozen": group.frozen_reason,
            "spaces": [f"{t}[axis {a}]" for t, a in spaces[group.id]],
            "index_maps": maps,
        })
    return rows


def print_analysis(g: ChannelGraph, as_json: bool) -> None:
    rows = groups_table(g)
    if as_json:
        print(json.dumps({"summary": g.summary(), "groups": rows}, indent=2))
        return
    table = Table(title="channel groups")
    for col in ("id", "name", "width", "prunable", "members", "importance", "frozen because"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], str(r["width"]), str(r["prunable"]),
                      str(len(r["members"])), f"{r['importance_mean']:.2f}", r["frozen"] or "-")
    console.print(table)
    s = g.summary()
    console.print(f"{s['prunable_groups']}/{s['groups']} groups prunable, "
                  f"{s['prunable_channels']}/{s['channels']} channels ({s['prunable_share']:.0%})")


def print_kv(title: str, rows: list[tuple[str, str, str]],
             columns: tuple[str, str, str] = ("", "before", "after")) -> None:
    """A three-column table (before/after by default)."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)



def print_kv_single(title: str, timing) -> None:
    """One model's latency statistics."""
    table = Table(title=title)
    for col in ("median ms", "p90 ms", "min ms", "spread", "rounds"):
        table.add_column(col, justify="right")
    table.add_row(f"{timing.median_ms:.3f}", f"{timing.p90_ms:.3f}", f"{timing.min_ms:.3f}",
                  f"{timing.spread:.1%}", str(timing.runs))
    console.print(table)


def print_profiles(profs) -> None:
    """Per group: width, layers, latency at full width, steps and candidate widths."""
    table = Table(title="latency staircases (sum over the layers each group touches)")
    for col in ("group", "name", "width", "layers", "ms @ full", "ms @ min", "candidate widths"):
        table.add_column(col, overflow="fold")
    for p in profs:
        full = p.curve.get(p.width, float("nan"))
        low = p.curve[min(p.curve)] if p.curve else float("nan")
        table.add_row(str(p.group), p.name[-40:], str(p.width), str(len(p.layers)),
                      f"{full:.3f}", f"{low:.3f}", " ".join(map(str, p.candidates)))
    console.print(table)


def print_target(g: ChannelGraph, tr) -> None:
    """Summary tables of a latency-targeted run."""
    data = tr.to_dict(g)
    if tr.result is None:
        return
    measured = tr.table is not None  # values are -distortion, not kept importance
    title = "predicted distortion" if measured else "importance kept"
    table = Table(title=f"groups changed (width before -> after, {title})")
    for col in ("group", "name", "width", title):
        table.add_column(col, overflow="fold")
    for row in data["groups"]:
        if row["width_after"] < row["width_before"]:
            kept = f"{row['distortion']:.4f}" if measured else f"{row['importance_kept']:.0%}"
            table.add_row(str(row["group"]), row["name"][-45:],
                          f"{row['width_before']} -> {row['width_after']}", kept)
    console.print(table)
    loop = Table(title="hardware in the loop (speedup: interleaved ratio against the baseline)")
    for col in ("step", "predicted ms", "measured ms", "speedup", title, "in band"):
        loop.add_column(col, justify="right")
    for k, s in enumerate(data["loop"]):
        kept = f"{-s['importance']:.4f}" if measured else f"{s['importance']:.0f}"
        loop.add_row("all at floor" if k == 0 else str(k),
                     "-" if k == 0 else f"{s['predicted_ms']:.3f}", f"{s['measured_ms']:.3f}",
                     f"{s['speedup']:.3f}x", kept, "yes" if s["accepted"] and k else "")
    console.print(loop)
    f = data["final"]
    print_kv(f"target {tr.target_ms:.3f} ms = baseline {tr.baseline_ms:.3f} ms / {tr.target_speedup:.3f}", [
        ("latency ms (one baseline; after = baseline / speedup)", f"{tr.baseline_ms:.3f}", f"{f['ms']:.3f}"),
        ("speedup (interleaved A/B, pooled)", "", f"{f['speedup']:.3f}x"),
        ("ratio p10..p90 (last comparison)", "", f"{f['ratio_p10']:.3f}..{f['ratio_p90']:.3f}"),
        ("parameters", f"{f['params_before']:,}", f"{f['params_after']:,}"),
        ("MACs", f"{f['macs_before']:,}", f"{f['macs_after']:,}"),
        ("zero-filter error", "", f"{f['zero_filter_error']:.1e}"),
    ])
    console.print(f"measured at input shapes {input_shapes_text(g)}: the speedup holds for these "
                  "shapes (another sequence length or batch: profile it with --shape)")


def input_shapes_text(g: ChannelGraph) -> str:
    """The graph inputs' concrete shapes every latency was measured at, e.g. ``x 1x3x224x224``."""
    names = [i.name for i in runtime.graph_inputs(g.model)]
    return ", ".join(f"{n} {'x'.join(map(str, g.shapes[n]))}" for n in names if n in g.shapes)


def print_frozen(result) -> None:
    """The groups left unpruned because their rewrite could not be proven, with why."""
    for gid, why in result.frozen:
        console.print(f"group {gid} left unpruned: {why}")


def print_quality(result) -> None:
    """Fidelity and recovery steps of a result, when calibration data was given."""
    q = result.quality
    if q.fidelity is None:
        return
    table = Table(title="fidelity on held-out data (pruned vs original)")
    rows = q.recovery.steps if q.recovery is not None else [{"step": "none", **q.fidelity.as_dict(), "kept": True}]
    embeddings = q.fidelity.neighbours is not None  # an embedding output: pooled metrics
    classes = q.fidelity.agreement is not None
    cols = ["step"] + (["top-1 agreement", "top-5"] if classes else [])
    cols += ["embedding cosine", "NN agreement"] if embeddings else []
    for col in cols + ["distortion", "min cosine", "max rel. L2", "kept"]:
        table.add_column(col, justify="right")
    for s in rows:
        cells = [s["step"]] + ([share(s["agreement"]), share(s.get("top5"))] if classes else [])
        if embeddings:
            emb = s.get("embedding_cosine")
            cells += ["-" if emb is None else f"{emb:.4f}", share(s.get("neighbours"))]
        table.add_row(*cells, "-" if s.get("distortion") is None else f"{s['distortion']:.4f}",
                      f"{min(s['cosine'].values()):.4f}", f"{max(s['rel_l2'].values()):.4f}",
                      "yes" if s["kept"] else "no")
    console.print(table)
    f = q.fidelity
    if f.interval is not None:
        what = "top-1 agreement" if f.agreement is not None else "nearest-neighbour agreement"
        value = f.agreement if f.agreement is not None else f.neighbours
        console.print(f"held-out {what} {share(value)} on {f.samples} samples in {f.clusters} "
                      f"distinct clusters: 95% interval {share(f.interval[0])}..{share(f.interval[1])}")
    if f.metric is not None:
        console.print(f"evaluate(): {q.baseline_metric:.4f} -> {f.metric:.4f}")


def share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def print_frontier(wanted: list[float], results) -> None:
    """One row per operating point: target, measured speedup, held-out fidelity."""
    table = Table(title="measured frontier (fidelity on held-out calibration data)")
    for col in ("target", "measured speedup", "ms", "top-1 agreement", "top-5", "distortion"):
        table.add_column(col, justify="right")
    for s, tr in zip(sorted(wanted), results):
        if tr.result is None:
            table.add_row(f"{s:g}x", "already met", f"{tr.baseline_ms:.3f}", "-", "-", "-")
            continue
        fid = tr.result.quality.fidelity
        table.add_row(f"{s:g}x", f"{tr.speedup:.3f}x", f"{tr.after_ms:.3f}",
                      share(fid.agreement if fid else None), share(fid.top5 if fid else None),
                      "-" if fid is None or fid.distortion is None else f"{fid.distortion:.4f}")
    console.print(table)


def plot_tradeoff(points: list[dict], baseline_ms: float, path: str, chosen: bool = True) -> str:
    """Measured latency against measured fidelity (1 - drop) of every candidate judged; the
    chosen one marked (``chosen``), the unpruned model at (baseline, 1)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [p for p in points if p.get("drop") is not None]
    ax.plot([baseline_ms], [1.0], "k*", ms=10, label="original")
    ax.plot([p["ms"] for p in pts], [1 - p["drop"] for p in pts], "o", color="tab:blue",
            label="candidates (measured)")
    picked = [p for p in pts if p.get("chosen")] if chosen else []
    if picked:
        ax.plot([p["ms"] for p in picked], [1 - p["drop"] for p in picked], "o", ms=12,
                mfc="none", mec="tab:red", mew=2, label="chosen")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("fidelity (1 - drop; top-1 agreement)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_heatmap(g: ChannelGraph, table, directory: str, synthetic: bool = False) -> str:
    """Sensitivity heatmap: one row per group, one column per kept share, colour = log10 of the
    measured output distortion when only that group is cut to that width."""
    import os

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    rows = sorted(table.values)
    shares = sorted({round(w / g.groups[gid].width, 3) for gid in rows for w in table.values[gid]
                     if w < g.groups[gid].width})
    grid = np.full((len(rows), len(shares)), np.nan)
    for i, gid in enumerate(rows):
        for w, v in table.values[gid].items():
            share = round(w / g.groups[gid].width, 3)
            if share in shares:
                grid[i, shares.index(share)] = np.log10(max(v, 1e-6))
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(shares), 1.0 + 0.28 * len(rows)))
    im = ax.imshow(grid, aspect="auto", cmap="magma_r")
    ax.set_xticks(range(len(shares)), [f"{s:.0%}" for s in shares])
    ax.set_yticks(range(len(rows)), [f"{gid} {g.groups[gid].name[-32:]}" for gid in rows], fontsize=6)
    ax.set_xlabel("channels kept")
    ax.set_title("log10 output distortion, one group cut" + (" (synthetic images)" if synthetic else ""),
                 fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = os.path.join(directory, "sensitivity.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
