"""The CLI package's shape: one command table (the engine's subcommands included), one handler per
``index`` action, choice lists taken from the library's constants, and a lazy parser."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from facefeat.cli import build_parser, main
from facefeat.cli.table import COMMANDS, INDEX_ACTIONS, CommandTable

CLI_DIR = Path(__file__).resolve().parents[1] / "facefeat" / "cli"


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subs[0].choices) if subs else {}


def _option(p: argparse.ArgumentParser, flag: str) -> argparse.Action:
    (action,) = [a for a in p._actions if flag in a.option_strings]
    return action


def test_the_parser_is_the_command_table():
    commands = _subparsers(build_parser())
    assert list(commands) == list(COMMANDS)
    assert {"predict", "index", "recognize", "serve", "events", "get-pipeline-config", "check-dataset", "train",
            "evaluate", "export"} <= set(commands)
    for name, p in commands.items():
        assert p.get_default("func") is COMMANDS[name][2], name


def test_index_actions_have_one_handler_each():
    actions = _subparsers(_subparsers(build_parser())["index"])
    assert list(actions) == list(INDEX_ACTIONS)
    assert set(actions) == {"build", "add", "remove", "info", "people", "rename", "enroll", "health", "export",
                            "import", "migrate", "person", "correct", "corrections", "sightings"}
    assert len({fn for _, _, fn in INDEX_ACTIONS.values()}) == len(INDEX_ACTIONS)


def test_a_name_registers_once():
    table = CommandTable()
    table.command("x", "first", lambda p: None)(lambda args: 0)
    with pytest.raises(ValueError, match="'x' is registered twice"):
        table.command("x", "second", lambda p: None)(lambda args: 0)


def test_choices_come_from_the_library():
    from facefeat.distributed.bulk import FACE_MODES
    from facefeat.distributed.embed import ENGINES
    from facefeat.index import BACKENDS as INDEX_BACKENDS
    from facefeat.index.common import METRIC_TYPES
    from facefeat.pipeline.cluster import METHODS
    from facefeat.runtime.runners import BACKENDS, PRECISIONS
    from facefeat.vision.align import ALIGN_MODES
    from facefeat.vision.photo import ALIGN_MODES as PHOTO_ALIGN_MODES
    from facefeat.vision.quality import POLICIES

    c = _subparsers(build_parser())
    index = _subparsers(c["index"])
    assert _option(c["predict"], "--backend").choices == list(BACKENDS)
    assert _option(c["info"], "--precision").choices == list(PRECISIONS)
    assert _option(c["predict"], "--align").choices == list(PHOTO_ALIGN_MODES)
    assert _option(c["embed"], "--align").choices == list(ALIGN_MODES)
    assert _option(c["align"], "--mode").choices == list(ALIGN_MODES)
    assert _option(c["embed-dataset"], "--engine").choices == list(ENGINES)
    assert _option(c["cluster"], "--method").choices == METHODS
    assert _option(index["build"], "--metric").choices == list(METRIC_TYPES)
    assert _option(index["build"], "--index-backend").choices == list(INDEX_BACKENDS)
    assert _option(index["build"], "--faces").choices == list(FACE_MODES)
    for action in ("enroll", "health", "correct"):
        assert _option(index[action], "--quality").choices == list(POLICIES), action


def test_no_literal_choice_lists_in_the_cli():
    """A ``choices=`` list of words in facefeat/cli is a second copy of a library constant (on/off excepted)."""
    found = []
    for path in sorted(CLI_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "choices" and isinstance(node.value, (ast.List, ast.Tuple)):
                words = {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
                if words != {"on", "off"}:
                    found.append(f"{path.name}:{node.value.lineno} {sorted(words)}")
    assert not found, found


def test_only_the_command_run_is_configured():
    commands = _subparsers(build_parser(only=("models",)))
    assert list(commands) == list(COMMANDS)  # every command is listed
    assert [a.dest for a in commands["index"]._actions] == ["help"]  # ... but not configured
    assert any("--json" in a.option_strings for a in commands["models"]._actions)


def test_help_imports_no_pipeline_nor_heavy_library():
    """``facefeat --help`` imports no HEAVY package (torch, OpenCV, FAISS, YAML, ... : the list of
    tests/test_layering.py), hence neither the pipeline, the mode runner nor the service app; the
    pure-Python library modules the commands' choices come from (the index, events) it may load."""
    from test_layering import HEAVY

    code = ("import runpy, sys\n"
            "sys.argv = ['facefeat', '--help']\n"
            "try:\n    runpy.run_module('facefeat', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})\n"
            "heavy += [m for m in ('facefeat.pipeline', 'facefeat.engine.runner', 'facefeat.serving.app') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "usage: facefeat" in res.stdout and "get-pipeline-config" in res.stdout


def test_an_error_is_one_line_and_exit_2(tmp_path, capsys):
    """The one failure reporter: a FacefeatError from any handler, index actions included."""
    assert main(["index", "info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("facefeat: error: ") and err.count("\n") == 1
    assert main(["index", "remove", str(tmp_path), "1", "--label", "x"]) == 2
    assert "give ids or --label NAME, not both" in capsys.readouterr().err
    assert main(["index", "build", "--out", str(tmp_path / "o")]) == 2
    assert "exactly one of --gallery DIR or --from-parquet DIR" in capsys.readouterr().err
