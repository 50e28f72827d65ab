"""Opening, saving and keeping up to date the in-memory index of a stored gallery.

* :func:`load_index` - a *copy* of the gallery at a directory or ``postgresql://`` URL (changes stay in
  memory until ``save``); a gallery folder written by an earlier facefeat is migrated first
  (:mod:`facefeat.index.legacy`).
* :func:`open_index` / :func:`edit_index` - an *attached* index: each change is one transaction.
* :func:`save_index` - the journal of a copy in one transaction, or a full copy elsewhere.
* :func:`refresh` / :func:`sync_locked` - replay what other writers changed (the store's change log).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index.base import FaceIndex, backend_class
from facefeat.index.store import DB_FILE, Change, GalleryStore, Op, is_store_url, open_store

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
    from facefeat.index import legacy

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
    from facefeat.index import legacy

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
               **kw: Any) -> FaceIndex:
    """Load the gallery at ``location`` (a gallery directory or a ``postgresql://`` URL) as an
    in-memory copy; ``kw`` go to the vector engine (``nprobe``, ``ef_search``; Milvus ``uri`` ...)."""
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
            _fill(index, store)
        index._seen[store.location] = index._seq
        return index
    except BaseException:
        store.close()
        raise


def open_index(location: str | os.PathLike, gallery: str | None = None, **kw: Any) -> FaceIndex:
    """Load the gallery at ``location`` *attached*: every change is written as it happens."""
    index = load_index(location, gallery=gallery, **kw)
    index._attached = True
    return index


@contextmanager
def edit_index(location: str | os.PathLike, **kw: Any) -> Iterator[FaceIndex]:
    """The gallery at ``location``, attached: every add/remove/relabel in the block is one
    transaction, so concurrent editors (CLI runs, scripts, servers) all land. Do slow work
    (embedding) before entering or inside: no lock is held between changes."""
    yield open_index(location, **kw)


def _fill(index: FaceIndex, store: GalleryStore, snapshots: bool = True) -> None:
    """Load every sample into an empty index (a large HNSW from its snapshot when there is a good
    one), then replay what changed meanwhile."""
    from facefeat.index import snapshot

    if snapshots and snapshot.read(index, store):
        _replay(index, store, store.changes_since(index._seq))
        return
    seq, next_id = store.counter(), store.next_id()
    chunks = list(store.load()) if index._index_type.startswith("IVF") else store.load()
    if isinstance(chunks, list) and len(chunks) > 1:  # IVF trains once, on the whole gallery
        chunks = [(np.concatenate([c[0] for c in chunks]), sum((c[1] for c in chunks), []),
                   sum((c[2] for c in chunks), []), np.concatenate([c[3] for c in chunks]))]
    for ids, labels, paths, feats in chunks:
        index._apply(Op("add", ids.tolist(), feats, labels, paths))
    index._seq = seq
    index._next_id = max(index._next_id, next_id)
    _replay(index, store, store.changes_since(seq))
    if snapshots:
        snapshot.write(index, store)


def _replay(index: FaceIndex, store: GalleryStore, changes: Sequence[Change]) -> None:
    """Apply recorded changes idempotently (an add already loaded, a remove already gone: skipped)."""
    for c in changes:
        if c.kind == "reset":
            if index._entries:
                index._apply(Op("remove", sorted(index._entries)))
            index._next_id = 0
            _fill(index, store, snapshots=False)
            continue
        if c.kind == "add":
            todo = [i for i in c.ids if i not in index._entries]
            for ids, labels, paths, feats in store.load(todo) if todo else ():
                index._apply(Op("add", ids.tolist(), feats, labels, paths))
            if c.ids:
                index._next_id = max(index._next_id, max(c.ids) + 1)
        elif c.kind == "remove":
            present = [i for i in c.ids if i in index._entries]
            if present:
                index._apply(Op("remove", present))
        elif c.kind == "relabel":
            present = [i for i in c.ids if i in index._entries]
            if present:
                index._apply(Op("relabel", present, label=c.label))
        elif c.kind == "meta":
            store._meta = None  # re-read (another writer trained the engine); this copy keeps its own
        index._seq = max(index._seq, c.seq)


def sync_locked(index: FaceIndex, upto: int | None = None) -> None:
    """Replay the store's changes after the index's counter (up to ``upto``); the caller holds the
    index's write lock."""
    store = index._origin
    if store is None or index._journal:
        return
    changes = [c for c in store.changes_since(index._seq) if upto is None or c.seq <= upto]
    _replay(index, store, changes)


def refresh(index: FaceIndex) -> bool:
    """Bring an attached index (or an unchanged copy) up to date with its store; True if it changed."""
    store = index._origin
    if store is None or index._journal:
        return False
    if store.counter() == index._seq:
        return False
    with index._lock.write():
        before = index._seq
        sync_locked(index)
        return index._seq != before


def known_hashes(index: FaceIndex, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Which ``(label, content hash)`` pairs the gallery already holds (stored or in memory)."""
    want = set(pairs)
    out: dict[tuple[str, str], int] = {}
    for i, r in index._extras.items():
        e = index._entries.get(i)
        if e is not None and r.content_hash and (e[0], r.content_hash) in want:
            out.setdefault((e[0], r.content_hash), i)
    if index._origin is not None:
        for key, i in index._origin.find(list(want - set(out))).items():
            e = index._entries.get(i)
            if e is not None and e[0] == key[0]:
                out[key] = i
    return out


def _rows(index: FaceIndex) -> Iterator[tuple]:
    """Every sample of an index in id order, in chunks, with what the origin store keeps of each."""
    ids = sorted(index._entries)
    for s in range(0, len(ids), _CHUNK):
        part = ids[s:s + _CHUNK]
        feats = index._backend_vectors(np.asarray(part, np.int64))
        stored = {} if index._origin is None else index._origin.records([i for i in part if i not in index._extras])
        recs = [index._extras.get(i) or stored.get(i) for i in part]
        yield (part, [index._entries[i][0] for i in part], [index._entries[i][1] for i in part], feats, recs)


def save_index(index: FaceIndex, target: str | os.PathLike) -> Path | str:
    """See :meth:`FaceIndex.save`."""
    origin = index._origin
    if is_store_url(target):
        store = open_store(str(target))
    else:
        if Path(target).exists() and not Path(target).is_dir():
            raise FaceIndexError(f"{target}: is not a directory (a gallery is a directory holding {DB_FILE})")
        from facefeat.index import legacy

        if legacy.is_legacy(Path(target)):
            legacy.migrate(Path(target))
        store = open_store(target)
    same = origin is not None and store.location == origin.location
    if same:
        store.close()
        store = origin
    with index._lock.write():
        if same and (index._attached or (not index._journal and store.exists() and store.counter() == index._seq)):
            return target
        if same and store.exists():
            seq, _ = store.write(index._journal, expect=index._seq)
        else:
            seq = store.replace(index._meta(), index._next_id, _rows(index), expect=index._seen.get(store.location))
        index._seen[store.location] = seq
        if not index._attached:
            if origin is not None and not same:
                origin.close()
            index._origin, index._seq = store, seq
            index._journal, index._extras = [], {}
    return Path(target) if not is_store_url(target) else str(target)


__all__ = ["edit_index", "gallery_exists", "load_index", "open_existing_store", "open_index", "read_meta", "refresh", "save_index"]
