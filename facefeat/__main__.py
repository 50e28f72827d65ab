"""``python -m facefeat`` runs the command-line tool."""

from facefeat.cli import main

raise SystemExit(main())
