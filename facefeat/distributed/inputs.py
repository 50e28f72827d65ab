"""What ``embed_dataset`` embeds: a directory tree, a text file of paths/URLs, or a table.

Every form becomes one sorted, de-duplicated list of ``(path, label)``. Paths are absolute (Ray
workers do not share the driver's working directory) and URLs are kept as they are. Labels are
optional and only travel along to the output rows (for ``build_index_from_parquet``):

* directory tree: every image file below it (recursive); the label is the image's parent folder
  when the image sits in a sub-folder (LFW's ``person/person_0001.jpg``), else none.
* text file (``.txt`` / ``.lst``): one ``path [label]`` a line (PaddleX's gallery.txt layout);
  relative paths are relative to the text file; blank lines and ``#`` comments are skipped.
* table (``.parquet`` / ``.csv``): a path column (``path_column``, default ``path``) and, when
  present, a label column (``label_column``, default ``label``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from facefeat.errors import InputError, require
from facefeat.io import IMAGE_EXTENSIONS
from facefeat.io.walk import list_image_files

log = logging.getLogger("facefeat")

TEXT_SUFFIXES = (".txt", ".lst", ".list")
TABLE_SUFFIXES = (".parquet", ".pq", ".csv")
_SPLIT = re.compile(r"\s+")


def _is_url(s: str) -> bool:
    return s.lower().startswith(("http://", "https://"))


def _absolute(p: str, base: Path) -> str:
    if _is_url(p):
        return p
    q = Path(os.path.expanduser(p))
    return os.path.abspath(q if q.is_absolute() else base / q)


def _from_dir(root: Path) -> list[tuple[str, str | None]]:
    out = []
    for p in list_image_files(root, IMAGE_EXTENSIONS, recursive=True, hidden=False):
        out.append((os.path.abspath(p), p.parent.name if p.parent != root else None))
    return out


def _from_text(path: Path) -> list[tuple[str, str | None]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the list of images ({exc})") from exc
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = _SPLIT.split(line, maxsplit=1)
        out.append((_absolute(parts[0], path.parent), parts[1].strip() if len(parts) > 1 else None))
    return out


def _from_table(path: Path, path_column: str, label_column: str | None) -> list[tuple[str, str | None]]:
    require("pyarrow", "distributed", "Reading a Parquet/CSV table of images")
    try:
        if path.suffix.lower() == ".csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(path)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise InputError(f"{path}: cannot read the table of images ({exc})") from exc
    if path_column not in table.column_names:
        raise InputError(f"{path}: no column {path_column!r} (columns: {', '.join(table.column_names)}); "
                         "name the image path column with path_column / --path-column")
    paths = table.column(path_column).to_pylist()
    labels = (table.column(label_column).to_pylist() if label_column and label_column in table.column_names
              else [None] * len(paths))
    bad = [i for i, p in enumerate(paths) if not isinstance(p, str) or not p.strip()]
    if bad:
        raise InputError(f"{path}: column {path_column!r} has empty or non-text values in rows {bad[:10]}")
    return [(_absolute(p.strip(), path.parent), None if lab is None else str(lab)) for p, lab in zip(paths, labels)]


def list_inputs(source: str | os.PathLike, path_column: str = "path",
                label_column: str | None = "label") -> list[tuple[str, str | None]]:
    """``[(path, label)]`` of a directory tree, text file or table, sorted by path, each path once."""
    src = Path(os.fspath(source))
    if src.is_dir():
        items = _from_dir(src)
    elif src.is_file() and src.suffix.lower() in TABLE_SUFFIXES:
        items = _from_table(src, path_column, label_column)
    elif src.is_file() and src.suffix.lower() in TEXT_SUFFIXES:
        items = _from_text(src)
    elif src.is_file():
        raise InputError(f"{src}: not a directory, a text list ({', '.join(TEXT_SUFFIXES)}) or a table "
                         f"({', '.join(TABLE_SUFFIXES)}) of images")
    else:
        raise InputError(f"{src}: no such directory or file")
    if not items:
        raise InputError(f"{src}: lists no images")
    seen: dict[str, str | None] = {}
    dups = 0
    for p, lab in items:
        if p in seen:
            dups += 1
            continue
        seen[p] = lab
    if dups:
        log.warning("%s: %d duplicate path(s) listed; each image is embedded once", src, dups)
    return sorted(seen.items())
