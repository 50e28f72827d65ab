"""The gallery index interface shared by every vector engine (FAISS embedded, Milvus for scale).

A :class:`FaceIndex` maps integer ids to ``(feature, label, path)``. Ids are assigned in order and
never reused (not even after a remove), so an id handed to a client stays meaningful for the life
of the gallery.

Scores (:class:`Hit.score`): ``IP`` the inner product (cosine similarity for facefeat's
L2-normalised features; higher is better), ``COSINE`` cosine similarity (inputs normalised by the
index), ``L2`` the *squared* Euclidean distance (lower is better).

Where the truth lives: a gallery is stored in a database (:mod:`facefeat.index.store`: a
``gallery.db`` SQLite file inside a gallery directory, or PostgreSQL); the FaceIndex is the
in-memory vector index *derived* from it. Three ways to hold one:

* in memory (``create_index``): nothing is stored until :meth:`FaceIndex.save`;
* a *copy* (``load_index(dir)``): changes stay in memory until ``save(dir)``, which writes them
  in one transaction - refused with :class:`IndexConflict` when another writer changed the
  gallery since (PaddleX's ``append_index(index=dir)`` then ``save``);
* *attached* (``edit_index(dir)``, the service): every add/remove/relabel is one transaction,
  durable when the call returns; :meth:`FaceIndex.refresh` replays what other writers changed.

Thread-safety: a readers-writer lock per index: concurrent ``search``/``ids``/``labels``/``info``,
exclusive writes.
"""

from __future__ import annotations

import abc
import json
from typing import Any, Iterable, Sequence

import numpy as np

from facefeat.errors import InputError
from facefeat.index.common import (  # noqa: F401  (re-exported: the index's public pieces)
    METRIC_TYPES,
    AddResult,
    Hit,
    IndexConflict,
    _check_model,
    _per_row,
    _short,
    as_features,
    check_model,
    higher_is_better,
    normalize_metric,
)
from facefeat.index.factory import BACKENDS, DEFAULT_INDEX_TYPES, backend_class, create_index  # noqa: F401
from facefeat.index.labels import normalize_label
from facefeat.index.persist import StoredIndex
from facefeat.index.rwlock import RWLock
from facefeat.index.store import GalleryStore, Op, SampleRecord
from facefeat.utils import l2_normalize

