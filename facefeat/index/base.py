"""The gallery index interface shared by every backend (FAISS embedded, Milvus for scale).

A :class:`FaceIndex` maps integer ids to ``(feature, label, path)``. Ids are assigned by the index,
monotonically, and never reused (not even after a remove, nor across save/load), so an id handed
to a client stays meaningful for the life of the index.

Scores (:class:`Hit.score`):

* ``IP``: the inner product - cosine similarity for L2-normalised features (facefeat's features
  are); higher is better, hits sorted descending.
* ``COSINE``: cosine similarity (inputs are normalised by the index); higher is better.
* ``L2``: the *squared* Euclidean distance (what FAISS and Milvus both return); lower is better,
  hits sorted ascending.

On-disk layout written by :meth:`FaceIndex.save` (atomically: a temp dir that replaces the old one
by rename, so a crash mid-save leaves the previous index loadable)::

    meta.json     backend, format version, model_name, dim, metric_type, index_type, next_id, count,
                  revision, revision_id, checksums (sha256 of every other file), ...
    labels.json   {"<id>": {"label": ..., "path": ...}, ...}
    <backend files>  FAISS: vectors.faiss; Milvus: milvus.db (milvus-lite) or nothing (remote server)

Every writer - CLI, library, server - serialises on the index folder's lock
(:func:`facefeat.utils.dir_lock`, a ``.<name>.lock`` file beside it) inside ``save`` and ``load``,
which also restore the last complete version after a crashed save (:func:`facefeat.utils.recover_dir`).
``save`` checks the revision: an index loaded from (or saved to) a folder that another writer
has saved since is refused with :class:`IndexConflict` instead of overwriting that writer's
changes. :func:`edit_index` holds the lock from load to save, so concurrent editors all land.
Checksums are verified at load: a corrupted file is an FaceIndexError, never a silent wrong answer.

Thread-safety: every index guards its state with a readers-writer lock: any number of concurrent
``search``/``ids``/``labels``/``info`` calls, while ``add``/``remove``/``save`` run exclusively.
"""

from __future__ import annotations

import abc
import importlib
import json
import os
import threading
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index.integrity import (
    META_FILE,
    checksum,
    checksummed_files,
    folder_key,
    locked,
    peek_revision,
    verify_checksums,
)
from facefeat.utils import l2_normalize

FORMAT_NAME = "facefeat-index"
FORMAT_VERSION = 1
LABELS_FILE = "labels.json"
METRIC_TYPES = ("IP", "L2", "COSINE")
#: the one table of index backends: name -> "module:class", imported only when used
BACKENDS = {
    "faiss": "facefeat.index.faiss_index:FaissFaceIndex",
    "milvus": "facefeat.index.milvus_index:MilvusFaceIndex",
}
#: the index types each backend takes when none is given
DEFAULT_INDEX_TYPES = {"faiss": "Flat", "milvus": "FLAT"}


def backend_class(backend: str) -> type["FaceIndex"]:
    """The FaceIndex subclass of a backend name (imported on first use)."""
    target = BACKENDS.get(str(backend).lower())
    if target is None:
        raise InputError(f"unknown index backend {backend!r}; use {' or '.join(repr(b) for b in BACKENDS)}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class IndexConflict(FaceIndexError):
    """Another writer saved the index since this copy was loaded; nothing was saved."""


@dataclass(frozen=True)
class Hit:
    """One search result: the gallery entry's id, label and path, and its score (see module doc)."""

    id: int
    label: str
    score: float
    path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class _RWLock:
    """Many readers or one writer; writers are not starved (new readers wait behind a writer)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._writer_depth = 0
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._writer == me:  # a writer may read its own state
            yield
            return
        with self._cond:
            while self._writer is not None or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._writer_depth += 1
            else:
                self._waiting_writers += 1
                while self._writer is not None or self._readers:
                    self._cond.wait()
                self._waiting_writers -= 1
                self._writer = me
                self._writer_depth = 1
        try:
            yield
        finally:
            with self._cond:
                self._writer_depth -= 1
                if not self._writer_depth:
                    self._writer = None
                    self._cond.notify_all()


def normalize_metric(metric_type: str) -> str:
    m = str(metric_type).upper()
    if m not in METRIC_TYPES:
        raise InputError(f"metric_type {metric_type!r} is not supported; use one of {', '.join(METRIC_TYPES)}")
    return m


def higher_is_better(metric_type: str) -> bool:
    return metric_type != "L2"


def _short(items: Sequence[Any], n: int = 10) -> str:
    s = ", ".join(str(x) for x in list(items)[:n])
    return s + (f", ... ({len(items)} in all)" if len(items) > n else "")


def as_features(x: Any, dim: int, what: str = "features") -> np.ndarray:
    """Validate ``[N, D]`` (or one ``[D]`` vector) finite float features; return C-contiguous float32."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: cannot convert to a float32 array ({exc})") from exc
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InputError(f"{what}: expected a [N, {dim}] array, got shape {tuple(arr.shape)}")
    if arr.shape[1] != dim:
        raise InputError(
            f"{what}: wrong feature dimension: the index expects dim {dim}, got {arr.shape[1]} "
            "(was the index built with another model?)"
        )
    bad = np.where(~np.isfinite(arr).all(axis=1))[0]
    if bad.size:
        raise InputError(f"{what}: rows {_short(bad.tolist())} contain NaN or infinite values")
    return np.ascontiguousarray(arr)


