"""The embedded gallery store: one SQLite file, ``<gallery dir>/gallery.db`` (standard library sqlite3).

WAL journal with ``synchronous=FULL`` (a change is on disk when the call returns, and a crash at any
moment leaves the last committed state), ``secure_delete`` (a removed sample's crop and feature are
overwritten in the file, not just unlinked), and a 30 s busy timeout, so writers in other processes
(the CLI beside a server) wait their turn instead of failing. Errors become facefeat's: a full disk
is :class:`~facefeat.errors.StorageFull`, a file that is not a gallery database a FaceIndexError
naming it, a lock held too long :class:`~facefeat.errors.StorageUnavailable`.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from facefeat.errors import FaceIndexError, StorageError, StorageFull, StorageUnavailable
from facefeat.index.sql_store import SqlStore
from facefeat.index.store import DB_FILE, DEFAULT_GALLERY
from facefeat.utils import sqlite_wal

BUSY_TIMEOUT_S = 30.0
_FULL = {13}  # SQLITE_FULL
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class SqliteStore(SqlStore):
    """The gallery in ``<directory>/gallery.db``; see the module doc."""

    def __init__(self, directory: str | os.PathLike):
        d = Path(directory).expanduser()
        self.directory = d
        self.path = d / DB_FILE
        super().__init__(DEFAULT_GALLERY, str(self.path))
        self.location = os.path.realpath(d)
        self._db: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.directory)!r})"

    def _error(self, exc: BaseException) -> Exception:
        code = getattr(exc, "sqlite_errorcode", None)
        msg = str(exc)
        if code in _FULL or "disk is full" in msg:
            return StorageFull(f"{self.path}: the disk is full; nothing of this change was saved (free some "
                               "space and retry)")
        if code in _CORRUPT or "not a database" in msg or "malformed" in msg:
            return FaceIndexError(f"{self.path}: is corrupt or not a facefeat gallery database ({msg}); restore "
                                  "it from a backup copy of the gallery directory")
        if "locked" in msg or "busy" in msg:
            return StorageUnavailable(f"{self.path}: another writer held the gallery for over {BUSY_TIMEOUT_S:.0f} s; "
                                      "retry")
        if "readonly" in msg or "read-only" in msg:
            return StorageError(f"{self.path}: the gallery is read-only here ({msg})")
        return StorageError(f"{self.path}: the gallery database failed ({msg})")

    def _conn(self, create: bool = False) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if not self.path.is_file():
            if not create:
                raise FaceIndexError(f"{self.directory}: no gallery here ({DB_FILE} does not exist)")
            if self.directory.exists() and not self.directory.is_dir():
                raise FaceIndexError(f"{self.directory}: is not a directory (a gallery is a directory holding {DB_FILE})")
            self.directory.mkdir(parents=True, exist_ok=True)
            try:  # SQLite would make it 0644 whatever the umask; the user's umask decides instead
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o666))
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise StorageFull(f"{self.path}: the disk is full; cannot create the gallery") from None
                raise StorageError(f"{self.path}: cannot create the gallery database ({exc})") from None
        try:
            db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                 check_same_thread=False)
            try:
                sqlite_wal(db, BUSY_TIMEOUT_S)
                for pragma in ("synchronous=FULL", "secure_delete=ON",
                               f"busy_timeout={int(BUSY_TIMEOUT_S * 1000)}"):
                    db.execute(f"PRAGMA {pragma}")
                self._schema(db.cursor())
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        self._db = db
        return db

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self._lock:
            cur = self._conn().cursor()
            try:
                yield cur
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            finally:
                cur.close()

    @contextmanager
    def _write_tx(self) -> Iterator[Any]:
        with self._lock:
            cur = self._conn(create=True).cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                cur.close()
                raise self._error(exc) from None
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                try:
                    cur.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc) from None
                raise
            finally:
                cur.close()

    def write(self, ops, expect=None):
        out = super().write(ops, expect)
        if any(op.kind == "remove" for op in ops):
            self._erase_old_frames()
        return out

    def _erase_old_frames(self) -> None:
        """After a remove, copy the WAL into the file and truncate it, so that the removed crops'
        old page images do not linger in the WAL (best effort: a reader mid-snapshot defers it)."""
        try:
            with self._lock:
                self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass

    def exists(self) -> bool:
        if not self.path.is_file():
            return False
        return super().exists()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


__all__ = ["SqliteStore"]
