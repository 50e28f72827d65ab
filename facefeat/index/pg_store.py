"""The shared gallery store: PostgreSQL (psycopg 3), for several servers sharing their galleries.

``postgresql://user:password@host:port/dbname?gallery=NAME`` names a gallery (``gallery`` defaults to
``default``; the service uses one gallery per index key). Stock PostgreSQL >= 15, no extension: the
same tables as SQLite (:mod:`facefeat.index.sql_store`), created on first use. A write transaction
locks its gallery's row (``SELECT ... FOR UPDATE``), so writers on any machine take turns and ids
stay unique and in order; each reader replays the change log on its next request.

Errors: a server that cannot be reached (down, restarting, network) is
:class:`~facefeat.errors.StorageUnavailable` (the service answers 503) and the next call reconnects;
a full disk is :class:`~facefeat.errors.StorageFull`. Passwords never appear in messages.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from facefeat.errors import InputError, StorageError, StorageFull, StorageUnavailable, require
from facefeat.index.sql_store import SqlStore
from facefeat.index.store import DEFAULT_GALLERY

CONNECT_TIMEOUT_S = 10
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _psycopg():
    return require("psycopg", "postgres", "A PostgreSQL gallery store")


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    p = urlsplit(url)
    if p.password is None:
        return url
    netloc = p.netloc.replace(f":{p.password}@", ":***@", 1)
    return urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))


def split_url(url: str, gallery: str | None = None) -> tuple[str, str]:
    """``(connection URL, gallery name)``: ``?gallery=`` is facefeat's, the rest goes to libpq."""
    p = urlsplit(url.strip())
    query = parse_qsl(p.query, keep_blank_values=True)
    named = [v for k, v in query if k == "gallery"]
    rest = [(k, v) for k, v in query if k != "gallery"]
    name = gallery or (named[-1] if named else DEFAULT_GALLERY)
    if not _NAME.fullmatch(name):
        raise InputError(f"gallery name {name[:40]!r} in {redact(url)}: use 1-128 letters, digits, '_', '.', '-'")
    return urlunsplit((p.scheme, p.netloc, p.path, urlencode(rest), "")), name


class PgStore(SqlStore):
    """One gallery in a PostgreSQL database; see the module doc."""

    blob = "BYTEA"
    placeholder = "%s"
    lock_clause = " FOR UPDATE"

    def __init__(self, url: str, gallery: str | None = None):
        conninfo, name = split_url(url, gallery)
        super().__init__(name, f"{redact(conninfo)} (gallery {name!r})")
        self.conninfo = conninfo
        self.location = f"{redact(conninfo)}#{name}"
        self._db: Any = None

    def __repr__(self) -> str:
        return f"PgStore({self.where!r})"

    def _error(self, exc: BaseException) -> Exception:
        pg = _psycopg()
        sqlstate = getattr(exc, "sqlstate", None) or ""
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if sqlstate.startswith("53"):  # insufficient resources: disk full, out of memory
            return StorageFull(f"{self.where}: the database server is out of space or memory; nothing of this "
                               "change was saved")
        if isinstance(exc, pg.OperationalError) or sqlstate.startswith(("08", "57")):
            self._reset()
            return StorageUnavailable(f"{self.where}: the database is unavailable ({msg}); retry later")
        return StorageError(f"{self.where}: the database failed ({msg})")

    def _reset(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def _conn(self) -> Any:
        if self._db is not None and not self._db.closed and not self._db.broken:
            return self._db
        pg = _psycopg()
        try:
            db = pg.connect(self.conninfo, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
            with db.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(727274)")  # two first users: one creates the tables
                try:
                    self._schema(cur)
                finally:
                    cur.execute("SELECT pg_advisory_unlock(727274)")
        except pg.Error as exc:
            raise self._error(exc) from None
        self._db = db
        return db

    @contextmanager
    def _read(self) -> Iterator[Any]:
        pg = _psycopg()
        with self._lock:
            try:
                with self._conn().cursor() as cur:
                    yield cur
            except pg.Error as exc:
                raise self._error(exc) from None

    @contextmanager
    def _write_tx(self) -> Iterator[Any]:
        pg = _psycopg()
        with self._lock:
            try:
                db = self._conn()
                with db.transaction(), db.cursor() as cur:
                    yield cur
            except pg.Error as exc:
                raise self._error(exc) from None

    def close(self) -> None:
        with self._lock:
            self._reset()


def list_galleries(url: str) -> list[str]:
    """The names of the galleries in the database at ``url``."""
    store = PgStore(url)
    try:
        with store._read() as cur:
            return [str(r[0]) for r in cur.execute("SELECT name FROM galleries ORDER BY name").fetchall()]
    finally:
        store.close()


__all__ = ["PgStore", "list_galleries", "redact", "split_url"]
