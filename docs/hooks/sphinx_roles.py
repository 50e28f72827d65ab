"""MkDocs hook: drop the Sphinx role prefixes (``:class:``, ``:func:``, ``:meth:`` ...) that
facefeat's docstrings use, so that the Python API reference shows ``:class:`People``` as just the
code ``People``."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):(?=<code>)")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return _ROLE.sub("", html)
