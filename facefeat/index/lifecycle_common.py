"""Pieces the gallery-lifecycle modules share (privacy, corrections, sightings, migration)."""

from __future__ import annotations

from typing import Any

import numpy as np

from facefeat.errors import InputError


class UnknownPerson(InputError, LookupError):
    """No person with this label in the gallery."""


def scrub_log(store: Any) -> bool:
    """SQLite: checkpoint and empty the write-ahead log, so that no deleted page stays in a side file
    (the database overwrites deleted content itself). False when a reader holds the log (the next
    checkpoint clears it); True for PostgreSQL (its own storage rules apply)."""
    import sqlite3

    db = getattr(store, "_db", None)
    if not isinstance(db, sqlite3.Connection):
        return True
    with store._lock:
        return not db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]


#: derived files beside gallery.db that may hold vectors (the HNSW graph snapshot of
#: facefeat.index.snapshot): a missing one only costs a rebuild at the next open
DERIVED_FILES = ("gallery.hnsw", "gallery.hnsw.json")


def drop_derived(store: Any) -> list[str]:
    """Delete the derived vector files beside a SQLite gallery (they are rebuilt from the database)."""
    from pathlib import Path

    d = getattr(store, "directory", None)
    gone = []
    for name in DERIVED_FILES if d is not None else ():
        p = Path(d) / name
        if p.exists():
            p.unlink()
            gone.append(str(p))
    return gone


def require_attached(index: Any, what: str) -> None:
    """Changes to samples must reach the database at once: an index opened with ``open_index``."""
    if not getattr(index, "_attached", False):
        raise InputError(f"{what} changes the gallery's samples: open it with facefeat.index.open_index (attached), "
                         "not load_index (a copy whose changes wait for save)")


__all__ = ["DERIVED_FILES", "UnknownPerson", "drop_derived", "require_attached", "scrub_log"]


def decode_crop(data: Any) -> np.ndarray | None:
    """A stored face crop (JPEG bytes) decoded to BGR by the one image reader, or None when it is
    missing or not an image."""
    if data is None:
        return None
    from facefeat.io import decode_image_bytes  # OpenCV: imported when a crop is decoded

    try:
        return decode_image_bytes(bytes(data), "stored face crop")
    except InputError:
        return None
