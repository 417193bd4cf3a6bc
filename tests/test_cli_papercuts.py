"""CLI papercuts: every option explains itself, `prune` is the default command and says so,
output folders are created, tables wrap names instead of cutting them, analyze's counts match
its rows, bench's fidelity table has no empty column, a missing --data file is named as such."""

import io
import json
import re

import click
import numpy as np
import onnx
import pytest
import tiny
from fakes import Analytic
from rich.console import Console

from onnxprune import cli, report
from onnxprune.output import check_output_dir, make_dir
from onnxprune.profile import GroupProfile


def _commands(group: click.Group):
    yield group
    for command in group.commands.values():
        yield from _commands(command) if isinstance(command, click.Group) else [command]


def test_every_option_of_every_command_has_help():
    missing = [f"{command.name} {'/'.join(p.opts)}" for command in _commands(cli.cli)
               for p in command.params if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert missing == []


def test_help_says_prune_may_be_left_out(capsys):
    cli.main(["--help"])
    out = capsys.readouterr().out
    assert "prune is the default command" in out
    assert "onnxprune in.onnx --speedup 1.3 -o out.onnx" in out  # kept on its own line


def _model(tmp_path):
    path = tmp_path / "in.onnx"
    onnx.save(tiny.residual(), path)
    return str(path)


def _one_error_line(capsys, args) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("onnxprune: error:"), err
    return err[0]


def test_output_folders_are_created_or_refused_at_once(tmp_path, capsys):
    nested = tmp_path / "a" / "b"
    check_output_dir(str(nested))
    assert not nested.exists()  # checked, created only when something is written
    assert make_dir(str(nested)) == str(nested) and nested.is_dir()
    (tmp_path / "file").write_text("x")
    line = _one_error_line(capsys, ["frontier", _model(tmp_path), "-o", str(tmp_path / "file" / "sub")])
    assert "cannot create the directory" in line
    line = _one_error_line(capsys, ["frontier", _model(tmp_path), "-o", str(tmp_path / "file")])
    assert "is not a directory" in line


def _cells(text: str, column: int) -> str:
    """The text of one column of a rich table, its wrapped lines joined."""
    return "".join(line.split("│")[column + 1].strip() for line in text.splitlines()
                   if line.startswith("│"))


def test_tables_wrap_long_names_instead_of_cutting_them(monkeypatch):
    name = "/features/features.17/conv/conv.0/conv.0.0/Conv"
    out = io.StringIO()
    monkeypatch.setattr(report, "console", Console(file=out, width=70))
    report.print_profiles([GroupProfile(3, name, 96, 1, [], {1: 0.1, 96: 0.5}, candidates=[32, 96])])
    assert _cells(out.getvalue(), 1) == name


def test_analyze_counts_the_rows_it_shows(tmp_path, capsys):
    model = _model(tmp_path)
    cli.main(["analyze", model, "--json"])
    data = json.loads(capsys.readouterr().out)
    rows, summary = data["groups"], data["summary"]
    assert summary["groups"] == len(rows) and summary["prunable_groups"] == sum(r["prunable"] > 0 for r in rows)
    shares = [r["first_quarter_share"] for r in rows if r["prunable"]]
    assert all(0 < s < 0.25 for s in shares)  # the quarter cut first holds less than a quarter
    cli.main(["analyze", model])
    text = capsys.readouterr().out
    ids = [line.split("│")[1].strip() for line in text.splitlines()
           if line.startswith("│") and line.split("│")[1].strip()]
    assert ids == [str(r["id"]) for r in rows]
    assert f"{summary['prunable_groups']}/{len(rows)} groups prunable" in text
    column = _cells(text, 5)
    assert re.fullmatch(r"(\d+\.\d%|-)+", column) and "%" in column


def test_bench_data_table_has_no_empty_column(tmp_path, capsys, monkeypatch):
    model = _model(tmp_path)
    np.savez(tmp_path / "t.npz", x=np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32))
    monkeypatch.setattr(cli.Deployment, "source", lambda self: Analytic())
    cli.main(["bench", model, model, "--rounds", "3", "--data", str(tmp_path / "t.npz")])
    text = capsys.readouterr().out
    fidelity = text[text.index("fidelity of B vs A"):]
    rows = [line for line in fidelity.splitlines() if line.startswith("│")]
    assert rows and all(cell.strip() for row in rows for cell in row.strip("│").split("│"))
    assert "top-1 agreement" in fidelity and "100.0%" in fidelity
    line = _one_error_line(capsys, ["bench", model, model, "--data", str(tmp_path / "nope.npz")])
    assert "--data" in line and "no such file" in line
