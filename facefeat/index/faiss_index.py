"""Embedded gallery index on FAISS (the default backend).

Index types (PaddleX's names):

* ``Flat``: exact search (``IndexFlatIP`` / ``IndexFlatL2``).
* ``IVF``: ``IVF{nlist},Flat`` with ``nlist = min(N // 8, 65536)`` trained on the gallery at the
  first add/build (``IVF{n},Flat`` fixes nlist). With fewer than :data:`IVF_MIN_TRAIN` vectors
  (or fewer than an explicit nlist) there is nothing worth training: the index stays exact Flat
  (``info()["effective_index_type"] == "Flat"``, ``info()["fallback"]`` says why) and is trained as
  IVF on all its vectors at the first add that brings it to enough. ``nprobe`` defaults to
  ``min(nlist, max(16, nlist // 16))``. IVF's lists are not retrained as the gallery grows.
* ``HNSW32`` (or ``HNSW{M}``): graph index, ``efConstruction`` 200, ``efSearch`` 128 by default.
  FAISS's HNSW cannot ``remove_ids``.

Removes from Flat and HNSW are O(1) amortised: removed ids are excluded from every search by a
selector and dropped for good (HNSW: the graph rebuilt) once they are a fifth of the index.

FAISS ids are facefeat's ids: Flat and HNSW are wrapped in ``IndexIDMap2``; IVF stores ids in
its inverted lists itself (``IndexIDMap`` over IVF would corrupt ids on ``remove_ids``, because
IVF does not renumber its internal ids the way Flat does). Metrics: ``IP``, ``L2``
(squared distance) and ``COSINE`` (IP on normalised vectors). The index is derived: built from the
gallery's store at open and updated with each change (earlier facefeat versions saved it as
``vectors.faiss``; :mod:`facefeat.index.legacy` reads those folders once, to migrate them).

Thread-safety: concurrent :meth:`search` calls are safe (FAISS search is const and releases the
GIL); writes (``add``/``remove``/``save``) take the index's write lock and run alone.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index.base import FaceIndex, Hit
from facefeat.index.faiss_lib import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EF_SEARCH,
    SMALL_BATCH,
    faiss_module,
    single_thread,
)
from facefeat.index.types import parse_index_type as _parse

#: removed ids are dropped from a Flat/HNSW index (HNSW: the graph rebuilt) once they exceed this
#: many and a fifth of it; until then searches leave them out
COMPACT_MIN = 1000
#: below this many vectors an ``IVF`` index is kept exact (Flat) - training would be meaningless
IVF_MIN_TRAIN = 128
IVF_MAX_NLIST = 65536


def parse_index_type(index_type: str) -> tuple[str, dict]:
    """``(kind, params)`` of an index type (:func:`facefeat.index.types.parse_index_type` decides)."""
    t = _parse(index_type)
    return t.kind, t.params


def auto_nlist(n: int) -> int:
    return max(1, min(n // 8, IVF_MAX_NLIST))


class FaissFaceIndex(FaceIndex):
    """FAISS gallery index; see the module doc. Build one with :meth:`build` or create + :meth:`add`."""

    backend = "faiss"

    def __init__(
        self,
        dim: int,
        metric_type: str = "IP",
        index_type: str = "Flat",
        model_name: str | None = None,
        nprobe: int | None = None,
        ef_search: int = DEFAULT_EF_SEARCH,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
    ):
        t = _parse(index_type)
        kind, params = t.kind, t.params
        super().__init__(dim, metric_type, t.faiss, model_name)
        for name, v in (("nprobe", nprobe), ("ef_search", ef_search), ("ef_construction", ef_construction)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        self._kind = kind
        self._params = params
        self._nprobe = None if nprobe is None else int(nprobe)
        self._ef_search = int(ef_search)
        self._ef_construction = int(ef_construction)
        self._fallback: str | None = None
        self._nlist: int | None = None
        self._dead: set[int] = set()  # Flat/HNSW: removed ids still in the index (never searched)
        self._selector: tuple | None = None
        if kind == "IVF":
            self._fallback = "untrained: no vectors yet"
            self._index = self._new_index("Flat")
        else:
            self._index = self._new_index(kind)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        features: Any,
        labels: Sequence[str],
        paths: Sequence[str | None] | None = None,
        dim: int | None = None,
        **kw: Any,
    ) -> "FaissFaceIndex":
        """Create, train (IVF) and fill an index from a whole gallery in one go."""
        x = np.asarray(features, dtype=np.float32)
        if dim is None:
            if x.ndim != 2:
                raise InputError(f"build: expected [N, D] features, got shape {tuple(x.shape)}")
            dim = int(x.shape[1])
        index = cls(dim, **kw)
        index.add(x, labels, paths)
        return index

    @property
    def _faiss_metric(self) -> int:
        f = faiss_module()
        return f.METRIC_L2 if self._metric == "L2" else f.METRIC_INNER_PRODUCT

    def _new_index(self, kind: str, nlist: int | None = None):
        f = faiss_module()
        if kind == "Flat":
            return f.index_factory(self._dim, "IDMap2,Flat", self._faiss_metric)
        if kind == "IVF":
            idx = f.index_factory(self._dim, f"IVF{nlist},Flat", self._faiss_metric)  # an IndexIVFFlat
            # PaddleX's nlist = N // 8 means ~8 points per list: say so instead of FAISS's warning
            idx.cp.min_points_per_centroid = 8
            return idx
        if kind == "HNSW":
            idx = f.index_factory(self._dim, f"IDMap2,HNSW{self._params['M']}", self._faiss_metric)
            f.downcast_index(idx.index).hnsw.efConstruction = self._ef_construction
            self._apply_search_params(idx)
            return idx
        raise AssertionError(kind)

    def _effective_kind(self) -> str:
        return "Flat" if (self._kind == "IVF" and self._fallback) else self._kind

    def _default_nprobe(self) -> int:
        nl = self._nlist or 1
        return min(nl, max(16, nl // 16))

    def _apply_search_params(self, idx=None) -> None:
        f = faiss_module()
        idx = self._index if idx is None else idx
        sub = idx if isinstance(idx, f.IndexIVF) else f.downcast_index(idx.index)
        if isinstance(sub, f.IndexIVF):
            sub.nprobe = self._nprobe or self._default_nprobe()
        elif isinstance(sub, f.IndexHNSW):
            sub.hnsw.efSearch = self._ef_search

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every stored entry - Flat and HNSW only (their storage is flat)."""
        f = faiss_module()
        n = self._index.ntotal
        ids = f.vector_to_array(self._index.id_map).astype(np.int64)
        if n == 0:
            return ids, np.zeros((0, self._dim), np.float32)
        vecs = f.downcast_index(self._index.index).reconstruct_n(0, n)
        if self._dead:  # HNSW's removed-but-not-yet-rebuilt vectors
            keep = ~np.isin(ids, np.asarray(sorted(self._dead), np.int64))
            ids, vecs = ids[keep], vecs[keep]
        return ids, np.ascontiguousarray(vecs, dtype=np.float32)

    def _min_train(self) -> int:
        nl = self._params.get("nlist")
        return max(IVF_MIN_TRAIN, nl or 0)

    def _train_ivf(self, ids: np.ndarray, x: np.ndarray) -> None:
        nlist = self._params.get("nlist") or auto_nlist(len(x))
        idx = self._new_index("IVF", nlist)
        idx.train(x)
        idx.add_with_ids(x, ids)
        self._index = idx
        self._nlist = nlist
        self._fallback = None
        self._dead, self._selector = set(), None  # the IVF was built from the live vectors only
        self._apply_search_params()

    # ------------------------------------------------------------------ hooks
    def _backend_add(self, ids: np.ndarray, x: np.ndarray, labels: list[str], paths: list[str | None]) -> None:
        if self._kind == "IVF" and self._fallback:
            old_ids, old_x = self._all_vectors()
            total = len(old_ids) + len(ids)
            if total >= self._min_train():
                self._train_ivf(np.concatenate([old_ids, ids]), np.concatenate([old_x, x]))
                return
            self._fallback = f"too few vectors to train IVF ({total} < {self._min_train()}); exact Flat until then"
        self._index.add_with_ids(x, ids)

    def _backend_remove(self, ids: np.ndarray) -> None:
        kind = self._effective_kind()
        if kind in ("HNSW", "Flat"):
            # HNSW cannot remove, and Flat's remove moves every vector after the removed one: removed
            # ids are left out of every search (a selector), and dropped from the index only once they
            # are a fifth of it (amortised O(1) per remove)
            self._dead.update(int(i) for i in ids)
            if len(self._dead) > max(COMPACT_MIN, self._index.ntotal // 5):
                self._compact()
            self._make_selector()
            return
        n = self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))
        if n != ids.size:  # pragma: no cover - the id map and our entries disagree
            raise FaceIndexError(f"FAISS removed {n} of {ids.size} vectors; the index is inconsistent")

    def _compact(self) -> None:
        """Drop the removed-but-kept vectors for good (HNSW: a new graph; Flat: one batch remove)."""
        if self._effective_kind() == "HNSW":
            all_ids, vecs = self._all_vectors()
            idx = self._new_index("HNSW")
            if len(all_ids):
                idx.add_with_ids(np.ascontiguousarray(vecs), all_ids)
            self._index = idx
        elif self._dead:
            self._index.remove_ids(np.asarray(sorted(self._dead), np.int64))
        self._dead = set()

    def _make_selector(self) -> None:
        f = faiss_module()
        if not self._dead:
            self._selector = None
            return
        batch = f.IDSelectorBatch(np.asarray(sorted(self._dead), np.int64))
        self._selector = (batch, f.IDSelectorNot(batch))  # SWIG keeps raw pointers: hold both

    def _backend_search(self, q: np.ndarray, k: int) -> list[list[Hit]]:
        kw = {}
        if self._dead and self._selector is not None:
            # one SearchParameters per call: IndexIDMap swaps its selector in place while searching
            hnsw = self._effective_kind() == "HNSW"
            params = faiss_module().SearchParametersHNSW() if hnsw else faiss_module().SearchParameters()
            params.sel = self._selector[1]
            if hnsw:
                params.efSearch = self._ef_search
            kw = {"params": params}
        if len(q) < SMALL_BATCH:
            with single_thread():
                scores, ids = self._index.search(q, k, **kw)
        else:
            scores, ids = self._index.search(q, k, **kw)
        out: list[list[Hit]] = []
        for srow, irow in zip(scores, ids):
            hits = []
            for s, i in zip(srow.tolist(), irow.tolist()):
                if i < 0:
                    continue
                h = self._hit(i, s)
                if h is not None:
                    hits.append(h)
            out.append(hits)
        return out

    def _backend_meta(self) -> dict:
        return {
            "effective_index_type": self._effective_index_type(),
            "params": {
                "centroids": self._centroids_b64(),
                "nlist": self._nlist,
                "nprobe": self._nprobe,
                "ef_search": self._ef_search,
                "ef_construction": self._ef_construction,
                "M": self._params.get("M"),
                "fallback": self._fallback,
            },
        }

    def _centroids_b64(self) -> str | None:
        """A trained IVF's coarse centroids (base64 float32), kept in the gallery's metadata so that
        reopening reproduces the same inverted lists (and the same search results)."""
        if self._effective_kind() != "IVF":
            return None
        import base64

        f = faiss_module()
        c = f.rev_swig_ptr(f.downcast_index(self._index.quantizer).get_xb(), self._nlist * self._dim)
        return base64.b64encode(np.asarray(c, np.float32).tobytes()).decode("ascii")

    def _restore_ivf(self, b64: str, nlist: int) -> None:
        import base64

        f = faiss_module()
        c = np.frombuffer(base64.b64decode(b64), np.float32).reshape(int(nlist), self._dim)
        quantizer = (f.IndexFlatL2 if self._metric == "L2" else f.IndexFlatIP)(self._dim)
        quantizer.add(np.ascontiguousarray(c))
        idx = f.IndexIVFFlat(quantizer, self._dim, int(nlist), self._faiss_metric)
        idx.is_trained = True
        idx.own_fields = True
        quantizer.this.disown()
        self._index, self._nlist, self._fallback = idx, int(nlist), None
        self._apply_search_params()

    def _effective_index_type(self) -> str:
        k = self._effective_kind()
        if k == "IVF":
            return f"IVF{self._nlist},Flat"
        if k == "HNSW":
            return f"HNSW{self._params['M']}"
        return "Flat"

    def _backend_info(self) -> dict:
        kind = self._effective_kind()
        if kind == "IVF":
            params = {"nlist": self._nlist, "nprobe": self._nprobe or self._default_nprobe()}
        elif kind == "HNSW":
            params = {"M": self._params["M"], "ef_construction": self._ef_construction, "ef_search": self._ef_search}
        else:
            params = {}
        return {"effective_index_type": self._effective_index_type(), "fallback": self._fallback, "params": params}

    def _backend_vectors(self, ids: np.ndarray) -> np.ndarray:
        f = faiss_module()
        if not len(ids):
            return np.zeros((0, self._dim), np.float32)
        if self._effective_kind() == "IVF" and self._index.direct_map.type != f.DirectMap.Hashtable:
            self._index.set_direct_map_type(f.DirectMap.Hashtable)
        return np.ascontiguousarray(self._index.reconstruct_batch(np.ascontiguousarray(ids, np.int64)), np.float32)

    @classmethod
    def _from_meta(cls, meta: dict, **kw: Any) -> "FaissFaceIndex":
        params = meta.get("params") or {}
        index = cls(int(meta["dim"]), metric_type=meta["metric_type"], index_type=meta["index_type"],
                    model_name=meta.get("model_name"), nprobe=kw.get("nprobe", params.get("nprobe")),
                    ef_search=kw.get("ef_search", params.get("ef_search") or DEFAULT_EF_SEARCH),
                    ef_construction=params.get("ef_construction") or DEFAULT_EF_CONSTRUCTION)
        if index._kind == "IVF" and params.get("centroids") and params.get("nlist"):
            index._restore_ivf(params["centroids"], params["nlist"])
        return index


__all__ = ["FaissFaceIndex", "IVF_MIN_TRAIN", "parse_index_type"]
