"""The figures carry what they promise: every judged candidate, the target line, the chosen
model inside the axes, full group names, a colour bar, step edges only where a curve steps,
one profile overview unless groups are asked."""

import matplotlib.image
import onnx
import pytest
import tiny
from fakes import Staircase

from onnxprune import cli, figures
from onnxprune.preparation import prepare
from onnxprune.profile import GroupProfile, Layer, LayerProfile
from onnxprune.sensitivity import Table


def test_every_judged_candidate_is_plotted():
    points = [{"ms": ms, "drop": d, "chosen": False} for ms, d in
              ((0.6, 0.0), (0.5, 0.02), (0.45, 0.05), (0.42, 0.2))]
    points[1]["chosen"] = True
    data = {"baseline_ms": 0.8, "target_ms": 0.55, "tradeoff": points,
            "final": {"speedup": 0.8 / 0.52}, "quality": {"fidelity": {"agreement": 0.98, "drop": 0.02}}}
    ax = figures.tradeoff_figure(data).axes[0]
    judged = next(line for line in ax.lines if line.get_label().startswith("judged"))
    assert sorted(judged.get_xdata()) == [0.42, 0.45, 0.6]  # the chosen one is drawn as chosen
    assert ax.get_ylabel().startswith("top-1 agreement")
    assert not any(line.get_label().startswith("onnxruntime") for line in ax.lines)
    # the runtime quantizer's models, measured in the same run, sit beside the candidates
    rows = [{"method": "minmax", "speedup": 2.0, "drop": 0.3}, {"method": "percentile", "speedup": 1.9, "drop": 0.2}]
    ax = figures.tradeoff_figure({**data, "quantizer": rows}).axes[0]
    drawn = {line.get_label(): (line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines
             if line.get_label().startswith("onnxruntime")}
    assert drawn == {"onnxruntime quantizer, minmax": (0.4, 0.7),
                     "onnxruntime quantizer, percentile": (pytest.approx(0.8 / 1.9), 0.8)}
    assert ax.get_xlim()[0] < 0.4 and ax.get_ylim()[0] < 0.7  # inside the axes
    # the frontier: one line per target, each target's model labelled with its target
    other = {**data, "target_ms": 0.44, "final": {"speedup": 0.8 / 0.43},
             "quality": {"fidelity": {"agreement": 0.9, "drop": 0.1}}}
    ax = figures.frontier_figure([data, other]).axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert any(t.startswith("1.45x -> 1.538x") for t in labels)
    assert any(t.startswith("1.82x -> 1.860x") for t in labels)
    assert len([line for line in ax.lines if line.get_linestyle() == "--"]) == 2


def test_heatmap_names_whole_wrapped_with_colour_bar_and_blank_legend():
    g = prepare(tiny.residual()).graph
    long = "/features/features.17/conv/conv.0/conv.0.0/Conv_with_a_rather_long_suffix_name"
    g.groups[2].name = long
    table = Table({2: {4: 0.5, 8: 0.01, 12: 1e-4}, 3: {8: 0.2, 16: 0.003, 24: 2e-5, 28: 1e-5}})
    fig = figures.heatmap_figure(g, table)
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
    assert figures.step_edges(line) == []
    stairs = {w: 0.1 * (1 + (w - 1) // 16) for w in [*range(1, 97, 4), 16, 17, 32, 33, 48, 49]}
    assert figures.step_edges(stairs) == [16, 32, 48, 61, 77]  # the last measured width before
    spiky = {**stairs, 40: 0.9}  # one slow measurement inside a tread
    assert figures.step_edges(spiky) == [16, 32, 48, 61, 77]


def _profile(gid, width, curve):
    layer = Layer(f"/block{gid}/conv/Conv", "Conv", "out", 0, 1, "sig")
    return GroupProfile(gid, f"/block{gid}/conv/Conv", width, 1, [LayerProfile(layer, dict(curve))],
                        dict(curve), candidates=[width])


def test_profile_plot_is_one_overview_unless_groups_are_asked(tmp_path, monkeypatch, capsys):
    profs = [_profile(i, 32, {w: 0.01 * (1 + (w - 1) // 8) for w in range(1, 33)}) for i in range(7)]
    fig = figures.profiles_figure(profs)
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
