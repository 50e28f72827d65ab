"""Opening, saving and keeping up to date the in-memory index of a stored gallery.

* :func:`load_index` - a *copy* of the gallery at a directory or ``postgresql://`` URL (changes stay in
  memory until ``save``); a gallery folder written by an earlier facefeat is migrated first
  (:mod:`facefeat.index.legacy`).
* :func:`open_index` / :func:`edit_index` - an *attached* index: each change is one transaction.
* :class:`StoredIndex` - what every :class:`~facefeat.index.base.FaceIndex` inherits to live beside
  its store: ``save`` (the journal of a copy in one transaction, or a full copy elsewhere),
  ``load``, ``refresh`` and the replay of what other writers changed (the store's change log).

Layering: this module sits below the FaceIndex class and its engines (it builds an engine through
the one table of engines, :func:`facefeat.index.factory.backend_class`), above the stores.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index import legacy, snapshot
from facefeat.index.factory import backend_class
from facefeat.index.store import DB_FILE, Change, GalleryStore, Op, is_store_url
from facefeat.index.store_factory import open_store

_CHUNK = 5000


def open_existing_store(location: str | os.PathLike, gallery: str | None = None) -> GalleryStore:
    """The store of an existing gallery; a folder in the old format is migrated on this first open."""
    if is_store_url(location):
        store = open_store(str(location), gallery)
        if not store.exists():
            raise FaceIndexError(f"{store.location}: no such gallery in the database")
        return store
    d = Path(location)
    if not d.exists():
        raise FaceIndexError(f"{d}: index directory does not exist")
    if not d.is_dir():
        raise FaceIndexError(f"{d}: is not a directory (a gallery is a directory holding {DB_FILE})")
    if legacy.is_legacy(d):
        legacy.migrate(d)
    store = open_store(d)
    if not store.exists():
        raise FaceIndexError(f"{d}: not a gallery: it holds no {DB_FILE} (nor an earlier facefeat's meta.json)")
    return store


def gallery_exists(location: str | os.PathLike) -> bool:
    """Whether a gallery is stored at ``location`` (in either format)."""
    if is_store_url(location):
        store = open_store(str(location))
        try:
            return store.exists()
        finally:
            store.close()
    d = Path(location)
    return (d / DB_FILE).is_file() or legacy.is_legacy(d)


def read_meta(location: str | os.PathLike) -> dict:
    """A stored gallery's metadata (backend, model_name, dim, metric_type, index_type, ...) with its
    ``count``, ``next_id`` and ``change`` counter - without loading its vectors."""
    store = open_existing_store(location)
    try:
        meta = store.meta()
        meta.update(count=sum(p["samples"] for p in store.persons()), next_id=store.next_id(),
                    change=store.counter())
        return meta
    finally:
        store.close()


def load_index(location: str | os.PathLike, _backend: str | None = None, gallery: str | None = None,
               **kw: Any) -> "StoredIndex":
    """Load the gallery at ``location`` (a gallery directory or a ``postgresql://`` URL) as an
    in-memory copy (a :class:`~facefeat.index.base.FaceIndex`); ``kw`` go to the vector engine
    (``nprobe``, ``ef_search``; Milvus ``uri`` ...)."""
    store = open_existing_store(location, gallery)
    try:
        meta = store.meta()
        if _backend is not None and meta.get("backend") != _backend:
            raise FaceIndexError(f"{store.location}: holds a '{meta.get('backend')}' index, not a '{_backend}' one; "
                                 "use load_index()")
        try:
            index = backend_class(meta["backend"])._from_meta(meta, **kw)
            name = meta.get("name")
            index.display_name = name if isinstance(name, str) and name else None
        except InputError as exc:
            raise FaceIndexError(f"{store.location}: the gallery's metadata is corrupt ({exc})") from exc
        index._origin = store
        with index._lock.write():
            index._fill(store)
        index._seen[store.location] = index._seq
        return index
    except BaseException:
        store.close()
        raise


def open_index(location: str | os.PathLike, gallery: str | None = None, **kw: Any) -> "StoredIndex":
    """Load the gallery at ``location`` *attached*: every change is written as it happens."""
    index = load_index(location, gallery=gallery, **kw)
    index._attached = True
    return index


@contextmanager
def edit_index(location: str | os.PathLike, **kw: Any) -> Iterator["StoredIndex"]:
    """The gallery at ``location``, attached: every add/remove/relabel in the block is one
    transaction, so concurrent editors (CLI runs, scripts, servers) all land. Do slow work
    (embedding) before entering or inside: no lock is held between changes."""
    yield open_index(location, **kw)


class StoredIndex:
    """The part of :class:`~facefeat.index.base.FaceIndex` that ties it to its gallery store: save,
    load, refresh, and the replay of the store's change log. It works on the FaceIndex's state
    (``_entries``, ``_next_id``, ``_origin``, ``_seq``, ``_journal``, ``_extras``, ``_seen``, ``_lock``)
    and hooks (``_apply``, ``_meta``, ``_backend_vectors``); it is never used on its own."""

    backend: str = ""

    def refresh(self) -> bool:
        """Bring this index (attached, or an unchanged copy) up to date with its store: what other
        writers changed. True if it changed."""
        store = self._origin
        if store is None or self._journal:
            return False
        if store.counter() == self._seq:
            return False
        with self._lock.write():
            before = self._seq
            self._sync_locked()
            return self._seq != before

    def save(self, directory: str | os.PathLike) -> Path | str:
        """Store the gallery at ``directory`` (a gallery directory, or a ``postgresql://`` URL).

        Where it was loaded from: the changes since, in one transaction (:class:`IndexConflict`,
        writing nothing, when another writer changed it meanwhile); anywhere else: a full copy,
        in one transaction. An attached index is already stored: saving it there does nothing."""
        origin = self._origin
        if is_store_url(directory):
            store = open_store(str(directory))
        else:
            if Path(directory).exists() and not Path(directory).is_dir():
                raise FaceIndexError(f"{directory}: is not a directory (a gallery is a directory holding {DB_FILE})")
            if legacy.is_legacy(Path(directory)):
                legacy.migrate(Path(directory))
            store = open_store(directory)
        same = origin is not None and store.location == origin.location
        if same:
            store.close()
            store = origin
        with self._lock.write():
            if same and (self._attached or (not self._journal and store.exists() and store.counter() == self._seq)):
                return directory
            if same and store.exists():
                seq, _ = store.write(self._journal, expect=self._seq)
            else:
                seq = store.replace(self._meta(), self._next_id, self._rows(), expect=self._seen.get(store.location))
            self._seen[store.location] = seq
            if not self._attached:
                if origin is not None and not same:
                    origin.close()
                self._origin, self._seq = store, seq
                self._journal, self._extras = [], {}
        return Path(directory) if not is_store_url(directory) else str(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, **kw: Any) -> "StoredIndex":
        """Load a stored gallery; FaceIndexError names the location and what is wrong with it."""
        return load_index(directory, _backend=cls.backend or None, **kw)

    # ------------------------------------------------------------------ the change log
    def _fill(self, store: GalleryStore, snapshots: bool = True) -> None:
        """Load every sample into an empty index (a large HNSW from its snapshot when there is a good
        one), then replay what changed meanwhile."""
        if snapshots and snapshot.read(self, store):
            self._replay(store, store.changes_since(self._seq))
            return
        seq, next_id = store.counter(), store.next_id()
        chunks = list(store.load()) if self._index_type.startswith("IVF") else store.load()
        if isinstance(chunks, list) and len(chunks) > 1:  # IVF trains once, on the whole gallery
            chunks = [(np.concatenate([c[0] for c in chunks]), sum((c[1] for c in chunks), []),
                       sum((c[2] for c in chunks), []), np.concatenate([c[3] for c in chunks]))]
        for ids, labels, paths, feats in chunks:
            self._apply(Op("add", ids.tolist(), feats, labels, paths))
        self._seq = seq
        self._next_id = max(self._next_id, next_id)
        self._replay(store, store.changes_since(seq))
        if snapshots:
            snapshot.write(self, store)

    def _replay(self, store: GalleryStore, changes: Sequence[Change]) -> None:
        """Apply recorded changes idempotently (an add already loaded, a remove already gone: skipped)."""
        for c in changes:
            if c.kind == "reset":
                if self._entries:
                    self._apply(Op("remove", sorted(self._entries)))
                self._next_id = 0
                self._fill(store, snapshots=False)
                continue
            if c.kind == "add":
                todo = [i for i in c.ids if i not in self._entries]
                for ids, labels, paths, feats in store.load(todo) if todo else ():
                    self._apply(Op("add", ids.tolist(), feats, labels, paths))
                if c.ids:
                    self._next_id = max(self._next_id, max(c.ids) + 1)
            elif c.kind == "remove":
                present = [i for i in c.ids if i in self._entries]
                if present:
                    self._apply(Op("remove", present))
            elif c.kind == "relabel":
                present = [i for i in c.ids if i in self._entries]
                if present:
                    self._apply(Op("relabel", present, label=c.label))
            elif c.kind == "meta":
                store._meta = None  # re-read (another writer trained the engine); this copy keeps its own
            self._seq = max(self._seq, c.seq)

    def _sync_locked(self, upto: int | None = None) -> None:
        """Replay the store's changes after this index's counter (up to ``upto``); the caller holds
        the write lock."""
        store = self._origin
        if store is None or self._journal:
            return
        changes = [c for c in store.changes_since(self._seq) if upto is None or c.seq <= upto]
        self._replay(store, changes)

    def _known_hashes(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Which ``(label, content hash)`` pairs the gallery already holds (stored or in memory)."""
        want = set(pairs)
        out: dict[tuple[str, str], int] = {}
        for i, r in self._extras.items():
            e = self._entries.get(i)
            if e is not None and r.content_hash and (e[0], r.content_hash) in want:
                out.setdefault((e[0], r.content_hash), i)
        if self._origin is not None:
            for key, i in self._origin.find(list(want - set(out))).items():
                e = self._entries.get(i)
                if e is not None and e[0] == key[0]:
                    out[key] = i
        return out

    def _rows(self) -> Iterator[tuple]:
        """Every sample in id order, in chunks, with what the origin store keeps of each."""
        ids = sorted(self._entries)
        for s in range(0, len(ids), _CHUNK):
            part = ids[s:s + _CHUNK]
            feats = self._backend_vectors(np.asarray(part, np.int64))
            stored = {} if self._origin is None else self._origin.records([i for i in part if i not in self._extras])
            recs = [self._extras.get(i) or stored.get(i) for i in part]
            yield (part, [self._entries[i][0] for i in part], [self._entries[i][1] for i in part], feats, recs)


__all__ = ["StoredIndex", "edit_index", "gallery_exists", "load_index", "open_existing_store", "open_index",
           "read_meta"]