def _read_json(path: Path, directory: Path, what: str) -> Any:
    if not path.is_file():
        raise FaceIndexError(f"{directory}: not a loadable face index: {path.name} is missing ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FaceIndexError(f"{directory}: {path.name} is corrupt ({exc})") from exc


def read_meta(directory: str | os.PathLike) -> dict:
    """Read and sanity-check ``meta.json``; FaceIndexError names the directory and the problem."""
    d = Path(directory)
    if not d.exists():
        raise FaceIndexError(f"{d}: index directory does not exist")
    if not d.is_dir():
        raise FaceIndexError(f"{d}: is not a directory (an index is a directory holding {META_FILE})")
    meta = _read_json(d / META_FILE, d, "not an index, or its save never finished")
    if not isinstance(meta, dict):
        raise FaceIndexError(f"{d}: {META_FILE} is corrupt (expected a JSON object)")
    if meta.get("format") not in (None, FORMAT_NAME):
        raise FaceIndexError(f"{d}: {META_FILE} has format {meta.get('format')!r}, not {FORMAT_NAME!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FaceIndexError(
            f"{d}: {META_FILE} has format_version {version!r}; this facefeat reads versions up to "
            f"{FORMAT_VERSION} (upgrade facefeat)"
        )
    missing = [k for k in ("backend", "dim", "metric_type", "index_type", "next_id", "count") if k not in meta]
    if missing:
        raise FaceIndexError(f"{d}: {META_FILE} is corrupt: missing keys {', '.join(missing)}")
    if meta["backend"] not in BACKENDS:
        raise FaceIndexError(f"{d}: {META_FILE} names unknown backend {meta['backend']!r}")
    for k in ("dim", "next_id", "count"):
        if not isinstance(meta[k], int) or meta[k] < 0 or (k == "dim" and meta[k] == 0):
            raise FaceIndexError(f"{d}: {META_FILE} is corrupt: {k} = {meta[k]!r}")
    if meta["metric_type"] not in METRIC_TYPES:
        raise FaceIndexError(f"{d}: {META_FILE} is corrupt: metric_type = {meta['metric_type']!r}")
    return meta


def read_labels(directory: str | os.PathLike, meta: dict) -> dict[int, tuple[str, str | None]]:
    d = Path(directory)
    raw = _read_json(d / LABELS_FILE, d, "the id -> label map")
    if not isinstance(raw, dict):
        raise FaceIndexError(f"{d}: {LABELS_FILE} is corrupt (expected a JSON object)")
    out: dict[int, tuple[str, str | None]] = {}
    try:
        for k, v in raw.items():
            out[int(k)] = (str(v["label"]), v.get("path"))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise FaceIndexError(f"{d}: {LABELS_FILE} is corrupt (entry {k!r}: {exc!r})") from exc
    if len(out) != meta["count"]:
        raise FaceIndexError(
            f"{d}: count mismatch: {META_FILE} says {meta['count']} entries, {LABELS_FILE} holds {len(out)}"
        )
    if out and max(out) >= meta["next_id"]:
        raise FaceIndexError(f"{d}: {LABELS_FILE} holds id {max(out)} >= next_id {meta['next_id']} ({META_FILE})")
    return out


def write_json(path: Path, obj: Any) -> None:
    """Write JSON into a file inside a temp dir (the directory rename is what makes it atomic)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


class FaceIndex(abc.ABC):
    """Abstract gallery index. Subclasses implement the ``_backend_*`` hooks."""

    backend: str = ""

    def __init__(self, dim: int, metric_type: str = "IP", index_type: str = "Flat", model_name: str | None = None):
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim <= 0:
            raise InputError(f"dim must be a positive integer, got {dim!r}")
        self._dim = int(dim)
        self._metric = normalize_metric(metric_type)
        self._index_type = index_type
        self._model_name = model_name
        self._entries: dict[int, tuple[str, str | None]] = {}
        self._next_id = 0
        self._lock = _RWLock()
        self._revision = 0
        self._seen: dict[str, str | None] = {}  # folder -> revision_id this copy loaded or saved there
        self._changes = 0  # add/remove calls, so edit_index knows whether to save

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric_type(self) -> str:
        return self._metric

    @property
    def index_type(self) -> str:
        return self._index_type

    @property
    def model_name(self) -> str | None:
        return self._model_name

    @property
    def next_id(self) -> int:
        return self._next_id

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self._dim}, metric_type={self._metric!r}, "
            f"index_type={self._index_type!r}, model_name={self._model_name!r}, count={len(self)})"
        )

    # ------------------------------------------------------------------ public API
    def ids(self) -> list[int]:
        with self._lock.read():
            return sorted(self._entries)

    def labels(self) -> dict[int, str]:
        with self._lock.read():
            return {i: self._entries[i][0] for i in sorted(self._entries)}

    def paths(self) -> dict[int, str | None]:
        with self._lock.read():
            return {i: self._entries[i][1] for i in sorted(self._entries)}

    def add(self, features: Any, labels: Sequence[str], paths: Sequence[str | None] | None = None) -> list[int]:
        """Add ``[N, D]`` features with their labels (and image paths); return their new ids."""
        x = as_features(features, self._dim)
        if isinstance(labels, str):
            labels = [labels]
        labels = list(labels)
        if len(labels) != len(x):
            raise InputError(f"add: {len(x)} features but {len(labels)} labels; pass one label per feature")
        for i, lab in enumerate(labels):
            if not isinstance(lab, str) or not lab.strip():
                raise InputError(f"add: label #{i} is {lab!r}; labels must be non-empty strings")
        if paths is None:
            paths = [None] * len(x)
        else:
            if isinstance(paths, str):
                paths = [paths]
            paths = [None if p is None else str(p) for p in paths]
            if len(paths) != len(x):
                raise InputError(f"add: {len(x)} features but {len(paths)} paths; pass one path per feature or None")
        if len(x) == 0:
            return []
        if self._metric == "COSINE":
            x = l2_normalize(x)
        with self._lock.write():
            ids = np.arange(self._next_id, self._next_id + len(x), dtype=np.int64)
            self._backend_add(ids, x, labels, paths)
            for i, lab, p in zip(ids.tolist(), labels, paths):
                self._entries[i] = (lab, p)
            self._next_id += len(x)
            self._changes += 1
            return ids.tolist()

    def remove(self, ids: Iterable[int]) -> int:
        """Remove entries by id; unknown ids raise InputError (listing them) and nothing is removed."""
        if isinstance(ids, (int, np.integer)):
            ids = [ids]
        try:
            wanted = sorted({int(i) for i in ids})
        except (TypeError, ValueError) as exc:
            raise InputError(f"remove: ids must be integers ({exc})") from exc
        if not wanted:
            return 0
        with self._lock.write():
            unknown = [i for i in wanted if i not in self._entries]
            if unknown:
                raise InputError(f"remove: unknown ids {_short(unknown)}; nothing was removed")
            self._backend_remove(np.asarray(wanted, dtype=np.int64))
            for i in wanted:
                del self._entries[i]
            self._changes += 1
            return len(wanted)

    def relabel(self, ids: Iterable[int], label: str) -> int:
        """Give entries a new label (rename a person); unknown ids raise and nothing changes."""
        if not isinstance(label, str) or not label.strip():
            raise InputError(f"relabel: label {label!r} must be a non-empty string")
        wanted = sorted({int(i) for i in ids})
        with self._lock.write():
            unknown = [i for i in wanted if i not in self._entries]
            if unknown:
                raise InputError(f"relabel: unknown ids {_short(unknown)}; nothing was changed")
            if wanted:
                self._backend_relabel(np.asarray(wanted, dtype=np.int64), label)
            for i in wanted:
                self._entries[i] = (label, self._entries[i][1])
            return len(wanted)

    def search(self, queries: Any, topk: int = 5) -> list[list[Hit]]:
        """Top-k hits per query row, best first (see the module doc for what ``score`` means)."""
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
            raise InputError(f"search: topk must be a positive integer, got {topk!r}")
        q = as_features(queries, self._dim, what="queries")
        if self._metric == "COSINE":
            q = l2_normalize(q)
        with self._lock.read():
            k = min(int(topk), len(self._entries))
            if k == 0 or len(q) == 0:
                return [[] for _ in range(len(q))]
            results = self._backend_search(q, k)
        reverse = higher_is_better(self._metric)
        return [sorted(hits, key=lambda h: h.score, reverse=reverse)[:k] for hits in results]

    def check_model(self, model_name: str | None, dim: int | None = None) -> None:
        """Raise FaceIndexError if this index was built with another model or feature dimension."""
        _check_model(self._model_name, self._dim, model_name, dim)

    def info(self) -> dict:
        with self._lock.read():
            d = {
                "backend": self.backend,
                "model_name": self._model_name,
                "dim": self._dim,
                "metric_type": self._metric,
                "index_type": self._index_type,
                "count": len(self._entries),
                "next_id": self._next_id,
                "num_labels": len({v[0] for v in self._entries.values()}),
            }
            d.update(self._backend_info())
            return d

    def save(self, directory: str | os.PathLike) -> Path:
        """Save atomically into ``directory`` (replacing a previous save only once complete).

        Holds the folder's lock; raises :class:`IndexConflict` (saving nothing) when this copy was
        loaded from or saved to ``directory`` and another writer has saved there since.
        """
        from facefeat.utils import atomic_dir

        d = Path(directory)
        key = folder_key(d)
        with locked(d, writing=True), self._lock.write():  # the folder first: searches go on while it waits
            exists, disk_rev = peek_revision(d)
            if exists and key in self._seen and disk_rev != self._seen[key]:
                raise IndexConflict(
                    f"{d}: the index was changed by another writer since this copy was loaded (revision "
                    f"{self._seen[key]} -> {disk_rev}); nothing was saved: load it again and redo the change "
                    "(facefeat.index.edit_index does both under the lock)")
            revision, revision_id = self._revision + 1, uuid.uuid4().hex
            try:
                with atomic_dir(d) as tmp:
                    self._backend_save(tmp, d)
                    write_json(tmp / LABELS_FILE, {str(i): {"label": lab, "path": p} for i, (lab, p) in sorted(self._entries.items())})
                    meta = self._meta()
                    meta.update(revision=revision, revision_id=revision_id,
                                checksums={rel: checksum(tmp / rel) for rel in checksummed_files(tmp)})
                    write_json(tmp / META_FILE, meta)  # written last: its presence marks a full save
            except (OSError, RuntimeError) as exc:
                raise FaceIndexError(f"{d}: cannot save the index ({exc}); the previous save, if any, is intact") from exc
            self._revision = revision
            self._seen[key] = revision_id
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike, **kw: Any) -> "FaceIndex":
        """Load a saved index; FaceIndexError names the directory and what is wrong with it."""
        return _load(Path(directory), cls if cls.backend else None, kw)

    # ------------------------------------------------------------------ helpers for subclasses
    def _meta(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "backend": self.backend,
            "model_name": self._model_name,
            "dim": self._dim,
            "metric_type": self._metric,
            "index_type": self._index_type,
            "next_id": self._next_id,
            "count": len(self._entries),
            **self._backend_meta(),
        }

    def _restore(self, meta: dict, entries: dict[int, tuple[str, str | None]]) -> None:
        self._entries = dict(entries)
        self._next_id = int(meta["next_id"])

    def _hit(self, id_: int, score: float) -> Hit | None:
        e = self._entries.get(int(id_))
        if e is None:
            return None
        return Hit(int(id_), e[0], float(score), e[1])

    # ------------------------------------------------------------------ backend hooks
    @abc.abstractmethod
    def _backend_add(self, ids: np.ndarray, x: np.ndarray, labels: list[str], paths: list[str | None]) -> None: ...

    @abc.abstractmethod
    def _backend_remove(self, ids: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _backend_search(self, q: np.ndarray, k: int) -> list[list[Hit]]: ...

    @abc.abstractmethod
    def _backend_save(self, tmp: Path, final: Path) -> None: ...

    @classmethod
    @abc.abstractmethod
    def _backend_load(
        cls, directory: Path, meta: dict, entries: dict[int, tuple[str, str | None]], **kw: Any
    ) -> "FaceIndex": ...

    def _backend_relabel(self, ids: np.ndarray, label: str) -> None:
        """Backends that store labels beside the vectors override this (FAISS keeps none)."""

    def _backend_meta(self) -> dict:
        return {}

    def _backend_info(self) -> dict:
        return {}


def _check_model(have_name: str | None, have_dim: int, model_name: str | None, dim: int | None) -> None:
    if dim is not None and int(dim) != have_dim:
        raise FaceIndexError(
            f"index holds {have_dim}-d features (model '{have_name}') but the model "
            f"'{model_name}' gives {dim}-d ones; rebuild the index with this model"
        )
    if model_name and have_name and model_name != have_name:
        raise FaceIndexError(
            f"index was built with model '{have_name}', not '{model_name}'; features of different "
            "models are not comparable: rebuild the index, or use the model it was built with"
        )


def check_model(index: "FaceIndex | dict", model_name: str | None, dim: int | None = None) -> None:
    """Function form of :meth:`FaceIndex.check_model`; ``index`` may also be a saved index's
    :func:`read_meta` (to check before loading it)."""
    if isinstance(index, dict):
        _check_model(index.get("model_name"), int(index["dim"]), model_name, dim)
    else:
        index.check_model(model_name, dim)


def create_index(
    backend: str = "faiss",
    dim: int | None = None,
    metric_type: str = "IP",
    index_type: str | None = None,
    model_name: str | None = None,
    **kw: Any,
) -> FaceIndex:
    """Create an empty index. ``backend``: ``"faiss"`` (embedded, default) or ``"milvus"``.

    ``index_type``: FAISS ``Flat`` | ``IVF`` | ``IVF{nlist},Flat`` | ``HNSW32``; Milvus ``FLAT`` |
    ``IVF_FLAT`` | ``HNSW`` (the other spelling is accepted by both). Other keyword arguments go
    to the backend's constructor (e.g. ``ef_search``, ``nprobe``; Milvus ``uri``, ``collection``).
    """
    if dim is None:
        raise InputError("create_index: dim is required (the model's feature dimension)")
    b = str(backend).lower()
    if b not in BACKENDS:
        raise InputError(f"create_index: unknown backend {backend!r}; use 'faiss' or 'milvus'")
    return backend_class(b)(dim, metric_type=metric_type, index_type=index_type or DEFAULT_INDEX_TYPES[b],
                            model_name=model_name, **kw)


def _load(d: Path, cls: type[FaceIndex] | None, kw: dict) -> FaceIndex:
    with locked(d, writing=False):
        meta = read_meta(d)
        if cls is not None and meta["backend"] != cls.backend:
            raise FaceIndexError(f"{d}: holds a '{meta['backend']}' index, not a '{cls.backend}' one; use load_index()")
        verify_checksums(d, meta)
        entries = read_labels(d, meta)
        index = backend_class(meta["backend"])._backend_load(d, meta, entries, **kw)
    rev = meta.get("revision")
    index._revision = rev if isinstance(rev, int) and rev >= 0 else 0
    index._seen[folder_key(d)] = meta.get("revision_id")
    return index


def load_index(directory: str | os.PathLike, **kw: Any) -> FaceIndex:
    """Load a saved index of any backend (dispatching on ``meta.json``'s ``backend``)."""
    return _load(Path(directory), None, kw)


@contextmanager
def edit_index(directory: str | os.PathLike, **kw: Any) -> Iterator[FaceIndex]:
    """Load the index at ``directory``, let the block change it, and save it if it changed - all
    under the folder's lock, so concurrent editors (CLI runs, scripts, server workers) take turns
    and every change lands. Do slow work (embedding) before entering."""
    d = Path(directory)
    with locked(d, writing=True):
        index = load_index(d, **kw)
        before = index._changes
        yield index
        if index._changes != before:
            index.save(d)


__all__ = [
    "BACKENDS",
    "FaceIndex",
    "Hit",
    "IndexConflict",
    "backend_class",
    "check_model",
    "create_index",
    "edit_index",
    "load_index",
    "read_meta",
    "METRIC_TYPES",
    "FORMAT_VERSION",
]
