"""Where the service keeps its gallery indexes: one directory per index key, under a storage root.

Layout::

    <storage>/indexes/<key>/   a saved FaceIndex (meta.json, labels.json, backend files)
    <storage>/locks/<key>.lock  the per-index lock file (shared by uvicorn worker processes)
    <storage>/thumbs/<key>/<id>.jpg  the aligned face of each sample, a small JPEG for the web page
    <storage>/names/<key>.txt   the gallery's readable name, when one was given at build time

Per-sample figures (enrolment quality) live in the index's ``people.json``
(:class:`facefeat.index.people.People`), rewritten with every save of the index.

Keys are server-generated ``uuid4().hex`` strings and every key a client sends is checked against
``^[0-9a-f]{32}$`` before it is used in a path, so no request can name a file outside the storage
directory.

Concurrency: mutations of one index (add, remove) are serialised by a lock per key - a thread lock
inside a process plus an ``flock`` on the key's lock file across worker processes - and each one
ends with an atomic save (``FaceIndex.save`` writes a temp dir and renames it into place). Reads
(search, listing) take no store lock: they use the cached index, whose own readers-writer lock lets
any number of searches run together. A worker notices another worker's save by the index's
revision - ``(next_id, count)`` from meta.json, which every add or remove changes - and reloads.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from facefeat.errors import InputError
from facefeat.serving.errors import NotFound

log = logging.getLogger("facefeat.serving")

KEY_RE = re.compile(r"^[0-9a-f]{32}$")


class IndexNotFound(NotFound):
    """No index with this key in the storage directory (HTTP 404)."""


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


@dataclass
class _Cached:
    rev: tuple[int, int, int]
    index: Any
    sig: tuple | None = None  # (inode, mtime, size) of the meta.json the rev was last confirmed on
    samples: dict | None = None  # per-sample figures (people.json)


def _rev_of_meta(meta: dict) -> tuple[int, int, int]:
    return int(meta["next_id"]), int(meta["count"]), int(meta.get("revision") or 0)


def _rev_of_index(index: Any) -> tuple[int, int, int]:
    return int(index.next_id), len(index), int(getattr(index, "_revision", 0) or 0)


class IndexStore:
    """Create, load (cached), mutate and list the indexes under ``root``.

    ``backend``: ``"faiss"`` (default) or ``"milvus"``; ``milvus_uri``: a Milvus server (or a
    milvus-lite file path) for the Milvus backend, each index in its own collection.
    """

    def __init__(self, root: str | os.PathLike, backend: str = "faiss", milvus_uri: str | None = None):
        backend = str(backend).lower()
        if backend not in ("faiss", "milvus"):
            raise InputError(f"index backend {backend!r} is not supported; use 'faiss' or 'milvus'")
        self.root = Path(root).expanduser().resolve()
        self.backend = backend
        self.milvus_uri = milvus_uri
        self.index_root = self.root / "indexes"
        self.lock_root = self.root / "locks"
        self.thumb_root = self.root / "thumbs"
        self.name_root = self.root / "names"
        self.index_root.mkdir(parents=True, exist_ok=True)
        self.lock_root.mkdir(parents=True, exist_ok=True)
        from facefeat.utils import recover_dirs

        recover_dirs(self.index_root)  # start-up: finish saves a crash interrupted, drop stale temp folders
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"IndexStore(root={str(self.root)!r}, backend={self.backend!r})"

    # -- paths and locks ---------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        """The directory of index ``key`` (validated; always directly under ``indexes/``)."""
        d = self.index_root / check_key(key)
        if d.parent != self.index_root:  # belt and braces: the regex already rules this out
            raise InvalidIndexKey(f"indexKey {key!r} escapes the storage directory")
        return d

    def _thread_lock(self, key: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def _lock_file(self, key: str) -> Path:
        return self.lock_root / f"{check_key(key)}.lock"

    def _require_known(self, key: str) -> None:
        """404 for a key never created here - before any lock file is made for it, so that
        clients cannot make the server create files by sending random keys. (An index being
        replaced has no directory for an instant, but it has its lock file.)"""
        if not self.path(key).exists() and not self._lock_file(key).exists():
            raise IndexNotFound(f"indexKey {key}: no such index (build one with /face-recognition-index-build)")

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Exclusive lock on index ``key``: across threads of this process and across processes."""
        check_key(key)
        with self._thread_lock(key):
            fd = os.open(self._lock_file(key), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    # -- revision and loading ----------------------------------------------------------------------
    def _disk_rev(self, key: str) -> tuple[int, int, int] | None:
        """``(next_id, count, revision)`` of the saved index, or None when absent (or mid-replace)."""
        try:
            meta = json.loads((self.path(key) / "meta.json").read_text(encoding="utf-8"))
            return _rev_of_meta(meta)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _load_kwargs(self, key: str) -> dict:
        if self.backend == "milvus" and self.milvus_uri:
            return {"uri": self.milvus_uri}
        return {}

    def _load_locked(self, key: str) -> Any:
        """Current index for ``key``; the caller holds ``lock(key)``."""
        from facefeat.index import load_index

        rev = self._disk_rev(key)
        if rev is None:
            if not self.path(key).exists():
                raise IndexNotFound(f"indexKey {key}: no such index (build one with /face-recognition-index-build)")
        cached = self._cache.get(key)
        if cached is not None and cached.rev == rev:
            return cached.index
        index = load_index(self.path(key), **self._load_kwargs(key))
        self._cache[key] = _Cached(_rev_of_index(index), index, samples=self._read_samples(key))
        return index

    def _read_samples(self, key: str) -> dict:
        from facefeat.index.people import PEOPLE_FILE

        p = self.path(key) / PEOPLE_FILE
        try:
            return {int(k): v for k, v in json.loads(p.read_text(encoding="utf-8")).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("index %s: unreadable %s (%s); per-sample figures dropped", key, PEOPLE_FILE, exc)
            return {}

    def _meta_sig(self, key: str) -> tuple | None:
        try:
            st = os.stat(self.path(key) / "meta.json")
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def get(self, key: str) -> Any:
        """The index ``key`` for reading (searches may run concurrently with each other).

        Fast path: an unchanged meta.json (same inode, mtime and size - every save replaces the
        directory) needs no read; otherwise its revision is read and compared."""
        check_key(key)
        cached = self._cache.get(key)
        sig = self._meta_sig(key)
        if cached is not None and sig is not None and cached.sig == sig:
            return cached.index
        rev = self._disk_rev(key)
        if rev is not None and cached is not None and cached.rev == rev:
            cached.sig = sig  # taken before the read: at worst older, which only costs a re-read
            return cached.index
        self._require_known(key)
        with self.lock(key):  # absent, stale, or being replaced right now: look again under the lock
            return self._load_locked(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_dir()

    # -- mutations ---------------------------------------------------------------------------------
    def new_key(self) -> str:
        while True:
            key = uuid.uuid4().hex
            if not self.path(key).exists():
                return key

    def collection_kwargs(self, key: str) -> dict:
        """Backend keyword arguments for a new index with this key (Milvus: its own collection)."""
        if self.backend != "milvus":
            return {}
        kw: dict = {"collection": f"facefeat_{key}"}
        if self.milvus_uri:
            kw["uri"] = self.milvus_uri
        return kw

    def create(self, key: str, index: Any, samples: dict | None = None,
               thumbs: dict[int, bytes] | None = None, name: str | None = None) -> str:
        """Save a new index under ``key`` (from :meth:`new_key`) and cache it, with its per-sample
        figures, thumbnails (JPEG bytes by id) and readable ``name``."""
        from facefeat.utils import atomic_write_text

        with self.lock(key):
            if self.path(key).exists():
                raise InputError(f"indexKey {key}: already exists")
            if name:  # before the index: a listed index never lacks the name it was built with
                atomic_write_text(self.name_root / f"{check_key(key)}.txt", name)
            self._save_locked(key, index, samples or {})
            self.write_thumbs(key, thumbs or {})
        return key

    def name(self, key: str) -> str | None:
        """The readable name given when index ``key`` was built, or None."""
        try:
            return (self.name_root / f"{check_key(key)}.txt").read_text(encoding="utf-8") or None
        except (OSError, UnicodeDecodeError):
            return None

    def _save_locked(self, key: str, index: Any, samples: dict | None = None) -> None:
        from facefeat.index.people import People

        if samples is None:
            cached = self._cache.get(key)
            samples = (cached.samples if cached is not None and cached.index is index else None) or {}
        People(index, samples).save(self.path(key))  # the index, then people.json
        self._cache[key] = _Cached(_rev_of_index(index), index, samples=dict(samples))

    @contextmanager
    def people(self, key: str) -> Iterator[Any]:
        """Hold index ``key`` exclusively as a :class:`~facefeat.index.people.People` view (with the
        per-sample figures); it is saved after the block (renames change no count, so always)."""
        from facefeat.index.people import People

        self._require_known(key)
        with self.lock(key):
            index = self._load_locked(key)
            cached = self._cache.get(key)
            view = People(index, dict(cached.samples or {}) if cached is not None else {})
            try:
                yield view
                self._save_locked(key, index, view.samples)
            except BaseException:
                self._cache.pop(key, None)  # the next request reloads the last good save
                raise

    def samples(self, key: str) -> dict:
        """The per-sample figures of index ``key`` (by id), as last saved."""
        self.get(key)
        cached = self._cache.get(key)
        return dict(cached.samples or {}) if cached is not None else {}

    # -- thumbnails --------------------------------------------------------------------------------
    def thumb_path(self, key: str, sample_id: int) -> Path:
        if isinstance(sample_id, bool) or not isinstance(sample_id, int) or sample_id < 0:
            raise InputError(f"sample id must be a non-negative integer, got {sample_id!r}")
        return self.thumb_root / check_key(key) / f"{sample_id}.jpg"

    def write_thumbs(self, key: str, thumbs: dict[int, bytes]) -> None:
        from facefeat.utils import atomic_write_bytes

        for i, data in thumbs.items():
            atomic_write_bytes(self.thumb_path(key, int(i)), data)

    def drop_thumbs(self, key: str, ids: Any) -> None:
        for i in ids:
            try:
                self.thumb_path(key, int(i)).unlink()
            except OSError:
                pass

    @contextmanager
    def mutate(self, key: str) -> Iterator[Any]:
        """Hold index ``key`` exclusively; the block changes it, and it is saved atomically after.

        If the block raises after changing the index (or the save fails), the cached copy is
        dropped, so that the next request reloads the last good save from disk.
        """
        self._require_known(key)
        with self.lock(key):
            index = self._load_locked(key)
            before = (index.next_id, len(index))
            try:
                yield index
                if (index.next_id, len(index)) != before:
                    self._save_locked(key, index)
            except BaseException:
                if (index.next_id, len(index)) != before:
                    self._cache.pop(key, None)
                raise

    def delete(self, key: str) -> None:
        """Remove index ``key`` (its files, its Milvus collection); 404 when there is none."""
        import shutil

        self._require_known(key)
        with self.lock(key):
            path = self.path(key)
            if not path.exists():
                raise IndexNotFound(f"indexKey {key}: no such index")
            if self.backend == "milvus":
                try:
                    index = self._load_locked(key)
                    drop = getattr(index, "drop", None)
                    if callable(drop):
                        drop()
                except Exception as exc:  # the files go anyway; the collection is then orphaned
                    log.warning("index %s: dropping its Milvus collection failed: %s", key, exc)
            self._cache.pop(key, None)
            trash = path.with_name(f".{key}.deleted")
            os.replace(path, trash)  # atomic: readers see the index or nothing
            shutil.rmtree(trash, ignore_errors=True)
            shutil.rmtree(self.thumb_root / key, ignore_errors=True)
        from facefeat.utils import lock_path

        for lock_file in (self._lock_file(key), lock_path(path), self.name_root / f"{key}.txt"):  # the server's and the index's own
            try:
                lock_file.unlink()
            except OSError:
                pass

    def update(self, key: str, fn: Callable[[Any], Any]) -> Any:
        with self.mutate(key) as index:
            return fn(index)

    # -- listing -----------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        try:
            names = os.listdir(self.index_root)
        except OSError:
            return []
        return sorted(n for n in names if KEY_RE.fullmatch(n) and (self.index_root / n / "meta.json").is_file())

    def summary(self, key: str) -> dict:
        """Key, readable name, count and model from meta.json, without loading the index."""
        meta = json.loads((self.path(key) / "meta.json").read_text(encoding="utf-8"))
        return {"indexKey": key, "indexName": self.name(key), "imageCount": int(meta.get("count", 0)),
                "model": meta.get("model_name")}
