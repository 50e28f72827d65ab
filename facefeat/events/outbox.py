"""The durable outbox: events are committed here first (SQLite, WAL, ``synchronous=FULL``) and
sent from here, so that a receiver that is down, or a recogniser killed and restarted, loses none.

A small interface, meant to move into the gallery database later::

    append(events, targets)        one transaction: the events and one delivery per target
    claim(target, n)               the target's oldest undelivered events, leased to this process
    ack(target, seqs)              delivered: forgotten (an event goes when every target has it)
    release(target, seqs)          not delivered: claimable again (attempts counted)
    drop_beyond(limit)             oldest deliveries beyond ``limit`` per target dropped (counted)
    counters()                     per target: pending, delivered, dropped, failed attempts

A lease names its process; leases of a process that is gone are released when the outbox opens,
so a restart re-sends at once what a killed process had claimed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

from facefeat.errors import ConfigError
from facefeat.utils import sqlite_wal

log = logging.getLogger("facefeat.events")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    body TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    target TEXT NOT NULL, seq INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    owner INTEGER NOT NULL DEFAULT 0, lease_until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (target, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_seq ON deliveries(seq);
CREATE TABLE IF NOT EXISTS counters (
    target TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (target, name)) WITHOUT ROWID;
"""
COUNTERS = ("delivered", "dropped", "failed")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Outbox:
    """A SQLite outbox file (created with its folder); safe across threads and processes."""

    def __init__(self, path: str | os.PathLike, lease_s: float = 60.0):
        self.path = Path(path).expanduser()
        self.lease_s = float(lease_s)
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._warned: dict[str, float] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
            sqlite_wal(self._db, 30.0)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(SCHEMA)
            self._release_dead()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"events outbox {self.path}: cannot open it ({exc}); set events.outbox "
                              "(--events-outbox) to a writable file") from exc

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r})"

    def _tx(self):
        return _Tx(self._db, self._lock)

    def _release_dead(self) -> None:
        with self._tx() as db:
            owners = [r[0] for r in db.execute("SELECT DISTINCT owner FROM deliveries WHERE owner != 0")]
            dead = [o for o in owners if o != self.pid and not _pid_alive(o)]
            for o in dead:
                db.execute("UPDATE deliveries SET owner = 0, lease_until = 0 WHERE owner = ?", (o,))
        if dead:
            log.info("events outbox %s: released the claims of stopped process(es) %s", self.path, dead)

    # -- the interface -------------------------------------------------------------------------------
    def append(self, events: Iterable, targets: Iterable[str], limit: int | None = None) -> list[int]:
        """Commit ``events`` (:class:`~facefeat.events.types.Event`) with a delivery per target in
        one transaction; returns their sequence numbers. With ``limit``, then drop the oldest
        deliveries of each target beyond it."""
        targets = list(targets)
        seqs = []
        with self._tx() as db:
            for ev in events:
                cur = db.execute("INSERT INTO events (id, type, body, created) VALUES (?, ?, ?, ?)",
                                 (ev.id, ev.type, ev.to_json(), ev.ts))
                seqs.append(cur.lastrowid)
                db.executemany("INSERT INTO deliveries (target, seq) VALUES (?, ?)",
                               [(t, cur.lastrowid) for t in targets])
            if limit is not None:
                self._drop_beyond(db, limit, targets)
        return seqs

    def claim(self, target: str, n: int = 32) -> list[tuple[int, str]]:
        """Up to ``n`` of ``target``'s oldest unclaimed events as ``(seq, body)``, leased to this
        process for ``lease_s`` seconds (ack or release them before)."""
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                "SELECT d.seq, e.body FROM deliveries d JOIN events e ON e.seq = d.seq "
                "WHERE d.target = ? AND (d.lease_until < ? OR d.owner = ?) ORDER BY d.seq LIMIT ?",
                (target, now, self.pid, int(n))).fetchall()
            if rows:
                db.executemany("UPDATE deliveries SET owner = ?, lease_until = ? WHERE target = ? AND seq = ?",
                               [(self.pid, now + self.lease_s, target, s) for s, _ in rows])
        return rows

    def ack(self, target: str, seqs: Iterable[int]) -> None:
        """``target`` has these events: forget its deliveries (and events nobody else waits for)."""
        seqs = list(seqs)
        if not seqs:
            return
        with self._tx() as db:
            db.executemany("DELETE FROM deliveries WHERE target = ? AND seq = ?", [(target, s) for s in seqs])
            db.executemany("DELETE FROM events WHERE seq = ? AND NOT EXISTS "
                           "(SELECT 1 FROM deliveries WHERE deliveries.seq = ?)", [(s, s) for s in seqs])
            self._count(db, target, "delivered", len(seqs))

    def release(self, target: str, seqs: Iterable[int], failed: bool = True) -> None:
        """Not delivered: make them claimable again (``failed``: count an attempt)."""
        seqs = list(seqs)
        if not seqs:
            return
        with self._tx() as db:
            db.executemany("UPDATE deliveries SET owner = 0, lease_until = 0, attempts = attempts + ? "
                           "WHERE target = ? AND seq = ?", [(int(failed), target, s) for s in seqs])
            if failed:
                self._count(db, target, "failed", 1)

    def drop_beyond(self, limit: int, targets: Iterable[str] | None = None) -> int:
        """Drop each target's oldest deliveries beyond ``limit`` (counted as ``dropped``)."""
        with self._tx() as db:
            return self._drop_beyond(db, limit, targets)

    def _drop_beyond(self, db: sqlite3.Connection, limit: int, targets: Iterable[str] | None) -> int:
        if targets is None:
            targets = [r[0] for r in db.execute("SELECT DISTINCT target FROM deliveries")]
        total = 0
        for t in targets:
            row = db.execute("SELECT seq FROM deliveries WHERE target = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                             (t, int(limit))).fetchone()
            if row is None:
                continue
            gone = db.execute("DELETE FROM deliveries WHERE target = ? AND seq <= ?", (t, row[0])).rowcount
            db.execute("DELETE FROM events WHERE seq <= ? AND NOT EXISTS "
                       "(SELECT 1 FROM deliveries WHERE deliveries.seq = events.seq)", (row[0],))
            self._count(db, t, "dropped", gone)
            if time.monotonic() - self._warned.get(t, -1e9) > 60:  # at most once a minute per target
                self._warned[t] = time.monotonic()
                log.warning("events outbox: undelivered events for %s dropped (more than %d waiting; "
                            "'facefeat events status' counts them)", t, limit)
            total += gone
        return total

    @staticmethod
    def _count(db: sqlite3.Connection, target: str, name: str, n: int) -> None:
        db.execute("INSERT INTO counters (target, name, value) VALUES (?, ?, ?) "
                   "ON CONFLICT (target, name) DO UPDATE SET value = value + excluded.value", (target, name, n))

    def pending(self, target: str | None = None) -> int:
        """Undelivered events of ``target`` (or deliveries of every target)."""
        with self._lock:
            if target is None:
                return self._db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM deliveries WHERE target = ?", (target,)).fetchone()[0]

    def counters(self) -> dict[str, dict[str, int]]:
        """``{target: {pending, delivered, dropped, failed}}`` (failed: send attempts that failed)."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for t, n in self._db.execute("SELECT target, COUNT(*) FROM deliveries GROUP BY target"):
                out.setdefault(t, dict.fromkeys(("pending",) + COUNTERS, 0))["pending"] = n
            for t, name, v in self._db.execute("SELECT target, name, value FROM counters"):
                out.setdefault(t, dict.fromkeys(("pending",) + COUNTERS, 0))[name] = v
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error) under the connection's lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.Error:
            if exc_type is None:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
        finally:
            self.lock.release()


__all__ = ["Outbox"]
