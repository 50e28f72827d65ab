"""Listing image files of folders, and the one policy for bad entries in them.

Every command that reads a folder lists it here. Entries named like images are kept whatever
they are (a FIFO, a socket, a device, a broken link, a symbolic-link loop) so that reading them
reports them one by one: :func:`file_problem` says what is wrong with a path *before* it is
opened (opening a FIFO would block forever), and :func:`facefeat.io.read_image` raises it as an
:class:`~facefeat.errors.InputError`. Callers report each bad file, go on, and fail at the end.
Directories are walked without following symbolic links, so a link loop cannot recurse.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from facefeat.errors import InputError, LimitError

log = logging.getLogger("facefeat")

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as an image file (without opening it), or None when it is a
    regular file (or a link to one). The reason is a phrase: ``"is a FIFO (named pipe), not a
    regular file"``, ``"symbolic link loop"``, ``"no such file"``, ..."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (following the links never reaches a file)"
        if exc.errno == errno.ENOENT:
            if os.path.islink(p):
                return f"broken symbolic link (points to {os.readlink(p)!r}, which does not exist)"
            return "no such file"
        return f"cannot read ({exc.strerror or exc})"
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
    return f"is {kind}, not a regular file; skipped"


def read_regular_file(path: str | os.PathLike, max_bytes: int, name: str | None = None) -> bytes:
    """The bytes of a regular file, opened without blocking and checked on the open descriptor
    (a path swapped for a FIFO after :func:`file_problem` looked cannot hang the read).

    Raises InputError naming ``name`` (default the path) when the file cannot be opened or is not a
    regular file, and LimitError when it holds more than ``max_bytes``."""
    label = name or os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb", closefd=True) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _KINDS if test(st.st_mode)), "a special file")
            raise InputError(f"{label}: is {kind}, not a regular file; skipped")
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise LimitError(f"{label}: file is above the limit of {max_bytes:,} bytes for an image file "
                         "(FACEFEAT_MAX_IMAGE_FILE_BYTES)")
    return data


def list_image_files(root: str | os.PathLike, extensions: tuple[str, ...], recursive: bool = False,
                     hidden: bool = True) -> list[Path]:
    """Every entry of ``root`` whose name ends in one of ``extensions`` and that is not a directory,
    sorted by path (``recursive``: the whole tree, links to directories not followed; ``hidden``:
    keep file names starting with ``.``). Non-regular entries are kept: reading reports them.

    Raises InputError when ``root`` cannot be listed or holds no such file.
    """
    root = Path(root)
    out: list[Path] = []
    errors: list[OSError] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append, followlinks=False):
            dirnames.sort()
            out += [Path(dirpath) / n for n in filenames if n.lower().endswith(extensions)
                    and (hidden or not n.startswith("."))]
            # os.walk lists links to directories (and link loops) as directories: keep those named
            # like images, so they are reported rather than silently dropped
            out += [Path(dirpath) / d for d in dirnames if d.lower().endswith(extensions)
                    and os.path.islink(Path(dirpath) / d)]
        if errors and errors[0].filename == os.fspath(root):
            exc = errors[0]
            raise InputError(f"{root}: cannot list the directory ({exc.strerror or exc})") from exc
        for exc in errors:
            log.warning("%s: cannot list a sub-folder (%s); skipped", exc.filename, exc.strerror or exc)
    else:
        try:
            entries = sorted(root.iterdir())
        except OSError as exc:
            raise InputError(f"{root}: cannot list the directory ({exc.strerror or exc})") from exc
        for p in entries:
            if not p.name.lower().endswith(extensions) or (not hidden and p.name.startswith(".")):
                continue
            if p.is_dir() and not p.is_symlink():
                continue
            out.append(p)
        skipped = sum(1 for p in entries if p not in out and not p.is_dir())
        if skipped:
            log.info("%s: skipped %d file(s) that are not images by extension", root, skipped)
    if not out:
        raise InputError(f"{root}: directory holds no image files ({', '.join(extensions)})")
    return sorted(out)


__all__ = ["file_problem", "list_image_files", "read_regular_file"]
