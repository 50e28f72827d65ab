"""Opening the gallery store a user named: SQLite in a gallery directory, or PostgreSQL by URL.

It sits above both stores (and above the store interface, :mod:`facefeat.index.store`), so no
store module imports it.
"""

from __future__ import annotations

import os

from facefeat.index.pg_store import PgStore
from facefeat.index.sqlite_store import SqliteStore
from facefeat.index.store import GalleryStore, is_store_url


def open_store(location: str | os.PathLike, gallery: str | None = None) -> GalleryStore:
    """The store a user named: a ``postgresql://`` URL (``?gallery=NAME`` picks a gallery) or a
    gallery directory (its ``gallery.db``). Opening creates no gallery: see :meth:`GalleryStore.create`."""
    if is_store_url(location):
        return PgStore(str(location), gallery)
    return SqliteStore(location)


__all__ = ["open_store"]
