"""Where the service keeps its galleries: one gallery per index key, in SQLite files under a storage
root (default) or in one PostgreSQL database shared by several servers (``--store postgresql://...``).

Layout (SQLite)::

    <storage>/indexes/<key>/gallery.db   the gallery: people, samples, crops, change log

With PostgreSQL, each key is a gallery (a ``galleries`` row) of that database. Galleries saved by
earlier versions (``indexes/<key>/meta.json`` + ``thumbs/<key>/``) are migrated on first use.

Keys are server-generated ``uuid4().hex`` strings and every key a client sends is checked against
``^[0-9a-f]{32}$`` before it is used in a path or a query.

Concurrency: each gallery is held in memory as an *attached* index (:func:`facefeat.index.open_index`):
every add/remove/rename is one database transaction, and writers in other processes - other uvicorn
workers, the CLI, replicas on other machines - are seen on the next request, which compares the
gallery's change counter (one small query) and replays what changed. A writer waiting for another
(SQLite's busy timeout, PostgreSQL's row lock) waits inside the server; clients never see it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from facefeat.errors import FaceIndexError, InputError
from facefeat.index import legacy, open_index
from facefeat.index.people import People
from facefeat.index.pg_store import list_galleries, redact
from facefeat.index.store import is_store_url
from facefeat.index.store_factory import open_store
from facefeat.serving.errors import NotFound

log = logging.getLogger("facefeat.serving")

KEY_RE = re.compile(r"^[0-9a-f]{32}$")


class IndexNotFound(NotFound):
    """No index with this key in the storage (HTTP 404)."""


class InvalidIndexKey(InputError):
    """The key is not a 32-hex-digit index key (HTTP 400); it is never used in a path."""


def check_key(key: Any) -> str:
    """Return ``key`` if it is a well-formed index key, else raise InvalidIndexKey."""
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        shown = repr(key)[:80]
        raise InvalidIndexKey(
            f"indexKey {shown} is not a valid index key: expected 32 lowercase hex digits, as returned by "
            "/face-recognition-index-build"
        )
    return key


class IndexStore:
    """Create, open (cached, kept up to date), change and list the galleries of the service.

    ``backend``: the vector engine, ``"faiss"`` (default) or ``"milvus"`` (``milvus_uri``: a server
    or a milvus-lite file); ``store_url``: a ``postgresql://`` URL holding the galleries (default:
    SQLite files under ``root``).
    """

    def __init__(self, root: str | os.PathLike, backend: str = "faiss", milvus_uri: str | None = None,
                 store_url: str | None = None):
        backend = str(backend).lower()
        if backend not in ("faiss", "milvus"):
            raise InputError(f"index backend {backend!r} is not supported; use 'faiss' or 'milvus'")
        if store_url is not None and not is_store_url(store_url):
            raise InputError(f"store {str(store_url)[:80]!r} is not a postgresql:// URL (leave it unset for SQLite "
                             "galleries in the storage directory)")
        self.root = Path(root).expanduser().resolve()
        self.backend = backend
        self.milvus_uri = milvus_uri
        self.store_url = store_url
        self.index_root = self.root / "indexes"
        self.thumb_root = self.root / "thumbs"  # only galleries of earlier versions have one
        self.index_root.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, Any] = {}
        self._guard = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"IndexStore(root={str(self.root)!r}, backend={self.backend!r}, store={self._where()!r})"

    def _where(self) -> str:
        if self.store_url is None:
            return "sqlite"

        return redact(self.store_url)

    # -- locations ---------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        """The directory of SQLite gallery ``key`` (validated; always directly under ``indexes/``)."""
        d = self.index_root / check_key(key)
        if d.parent != self.index_root:  # belt and braces: the regex already rules this out
            raise InvalidIndexKey(f"indexKey {key!r} escapes the storage directory")
        return d

    def location(self, key: str) -> str:
        """Where gallery ``key`` is stored: its directory, or the PostgreSQL URL."""
        return self.store_url if self.store_url is not None else str(self.path(key))

    def _open_kwargs(self, key: str) -> dict:
        kw: dict = {}
        if self.store_url is not None:
            kw["gallery"] = check_key(key)
        if self.backend == "milvus":
            kw["collection"] = f"facefeat_{key}"
            if self.milvus_uri:
                kw["uri"] = self.milvus_uri
        return kw

    def _exists(self, key: str) -> bool:
        if self.store_url is not None:
            with open_store(self.store_url, check_key(key)) as s:
                return s.exists()
        d = self.path(key)
        return (d / "gallery.db").is_file() or (d / "meta.json").is_file()

    def _migrate_old(self, key: str) -> None:
        """A gallery of an earlier version: into gallery.db, with its thumbnails as crops."""
        d = self.path(key)
        if self.store_url is None and legacy.is_legacy(d):
            thumbs = self.thumb_root / key
            if legacy.migrate(d, thumbs if thumbs.is_dir() else None):
                shutil.rmtree(thumbs, ignore_errors=True)
                log.info("index %s: migrated to %s", key, d / "gallery.db")

    # -- reading -----------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        """The gallery ``key`` as an attached index, brought up to date with the database."""
        check_key(key)
        index = self._cache.get(key)
        if index is not None:
            try:
                index.refresh()
                return index
            except FaceIndexError:
                if not self._exists(key):  # deleted by another server meanwhile
                    self._cache.pop(key, None)
                    raise IndexNotFound(f"indexKey {key}: no such index") from None
                raise
        with self._guard:
            lock = self._opening.setdefault(key, threading.Lock())
        with lock:  # one thread opens a gallery; the others wait for it
            index = self._cache.get(key)
            if index is None:
                if not self._exists(key):
                    raise IndexNotFound(f"indexKey {key}: no such index (build one with "
                                        "/face-recognition-index-build)")
                self._migrate_old(key)
                index = self._cache[key] = open_index(self.location(key), **self._open_kwargs(key))
        return index

    def exists(self, key: str) -> bool:
        return self._exists(key)

    def crop(self, key: str, sample_id: int) -> tuple[bytes, str] | None:
        """The stored crop of a sample (JPEG bytes, format), or None when there is none (or it was removed)."""
        if isinstance(sample_id, bool) or not isinstance(sample_id, int) or sample_id < 0:
            raise InputError(f"sample id must be a non-negative integer, got {sample_id!r}")
        index = self.get(key)
        return index.store.crop(sample_id)

    def samples(self, key: str) -> dict:
        """The per-sample figures of gallery ``key`` (by id)."""
        return People(self.get(key)).samples

    # -- changing ----------------------------------------------------------------------------------
    def new_key(self) -> str:
        while True:
            key = uuid.uuid4().hex
            if not self._exists(key):
                return key

    def collection_kwargs(self, key: str) -> dict:
        """Vector-engine keyword arguments for a new index with this key (Milvus: its own collection)."""
        if self.backend != "milvus":
            return {}
        kw: dict = {"collection": f"facefeat_{key}"}
        if self.milvus_uri:
            kw["uri"] = self.milvus_uri
        return kw

    def create(self, key: str, index: Any, name: str | None = None) -> str:
        """Store a new in-memory index under ``key`` (from :meth:`new_key`) in one transaction,
        with its readable ``name`` (kept in the gallery's metadata), and keep it attached."""
        if name:
            index.display_name = name
        if self._exists(key):
            raise InputError(f"indexKey {key}: already exists")
        if self.store_url is not None:
            index.save(self.store_url + ("&" if "?" in self.store_url else "?") + f"gallery={check_key(key)}")
        else:
            index.save(self.path(key))
        index._attached = True
        self._cache[key] = index
        return key

    @contextmanager
    def people(self, key: str) -> Iterator[Any]:
        """Gallery ``key`` as a :class:`~facefeat.index.people.People` view; each change in the
        block is one transaction (nothing to save after)."""
        yield People(self.get(key))

    @contextmanager
    def mutate(self, key: str) -> Iterator[Any]:
        """Gallery ``key`` (attached): each change in the block is one transaction."""
        yield self.get(key)

    def update(self, key: str, fn: Callable[[Any], Any]) -> Any:
        with self.mutate(key) as index:
            return fn(index)

    def delete(self, key: str) -> None:
        """Remove gallery ``key`` (its database rows or directory, its Milvus collection); 404 when none."""
        if not self._exists(key):
            raise IndexNotFound(f"indexKey {key}: no such index")
        index = self._cache.pop(key, None)
        if self.backend == "milvus" and index is not None:
            try:
                drop = getattr(index, "drop", None)
                if callable(drop):
                    drop()
            except Exception as exc:  # the gallery goes anyway; the collection is then orphaned
                log.warning("index %s: dropping its Milvus collection failed: %s", key, exc)
        if self.store_url is not None:
            with open_store(self.store_url, key) as s:
                s.drop()
            return
        if index is not None and index.store is not None:
            index.store.close()
        path = self.path(key)
        trash = path.with_name(f".{key}.deleted")
        os.replace(path, trash)  # atomic: readers see the gallery or nothing
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(self.thumb_root / key, ignore_errors=True)

    # -- listing -----------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        if self.store_url is not None:
            return sorted(k for k in list_galleries(self.store_url) if KEY_RE.fullmatch(k))
        try:
            names = os.listdir(self.index_root)
        except OSError:
            return []
        return sorted(n for n in names if KEY_RE.fullmatch(n) and self._exists(n))

    def summary(self, key: str) -> dict:
        """Key, readable name, count and model of a gallery."""
        index = self.get(key)
        return {"indexKey": key, "indexName": index.display_name, "imageCount": len(index), "model": index.model_name}
