"""The ``facefeat`` command line: subcommands, and PaddleX's ``-c config.yaml -o Section.key=value``
and ``--pipeline NAME --input ...``.

Each module of this package holds one group of commands and registers them in the one command
table (:data:`facefeat.cli.table.COMMANDS`) with ``@command``; :func:`build_parser` turns the table
into the parser and :func:`main` runs it, with :func:`_guard` as the one failure reporter.

The CLI is lazy where it matters: a command's library modules that bring a heavy dependency
(OpenCV, YAML, torch, FastAPI, ...: ``HEAVY`` in tests/test_layering.py) are imported by its configure
function and its handler, pure-Python ones at the top, and :func:`main` configures only the command
it runs, so ``facefeat --help`` and light commands load no pipeline, torch, OpenCV, FAISS or OpenVINO.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Container, Sequence

# the command modules, in the order of `facefeat --help`; importing one registers its commands
from facefeat.cli import embed, models, gallery, gallery_life, recognize, paddlex, serve, engine  # noqa: F401, I001
from facefeat.cli.engine import main_config
from facefeat.cli.output import escape, install_log_escaping
from facefeat.cli.paddlex import is_paddlex_pipeline_cli, paddlex_pipeline_main
from facefeat.cli.table import COMMANDS
from facefeat.errors import FacefeatError

#: commands without a result to print (the service); "events" prints its own report
_NO_JSON = {"serve", "events"}


def build_parser(only: Container[str] | None = None) -> argparse.ArgumentParser:
    """The ``facefeat`` parser: one sub-parser per entry of the command table, each with ``--json``;
    ``only``: configure only these commands' arguments (the others are listed, not configured)."""
    parser = argparse.ArgumentParser(
        prog="facefeat",
        description="Face features: embeddings, training, evaluation, export, recognition, serving.",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, p in COMMANDS.add_parsers(sub, only=only).items():
        if name not in _NO_JSON and (only is None or name in only):
            _add_json_flag(p)
        p.set_defaults(func=COMMANDS[name][2])
    return parser


def _add_json_flag(p: argparse.ArgumentParser) -> None:
    """``--json`` on every (leaf) command: one JSON document, or JSON lines for streams."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    for a in subs:
        for child in a.choices.values():
            _add_json_flag(child)
    if not subs and not any("--json" in a.option_strings for a in p._actions):
        p.add_argument("--json", action="store_true",
                       help="print JSON (one document, or one JSON object a line for streams) instead of a summary")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``facefeat ARGV``; returns the exit status (0 ok, 1 some input failed, 2 an error, 130 an
    interrupt)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if "-v" in argv else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    install_log_escaping()
    rest = [a for a in argv if a not in ("-v", "--verbose")]
    subcommand = bool(rest) and rest[0] in COMMANDS  # facefeat train DIR -c my.yaml: the subcommand's -c
    if ("-c" in argv or "--config" in argv) and not subcommand:
        return _guard(lambda: main_config(argv))
    if is_paddlex_pipeline_cli(argv):
        return _guard(lambda: paddlex_pipeline_main(argv))
    name = next((a for a in rest if not a.startswith("-")), None)  # the command (top-level options take no value)
    parser = build_parser(only=(name,) if name in COMMANDS else ())
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return _guard(lambda: args.func(args))


def _guard(fn: Callable[[], int]) -> int:
    """The one failure reporter: a FacefeatError is one escaped line on stderr and exit status 2."""
    try:
        return int(fn() or 0)
    except FacefeatError as exc:
        print(f"facefeat: error: {escape(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


__all__ = ["build_parser", "main"]
