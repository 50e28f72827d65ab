"""The one command table: ``facefeat NAME`` -> (help, options, handler), filled by each command
module's :func:`command` decorator; ``facefeat index ACTION`` is a table of the same kind."""

from __future__ import annotations

import argparse
from typing import Callable, Container

#: adds a command's arguments to its parser
Configure = Callable[[argparse.ArgumentParser], None]
#: runs a parsed command line; returns the exit status
Handler = Callable[[argparse.Namespace], int]


class CommandTable(dict):
    """``name -> (help, configure, handler)`` in registration order (the order of ``--help``)."""

    def command(self, name: str, help: str, configure: Configure) -> Callable[[Handler], Handler]:
        """Register ``name``: ``configure`` adds its arguments, the decorated function runs it."""

        def deco(fn: Handler) -> Handler:
            if name in self:
                raise ValueError(f"command {name!r} is registered twice")
            self[name] = (help, configure, fn)
            return fn

        return deco

    def add_parsers(self, sub: argparse._SubParsersAction, describe: bool = True,
                    only: Container[str] | None = None) -> dict[str, argparse.ArgumentParser]:
        """One sub-parser per entry (``describe``: the help is also its description), configured
        with its arguments - all of them, or ``only`` those named (the others stay empty, which is
        enough for the list of commands: a command's heavy modules are imported when it is configured)."""
        out = {}
        for name, (help_, configure, _) in self.items():
            p = sub.add_parser(name, help=help_, **({"description": help_} if describe else {}))
            if only is None or name in only:
                configure(p)
            out[name] = p
        return out

    def run(self, name: str, args: argparse.Namespace) -> int:
        """Run entry ``name``'s handler on ``args``."""
        return self[name][2](args)


#: ``facefeat COMMAND``: every command module registers here with ``@command``
COMMANDS = CommandTable()
#: ``facefeat index ACTION``: cli.gallery and cli.gallery_life register here with ``@index_action``
INDEX_ACTIONS = CommandTable()

command = COMMANDS.command
index_action = INDEX_ACTIONS.command

__all__ = ["COMMANDS", "CommandTable", "Configure", "Handler", "INDEX_ACTIONS", "command", "index_action"]