class FaceIndex(StoredIndex, abc.ABC):
    """Abstract gallery index. Subclasses implement the ``_backend_*`` hooks; ``save``, ``load`` and
    ``refresh`` come from :class:`~facefeat.index.persist.StoredIndex`."""

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
        self._lock = RWLock()
        #: the store this index came from or was last saved to, and its change counter reflected here
        self._origin: GalleryStore | None = None
        self._seq = 0
        self._attached = False  # every change is written to _origin as it happens
        self._journal: list[Op] = []  # changes since load/save, not yet in _origin (a copy)
        self._extras: dict[int, SampleRecord] = {}  # records of samples not yet in _origin
        #: a readable name for the gallery (the service's indexName), kept in the store's metadata
        self.display_name: str | None = None
        self._seen: dict[str, int] = {}  # store location -> counter when this copy last loaded/saved there

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

    @property
    def store(self) -> GalleryStore | None:
        """The database this index was loaded from, last saved to, or writes through to."""
        return self._origin

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self._dim}, metric_type={self._metric!r}, "
            f"index_type={self._index_type!r}, model_name={self._model_name!r}, count={len(self)})"
        )

    # ------------------------------------------------------------------ reading
    def ids(self) -> list[int]:
        with self._lock.read():
            return sorted(self._entries)

    def labels(self) -> dict[int, str]:
        with self._lock.read():
            return {i: self._entries[i][0] for i in sorted(self._entries)}

    def paths(self) -> dict[int, str | None]:
        with self._lock.read():
            return {i: self._entries[i][1] for i in sorted(self._entries)}

    def record(self, sample_id: int) -> SampleRecord | None:
        """What is kept of a sample beside its feature (crop, figures, detection), or None."""
        with self._lock.read():
            if int(sample_id) not in self._entries:
                return None
            if int(sample_id) in self._extras:
                return self._extras[int(sample_id)]
            origin = self._origin
        return None if origin is None else origin.records([int(sample_id)]).get(int(sample_id))

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
                "store": None if self._origin is None else self._origin.location,
                "change": self._seq,
                "name": self.display_name,
            }
            d.update(self._backend_info())
            return d

    # ------------------------------------------------------------------ changing
    def add(self, features: Any, labels: Sequence[str], paths: Sequence[str | None] | None = None,
            records: Sequence[SampleRecord | None] | None = None) -> list[int]:
        """Add ``[N, D]`` features with their labels (and image paths, and what to keep of each
        sample); return their ids (see :meth:`add_samples` for duplicates)."""
        return self.add_samples(features, labels, paths, records).ids

    def add_samples(self, features: Any, labels: Sequence[str], paths: Sequence[str | None] | None = None,
                    records: Sequence[SampleRecord | None] | None = None) -> AddResult:
        """Add samples; a sample whose record's content hash is already stored for the same person
        (or earlier in this call) is a duplicate: not added, reported, given the existing id."""
        x = as_features(features, self._dim)
        if isinstance(labels, str):
            labels = [labels]
        labels = [normalize_label(lab, f"add: label #{i}") for i, lab in enumerate(labels)]
        if len(labels) != len(x):
            raise InputError(f"add: {len(x)} features but {len(labels)} labels; pass one label per feature")
        paths = _per_row(paths, len(x), "paths", str)
        records = _per_row(records, len(x), "records", None)
        if len(x) == 0:
            return AddResult([])
        if self._metric == "COSINE":
            x = l2_normalize(x)
        with self._lock.write():
            if self._attached:
                self._sync_locked()
            pairs = [(lab, r.content_hash) for lab, r in zip(labels, records) if r is not None and r.content_hash]
            known = self._known_hashes(pairs) if pairs else {}
            first: dict[tuple[str, str], int] = {}
            dup: dict[int, tuple[str, str]] = {}
            for p, (lab, r) in enumerate(zip(labels, records)):
                key = (lab, r.content_hash) if r is not None and r.content_hash else None
                if key is not None and (key in known or key in first):
                    dup[p] = key
                elif key is not None:
                    first[key] = p
            keep = [p for p in range(len(x)) if p not in dup]
            new: list[int] = []
            if keep:
                op = Op("add", None, x[keep], [labels[p] for p in keep], [paths[p] for p in keep],
                        [records[p] for p in keep])
                new = self._write(op)
            by_pos = dict(zip(keep, new))
            ids = [by_pos[p] if p in by_pos else known.get(dup[p], by_pos.get(first.get(dup[p], -1), -1))
                   for p in range(len(x))]
            return AddResult(ids, sorted(dup))

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
            self._check_known(wanted, "remove", "removed")
            self._write(Op("remove", wanted))
            return len(wanted)

    def relabel(self, ids: Iterable[int], label: str) -> int:
        """Give entries a new label (rename a person); unknown ids raise and nothing changes."""
        label = normalize_label(label, "relabel: label")
        wanted = sorted({int(i) for i in ids})
        with self._lock.write():
            self._check_known(wanted, "relabel", "changed")
            if wanted:
                self._write(Op("relabel", wanted, label=label))
            return len(wanted)

    # ------------------------------------------------------------------ internals
    def _check_known(self, wanted: list[int], what: str, done: str) -> None:
        if self._attached:
            self._sync_locked()
        unknown = [i for i in wanted if i not in self._entries]
        if unknown:
            raise InputError(f"{what}: unknown ids {_short(unknown)}; nothing was {done}")

    def _write(self, op: Op) -> list[int]:
        """Apply one change (the caller holds the write lock): through the store when attached,
        else in memory (journalled for the next save when loaded from a store)."""
        if self._attached:
            seq, (ids,) = self._origin.write([op])
            self._sync_locked(upto=seq - 1)  # what other writers did first
            op.ids = ids
            self._apply(op)
            self._seq = seq
            self._store_meta_if_changed()
            return ids
        if op.kind == "add":
            op.ids = list(range(self._next_id, self._next_id + len(op.features)))
            for i, r in zip(op.ids, op.records or []):
                if r is not None:
                    self._extras[i] = r
        elif op.kind == "remove":
            for i in op.ids:
                self._extras.pop(i, None)
        self._apply(op)
        if self._origin is not None:
            self._journal.append(op)
            self._store_meta_if_changed()
        return list(op.ids)

    def _store_meta_if_changed(self) -> None:
        """Record the engine's trained state (IVF's centroids) when an add trained it."""
        meta = self._meta()
        if self._origin is None or meta.get("params", {}).get("centroids") == \
                self._origin.meta().get("params", {}).get("centroids"):
            return
        op = Op("meta", label=json.dumps(meta))
        if self._attached:
            self._seq, _ = self._origin.write([op])
        elif not any(o.kind == "meta" and o.label == op.label for o in self._journal):
            self._journal.append(op)

    def _apply(self, op: Op) -> None:
        """Change the in-memory state (entries and the vector engine) by one op with its ids."""
        ids = np.asarray(op.ids, dtype=np.int64)
        if op.kind == "add":
            labels, paths = list(op.labels), list(op.paths or [None] * len(ids))
            if len(ids):
                self._backend_add(ids, np.ascontiguousarray(op.features, np.float32), labels, paths)
            for i, lab, p in zip(ids.tolist(), labels, paths):
                self._entries[i] = (lab, p)
            if len(ids):
                self._next_id = max(self._next_id, int(ids.max()) + 1)
        elif op.kind == "remove":
            if len(ids):
                self._backend_remove(ids)
            for i in ids.tolist():
                del self._entries[i]
        elif op.kind == "relabel":
            if len(ids):
                self._backend_relabel(ids, op.label)
            for i in ids.tolist():
                self._entries[i] = (op.label, self._entries[i][1])

    def _meta(self) -> dict:
        """What the store keeps about the gallery itself."""
        meta = {"backend": self.backend, "model_name": self._model_name, "dim": self._dim,
                "metric_type": self._metric, "index_type": self._index_type, **self._backend_meta()}
        if self.display_name:
            meta["name"] = self.display_name
        return meta

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
    def _backend_vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (to copy a gallery that lives only in memory)."""

    @classmethod
    def _from_meta(cls, meta: dict, **kw: Any) -> "FaceIndex":
        """An empty index configured as a stored gallery's metadata says (``kw`` overrides)."""
        return cls(int(meta["dim"]), metric_type=meta["metric_type"], index_type=meta["index_type"],
                   model_name=meta.get("model_name"), **kw)

    def _backend_relabel(self, ids: np.ndarray, label: str) -> None:
        """Backends that store labels beside the vectors override this (FAISS keeps none)."""

    def _backend_meta(self) -> dict:
        return {}

    def _backend_info(self) -> dict:
        return {}


__all__ = ["AddResult", "BACKENDS", "FaceIndex", "Hit", "IndexConflict", "METRIC_TYPES", "as_features",
           "backend_class", "check_model", "create_index", "higher_is_better"]
