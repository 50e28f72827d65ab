"""The SQL behind both stores (SQLite and PostgreSQL speak the same statements here; a dialect
subclass connects, opens write transactions and maps its driver's errors to facefeat's).

Tables (every row carries its gallery's name, so one PostgreSQL database holds many galleries)::

    galleries(name, meta, next_id, seq, created)        meta: JSON; seq: the change counter
    persons(gallery, label, created)
    samples(gallery, id, label, source, feature, model_name, weights_hash, figures, det,
            content_hash, created)                       feature: float32 bytes
    crops(gallery, id, data, format)                     the aligned face a sample came from
    changes(gallery, seq, kind, ids, label)              one row per operation (ids as ranges)

A write transaction first locks its gallery's row (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL:
``SELECT ... FOR UPDATE``), so writers of one gallery take turns and ids are assigned in order.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index.common import IndexConflict
from facefeat.index.store import (
    STORE_FORMAT_VERSION,
    Change,
    GalleryStore,
    Op,
    SampleRecord,
    decode_ids,
    encode_ids,
)
from facefeat.utils import json_safe

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS galleries (name TEXT PRIMARY KEY, meta TEXT NOT NULL, next_id BIGINT NOT NULL, "
    "seq BIGINT NOT NULL, created DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS persons (gallery TEXT NOT NULL, label TEXT NOT NULL, "
    "created DOUBLE PRECISION NOT NULL, PRIMARY KEY (gallery, label))",
    "CREATE TABLE IF NOT EXISTS samples (gallery TEXT NOT NULL, id BIGINT NOT NULL, label TEXT NOT NULL, "
    "source TEXT, feature {blob} NOT NULL, model_name TEXT, weights_hash TEXT, figures TEXT, det TEXT, "
    "content_hash TEXT, created DOUBLE PRECISION NOT NULL, PRIMARY KEY (gallery, id))",
    "CREATE INDEX IF NOT EXISTS samples_by_hash ON samples (gallery, content_hash)",
    "CREATE INDEX IF NOT EXISTS samples_by_label ON samples (gallery, label)",
    "CREATE TABLE IF NOT EXISTS crops (gallery TEXT NOT NULL, id BIGINT NOT NULL, data {blob} NOT NULL, "
    "format TEXT NOT NULL, PRIMARY KEY (gallery, id))",
    "CREATE TABLE IF NOT EXISTS changes (gallery TEXT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL, "
    "ids TEXT NOT NULL, label TEXT, PRIMARY KEY (gallery, seq))",
)
_IN_CHUNK = 500  # ids per "IN (...)" list


def _short(ids: Sequence[int], n: int = 10) -> str:
    s = ", ".join(str(i) for i in list(ids)[:n])
    return s + (f", ... ({len(ids)} in all)" if len(ids) > n else "")


def _dumps(x: Any) -> str | None:
    if x is None:
        return None
    return json.dumps(json_safe(x), ensure_ascii=False, separators=(",", ":"))


class SqlStore(GalleryStore):
    """The shared SQL; subclasses set ``blob``/``placeholder`` and implement the hooks."""

    blob = "BLOB"
    placeholder = "?"
    #: appended to the SELECT of the gallery's row in a write transaction (PostgreSQL: " FOR UPDATE")
    lock_clause = ""

    def __init__(self, gallery: str, where: str):
        self.gallery = gallery
        self.where = where  # what error messages name (the file, or the URL without password)
        self._lock = threading.RLock()
        self._meta: dict | None = None

    # -- dialect hooks ------------------------------------------------------------------------------
    def _conn(self) -> Any:
        raise NotImplementedError

    @contextmanager
    def _write_tx(self) -> Iterator[Any]:
        """A write transaction holding the gallery's lock; yields a cursor."""
        raise NotImplementedError

    @contextmanager
    def _read(self) -> Iterator[Any]:
        """A cursor for reading (errors mapped)."""
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _ex(self, cur: Any, sql: str, args: Sequence = ()) -> Any:
        cur.execute(self._q(sql), tuple(args))
        return cur

    def _schema(self, cur: Any) -> None:
        for stmt in SCHEMA:
            cur.execute(stmt.format(blob=self.blob))

    def _head(self, cur: Any, lock: bool = False) -> tuple[int, int]:
        sql = "SELECT seq, next_id FROM galleries WHERE name = ?" + (self.lock_clause if lock else "")
        row = self._ex(cur, sql, (self.gallery,)).fetchone()
        if row is None:
            raise FaceIndexError(f"{self.where}: no gallery {self.gallery!r} here (create it first)")
        return int(row[0]), int(row[1])

    # -- reading -------------------------------------------------------------------------------------
    def exists(self) -> bool:
        with self._read() as cur:
            return self._ex(cur, "SELECT 1 FROM galleries WHERE name = ?", (self.gallery,)).fetchone() is not None

    def meta(self) -> dict:
        if self._meta is None:
            with self._read() as cur:
                row = self._ex(cur, "SELECT meta FROM galleries WHERE name = ?", (self.gallery,)).fetchone()
            if row is None:
                raise FaceIndexError(f"{self.where}: no gallery {self.gallery!r} here")
            try:
                meta = json.loads(row[0])
                assert isinstance(meta, dict) and int(meta["dim"]) > 0
            except (ValueError, AssertionError, KeyError, TypeError) as exc:
                raise FaceIndexError(f"{self.where}: the gallery's metadata is corrupt ({exc!r})") from None
            if int(meta.get("store_version") or 0) > STORE_FORMAT_VERSION:
                raise FaceIndexError(f"{self.where}: written by a newer facefeat (store version "
                                     f"{meta.get('store_version')}); upgrade facefeat")
            self._meta = meta
        return dict(self._meta)

    def counter(self) -> int:
        with self._read() as cur:
            return self._head(cur)[0]

    def next_id(self) -> int:
        with self._read() as cur:
            return self._head(cur)[1]

    def changes_since(self, seq: int) -> list[Change]:
        with self._read() as cur:
            rows = self._ex(cur, "SELECT seq, kind, ids, label FROM changes WHERE gallery = ? AND seq > ? "
                            "ORDER BY seq", (self.gallery, int(seq))).fetchall()
        return [Change(int(s), str(k), decode_ids(i), lab) for s, k, i, lab in rows]

    def load(self, ids: Sequence[int] | None = None, chunk: int = 20000) -> Iterator[tuple]:
        dim = int(self.meta()["dim"])
        if ids is not None:
            wanted = sorted({int(i) for i in ids})
            for k in range(0, len(wanted), _IN_CHUNK):
                part = wanted[k:k + _IN_CHUNK]
                with self._read() as cur:
                    rows = self._ex(cur, "SELECT id, label, source, feature FROM samples WHERE gallery = ? AND id IN ("
                                    + ",".join("?" * len(part)) + ") ORDER BY id", (self.gallery, *part)).fetchall()
                if rows:
                    yield self._unpack(rows, dim)
            return
        last = -1
        while True:
            with self._read() as cur:
                rows = self._ex(cur, "SELECT id, label, source, feature FROM samples WHERE gallery = ? AND id > ? "
                                "ORDER BY id LIMIT ?", (self.gallery, last, int(chunk))).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            yield self._unpack(rows, dim)

    def entries(self, chunk: int = 50000) -> Iterator[tuple[list[int], list[str], list]]:
        """``(ids, labels, paths)`` chunks in id order, without the features (opening from a snapshot)."""
        last = -1
        while True:
            with self._read() as cur:
                rows = self._ex(cur, "SELECT id, label, source FROM samples WHERE gallery = ? AND id > ? ORDER BY id "
                                "LIMIT ?", (self.gallery, last, int(chunk))).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            yield [int(r[0]) for r in rows], [str(r[1]) for r in rows], [r[2] for r in rows]

    def _unpack(self, rows: list, dim: int) -> tuple:
        blob = b"".join(bytes(r[3]) for r in rows)
        if len(blob) != len(rows) * dim * 4 or any(len(r[3]) != dim * 4 for r in rows):
            bad = next(int(r[0]) for r in rows if len(r[3]) != dim * 4)
            raise FaceIndexError(f"{self.where}: sample {bad}'s feature is corrupt (not {dim} float32 values)")
        feats = np.frombuffer(blob, np.float32).reshape(len(rows), dim)
        return (np.asarray([int(r[0]) for r in rows], np.int64), [str(r[1]) for r in rows],
                [r[2] for r in rows], feats)

    def records(self, ids: Sequence[int], with_crops: bool = True) -> dict[int, SampleRecord]:
        out: dict[int, SampleRecord] = {}
        wanted = sorted({int(i) for i in ids})
        for k in range(0, len(wanted), _IN_CHUNK):
            part = wanted[k:k + _IN_CHUNK]
            marks = ",".join("?" * len(part))
            with self._read() as cur:
                rows = self._ex(cur, "SELECT id, figures, det, content_hash, weights_hash, created FROM samples "
                                f"WHERE gallery = ? AND id IN ({marks})", (self.gallery, *part)).fetchall()
                crops = {} if not with_crops else {int(i): (bytes(d), f) for i, d, f in self._ex(
                    cur, f"SELECT id, data, format FROM crops WHERE gallery = ? AND id IN ({marks})",
                    (self.gallery, *part)).fetchall()}
            for i, fig, det, h, wh, created in rows:
                c = crops.get(int(i))
                out[int(i)] = SampleRecord(crop=c[0] if c else None, crop_format=c[1] if c else "jpeg",
                                           figures=json.loads(fig) if fig else None,
                                           det=json.loads(det) if det else None, content_hash=h,
                                           weights_hash=wh, created=float(created))
        return out

    def crop(self, sample_id: int) -> tuple[bytes, str] | None:
        with self._read() as cur:
            row = self._ex(cur, "SELECT data, format FROM crops WHERE gallery = ? AND id = ?",
                           (self.gallery, int(sample_id))).fetchone()
        return None if row is None else (bytes(row[0]), str(row[1]))

    def figures(self) -> dict[int, dict]:
        with self._read() as cur:
            rows = self._ex(cur, "SELECT id, figures FROM samples WHERE gallery = ? AND figures IS NOT NULL",
                            (self.gallery,)).fetchall()
        return {int(i): json.loads(f) for i, f in rows}

    def find(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        hashes = sorted({h for _, h in pairs if h})
        out: dict[tuple[str, str], int] = {}
        for k in range(0, len(hashes), _IN_CHUNK):
            part = hashes[k:k + _IN_CHUNK]
            with self._read() as cur:
                rows = self._ex(cur, "SELECT label, content_hash, MIN(id) FROM samples WHERE gallery = ? AND "
                                f"content_hash IN ({','.join('?' * len(part))}) GROUP BY label, content_hash",
                                (self.gallery, *part)).fetchall()
            out.update({(str(lab), str(h)): int(i) for lab, h, i in rows})
        return {p: out[p] for p in pairs if p in out}

    def persons(self) -> list[dict]:
        with self._read() as cur:
            rows = self._ex(cur, "SELECT p.label, p.created, COUNT(s.id) FROM persons p LEFT JOIN samples s ON "
                            "s.gallery = p.gallery AND s.label = p.label WHERE p.gallery = ? "
                            "GROUP BY p.label, p.created ORDER BY p.label", (self.gallery,)).fetchall()
        return [{"label": str(lab), "created": float(c), "samples": int(n)} for lab, c, n in rows]

    # -- writing -------------------------------------------------------------------------------------
    def create(self, meta: dict) -> None:
        meta = {**meta, "store_version": STORE_FORMAT_VERSION}
        with self._write_tx() as cur:
            if self._ex(cur, "SELECT 1 FROM galleries WHERE name = ?", (self.gallery,)).fetchone() is not None:
                raise FaceIndexError(f"{self.where}: a gallery {self.gallery!r} exists already")
            self._ex(cur, "INSERT INTO galleries (name, meta, next_id, seq, created) VALUES (?, ?, 0, 0, ?)",
                     (self.gallery, json.dumps(meta), time.time()))
        self._meta = meta

    def write(self, ops: Sequence[Op], expect: int | None = None) -> tuple[int, list[list[int]]]:
        meta = self.meta()
        out: list[list[int]] = []
        with self._write_tx() as cur:
            seq, next_id = self._head(cur, lock=True)
            if expect is not None and seq != expect:
                raise IndexConflict(f"{self.where}: the gallery was changed by another writer since this copy was "
                                    f"loaded (change {expect} -> {seq}); nothing was saved: load it again and redo "
                                    "the change (facefeat.index.edit_index writes each change as it happens)")
            for op in ops:
                seq += 1
                if op.kind == "add":
                    ids, next_id = self._add(cur, op, next_id, meta)
                elif op.kind == "remove":
                    ids = self._remove(cur, op.ids or [])
                elif op.kind == "relabel":
                    ids = self._relabel(cur, op.ids or [], str(op.label))
                elif op.kind == "meta":  # the engine's trained state (IVF centroids) changed
                    meta = {**json.loads(op.label), "store_version": STORE_FORMAT_VERSION}
                    self._ex(cur, "UPDATE galleries SET meta = ? WHERE name = ?", (json.dumps(meta), self.gallery))
                    self._meta, ids = meta, []
                else:  # pragma: no cover - programming error
                    raise AssertionError(op.kind)
                self._ex(cur, "INSERT INTO changes (gallery, seq, kind, ids, label) VALUES (?, ?, ?, ?, ?)",
                         (self.gallery, seq, op.kind, encode_ids(ids), None if op.kind == "meta" else op.label))
                out.append(ids)
            self._ex(cur, "UPDATE galleries SET seq = ?, next_id = ? WHERE name = ?", (seq, next_id, self.gallery))
        return seq, out

    def _add(self, cur: Any, op: Op, next_id: int, meta: dict) -> tuple[list[int], int]:
        x = np.ascontiguousarray(op.features, np.float32)
        n = len(x)
        ids = list(range(next_id, next_id + n)) if op.ids is None else [int(i) for i in op.ids]
        if ids:
            next_id = max(next_id, max(ids) + 1)
        labels, paths = list(op.labels or []), list(op.paths or [None] * n)
        recs = list(op.records or [None] * n)
        now = time.time()
        persons = {}
        for lab, r in zip(labels, recs):
            persons.setdefault(lab, r.created if r is not None else now)
        cur.executemany(self._q("INSERT INTO persons (gallery, label, created) VALUES (?, ?, ?) "
                                "ON CONFLICT (gallery, label) DO NOTHING"),
                        [(self.gallery, lab, c) for lab, c in persons.items()])
        rows, crops = [], []
        for i, lab, p, f, r in zip(ids, labels, paths, x, recs):
            r = r or SampleRecord(created=now)
            rows.append((self.gallery, i, lab, p, f.tobytes(), meta.get("model_name"), r.weights_hash,
                         _dumps(r.figures), _dumps(r.det), r.content_hash, r.created))
            if r.crop is not None:
                crops.append((self.gallery, i, r.crop, r.crop_format))
        cur.executemany(self._q("INSERT INTO samples (gallery, id, label, source, feature, model_name, weights_hash, "
                                "figures, det, content_hash, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), rows)
        if crops:
            cur.executemany(self._q("INSERT INTO crops (gallery, id, data, format) VALUES (?, ?, ?, ?)"), crops)
        return ids, next_id

    def _labels_of(self, cur: Any, ids: Sequence[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        for k in range(0, len(ids), _IN_CHUNK):
            part = list(ids[k:k + _IN_CHUNK])
            rows = self._ex(cur, f"SELECT id, label FROM samples WHERE gallery = ? AND id IN ({','.join('?' * len(part))})",
                            (self.gallery, *part)).fetchall()
            found.update({int(i): str(lab) for i, lab in rows})
        missing = [i for i in ids if i not in found]
        if missing:
            raise InputError(f"unknown ids {_short(missing)} in {self.where}; nothing was changed")
        return found

    def _drop_orphans(self, cur: Any, labels: set[str]) -> None:
        for lab in labels:
            self._ex(cur, "DELETE FROM persons WHERE gallery = ? AND label = ? AND NOT EXISTS (SELECT 1 FROM samples "
                     "WHERE samples.gallery = ? AND samples.label = ?)", (self.gallery, lab, self.gallery, lab))

    def _remove(self, cur: Any, ids: Sequence[int]) -> list[int]:
        ids = sorted({int(i) for i in ids})
        labels = set(self._labels_of(cur, ids).values())
        for k in range(0, len(ids), _IN_CHUNK):
            part = ids[k:k + _IN_CHUNK]
            marks = ",".join("?" * len(part))
            self._ex(cur, f"DELETE FROM samples WHERE gallery = ? AND id IN ({marks})", (self.gallery, *part))
            self._ex(cur, f"DELETE FROM crops WHERE gallery = ? AND id IN ({marks})", (self.gallery, *part))
        self._drop_orphans(cur, labels)
        return ids

    def _relabel(self, cur: Any, ids: Sequence[int], label: str) -> list[int]:
        ids = sorted({int(i) for i in ids})
        old = set(self._labels_of(cur, ids).values())
        self._ex(cur, "INSERT INTO persons (gallery, label, created) VALUES (?, ?, ?) ON CONFLICT (gallery, label) "
                 "DO NOTHING", (self.gallery, label, time.time()))
        for k in range(0, len(ids), _IN_CHUNK):
            part = ids[k:k + _IN_CHUNK]
            self._ex(cur, f"UPDATE samples SET label = ? WHERE gallery = ? AND id IN ({','.join('?' * len(part))})",
                     (label, self.gallery, *part))
        self._drop_orphans(cur, old - {label})
        return ids

    def replace(self, meta: dict, next_id: int, rows: Iterator[tuple], expect: int | None = None) -> int:
        meta = {**meta, "store_version": STORE_FORMAT_VERSION}
        with self._write_tx() as cur:
            row = self._ex(cur, "SELECT seq FROM galleries WHERE name = ?" + self.lock_clause,
                           (self.gallery,)).fetchone()
            seq = 0 if row is None else int(row[0])
            if expect is not None and row is not None and seq != expect:
                raise IndexConflict(f"{self.where}: the gallery was changed by another writer since this copy was "
                                    f"loaded or saved (change {expect} -> {seq}); nothing was saved")
            for table in ("samples", "crops", "persons"):
                self._ex(cur, f"DELETE FROM {table} WHERE gallery = ?", (self.gallery,))
            if row is None:
                self._ex(cur, "INSERT INTO galleries (name, meta, next_id, seq, created) VALUES (?, ?, 0, 0, ?)",
                         (self.gallery, json.dumps(meta), time.time()))
            for ids, labels, paths, feats, recs in rows:
                self._add(cur, Op("add", list(ids), feats, list(labels), list(paths), list(recs)), 0, meta)
            seq += 1
            self._ex(cur, "INSERT INTO changes (gallery, seq, kind, ids, label) VALUES (?, ?, 'reset', '', NULL)",
                     (self.gallery, seq))
            self._ex(cur, "UPDATE galleries SET meta = ?, seq = ?, next_id = ? WHERE name = ?",
                     (json.dumps(meta), seq, int(next_id), self.gallery))
        self._meta = meta
        return seq

    def drop(self) -> None:
        with self._write_tx() as cur:
            for table in ("samples", "crops", "persons", "changes"):
                self._ex(cur, f"DELETE FROM {table} WHERE gallery = ?", (self.gallery,))
            self._ex(cur, "DELETE FROM galleries WHERE name = ?", (self.gallery,))
        self._meta = None


__all__ = ["SCHEMA", "SqlStore"]
