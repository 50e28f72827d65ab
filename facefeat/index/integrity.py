"""Integrity of saved indexes: checksums of their files, the revision a save checks, and the
folder lock (with crash recovery under it) that every load and save of an index holds."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from facefeat.errors import FaceIndexError
from facefeat.io.files import file_sha256
from facefeat.utils import LockTimeout, dir_lock, needs_recovery, recover_dir

#: the file whose presence marks a complete save (it holds the others' checksums)
META_FILE = "meta.json"


def checksum(path: Path) -> str:
    return "sha256:" + file_sha256(path)


def checksummed_files(directory: Path) -> list[str]:
    """Every regular file of a saved index but meta.json (relative, sorted); lock files excluded."""
    out = []
    for p in sorted(directory.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.name != META_FILE and p.name != "LOCK" \
                and not p.name.endswith(".lock"):
            out.append(p.relative_to(directory).as_posix())
    return out


def verify_checksums(directory: str | os.PathLike, meta: dict) -> None:
    """Raise FaceIndexError when a file listed in ``meta["checksums"]`` is missing or changed
    (indexes saved before checksums existed have none and pass)."""
    d = Path(directory)
    sums = meta.get("checksums")
    if sums is None:
        return
    if not isinstance(sums, dict):
        raise FaceIndexError(f"{d}: {META_FILE} is corrupt: checksums = {sums!r}")
    for rel, want in sorted(sums.items()):
        p, parts = d / rel, Path(rel).parts
        if ".." in parts or not p.is_file():
            top = parts[0] if parts and not (d / parts[0]).exists() else rel
            raise FaceIndexError(f"{d}: {top} is missing (listed in {META_FILE}); the index is incomplete")
        if checksum(p) != want:
            raise FaceIndexError(
                f"{d}: {rel} is corrupt (its checksum does not match {META_FILE}); restore the index "
                "from a backup or rebuild it")


def peek_revision(d: Path) -> tuple[bool, str | None]:
    """``(an index is saved at d, its revision_id)`` without validating the rest."""
    try:
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return True, None
    return True, meta.get("revision_id") if isinstance(meta, dict) else None


def folder_key(d: Path) -> str:
    return os.path.realpath(d)


@contextmanager
def locked(d: Path, writing: bool) -> Iterator[None]:
    """The folder lock, and crash recovery under it, around a load or save. A location where no
    lock file can be made (read-only) is loaded without either: nothing can be saved there."""
    if not writing and not os.path.lexists(d) and not needs_recovery(d):
        yield  # nothing there to lock or recover: read_meta reports the missing index
        return
    lock = dir_lock(d)
    try:
        lock.__enter__()
    except LockTimeout as exc:
        raise FaceIndexError(f"{d}: the index is locked by another writer ({exc})") from None
    except OSError as exc:
        if writing:
            raise FaceIndexError(f"{d}: cannot lock the index for saving ({exc})") from exc
        yield
        return
    try:
        try:
            recover_dir(d)
        except OSError as exc:
            raise FaceIndexError(f"{d}: cannot recover the index from an interrupted save ({exc})") from exc
        yield
    finally:
        lock.__exit__(None, None, None)
