"""Gallery index on Milvus (``pymilvus.MilvusClient``): milvus-lite on a local ``*.db`` path, or a
Milvus server at ``http://host:19530``, with the same interface as the FAISS index.

Collection schema: ``id`` INT64 primary key (``auto_id=False``: facefeat assigns ids),
``vector`` FLOAT_VECTOR(dim), ``label`` VARCHAR(1024), ``path`` VARCHAR(4096) (``""`` for none);
created with ``consistency_level="Strong"`` so a search sees every add/remove before it.
Index types: ``FLAT``, ``IVF_FLAT`` (``nlist`` 128, search ``nprobe`` 16) and ``HNSW`` (``M`` 32,
``efConstruction`` 200, search ``ef`` 128, raised to top-k when smaller); FAISS spellings
(``Flat``, ``IVF``, ``HNSW32``) are accepted. Metrics ``IP``, ``L2`` (squared distance), ``COSINE``.

Where the data lives:

* ``uri=None`` (default): a private milvus-lite database in a temp directory, removed by
  :meth:`close` (or at exit). :meth:`save` writes a copy into the index directory
  (``<dir>/milvus.db``), and :meth:`load` opens a private working copy of it - so, like the FAISS
  index, the saved directory changes only when you save again.
* ``uri="path/to/x.db"``: milvus-lite on that path, used in place. ``save`` still embeds a copy
  (``embed=True``, the default for local paths) unless ``embed=False``, which records the path.
* ``uri="http://host:19530"``: a Milvus server. ``save`` flushes and records ``uri`` +
  ``collection`` (never the token: pass ``token=`` to :func:`load_index` again); ``load``
  reconnects and checks that the collection still holds the saved count.

milvus-lite allows one process per database; several indexes in one process may share a
database file if they use different collections. Thread-safety: as for every FaceIndex
(concurrent searches, exclusive writes); the MilvusClient itself is thread-safe.
"""

from __future__ import annotations

import os
import re
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index.base import FaceIndex, Hit
from facefeat.index.milvus_client import DB_NAME, DEFAULT_COLLECTION, cleanup_owned, is_local_uri, pymilvus_module
from facefeat.index.types import parse_index_type

MAX_LABEL_LEN = 1024
MAX_PATH_LEN = 4096
MAX_TOPK = 16384  # Milvus's limit on a search's limit
_DEFAULT_BUILD = {"FLAT": {}, "IVF_FLAT": {"nlist": 128}, "HNSW": {"M": 32, "efConstruction": 200}}
_DEFAULT_SEARCH = {"FLAT": {}, "IVF_FLAT": {"nprobe": 16}, "HNSW": {"ef": 128}}


def parse_milvus_index_type(index_type: str) -> tuple[str, dict]:
    """Milvus's index type and the build params implied by the name (``HNSW16`` -> M=16), from
    :func:`facefeat.index.types.parse_index_type` (the one parser)."""
    t = parse_index_type(index_type)
    implied = {"nlist": t.nlist} if t.nlist is not None else ({"M": t.M} if t.kind == "HNSW" and t.M != 32 else {})
    return t.milvus, implied


class MilvusFaceIndex(FaceIndex):
    """Milvus gallery index; see the module doc."""

    backend = "milvus"

    def __init__(
        self,
        dim: int,
        metric_type: str = "IP",
        index_type: str = "FLAT",
        model_name: str | None = None,
        uri: str | os.PathLike | None = None,
        collection: str = DEFAULT_COLLECTION,
        token: str | None = None,
        db_name: str | None = None,
        index_params: dict | None = None,
        search_params: dict | None = None,
        embed: bool | None = None,
        exists_ok: bool = False,
        timeout: float | None = None,
        _entries: dict | None = None,
        _next_id: int | None = None,
        _owned_dir: str | None = None,
    ):
        kind, implied = parse_milvus_index_type(index_type)
        super().__init__(dim, metric_type, kind, model_name)
        if not isinstance(collection, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", collection):
            raise InputError(
                f"collection name {collection!r} is not valid for Milvus: letters, digits and underscores, "
                "starting with a letter or underscore"
            )
        self._collection = collection
        self._build_params = {**_DEFAULT_BUILD[kind], **implied, **(index_params or {})}
        self._search_params = {**_DEFAULT_SEARCH[kind], **(search_params or {})}
        self._token = token
        self._db_name = db_name
        self._timeout = timeout
        self._client = None
        self._client_box: list = [None]
        self._finalizer = None
        if uri is None:
            _owned_dir = _owned_dir or tempfile.mkdtemp(prefix="facefeat-milvus-")
            uri = os.path.join(_owned_dir, DB_NAME)
        uri = os.fspath(uri)
        self._local = is_local_uri(uri)
        if self._local:
            if not uri.endswith(".db"):
                raise InputError(f"milvus-lite uri {uri!r} must end with '.db' (or pass http://host:19530)")
            uri = os.path.abspath(uri)
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self._uri = uri
        self._embed = self._local if embed is None else bool(embed)
        if self._embed and not self._local:
            raise InputError("embed=True needs a local milvus-lite uri (*.db); a server's data stays on the server")
        self._owned_dir = _owned_dir
        if _owned_dir is not None:
            self._finalizer = weakref.finalize(self, cleanup_owned, self._client_box, uri, _owned_dir)
        self._connect()
        if _entries is not None:  # loading: the collection must exist
            self._entries = dict(_entries)
            self._next_id = int(_next_id or 0)
            return
        if self._call("has_collection", self._collection):
            if not exists_ok:
                raise FaceIndexError(
                    f"Milvus collection '{self._collection}' already exists at {self._uri}; pass exists_ok=True "
                    "to attach to it, another collection name, or drop it"
                )
            self._attach_existing()
        else:
            self._create_collection(self._client, self._collection)

    # ------------------------------------------------------------------ connection
    def _connect(self) -> None:
        pm = pymilvus_module()
        kw: dict[str, Any] = {"uri": self._uri}
        if self._token:
            kw["token"] = self._token
        if self._db_name:
            kw["db_name"] = self._db_name
        try:
            self._client = pm.MilvusClient(**kw)
        except Exception as exc:
            raise FaceIndexError(f"cannot connect to Milvus at {self._uri}: {exc}") from exc
        self._client_box[0] = self._client

    def _call(self, method: str, *args: Any, **kw: Any) -> Any:
        if self._client is None:
            raise FaceIndexError(f"Milvus index on {self._uri} is closed")
        if self._timeout is not None:
            kw.setdefault("timeout", self._timeout)
        try:
            return getattr(self._client, method)(*args, **kw)
        except (InputError, FaceIndexError):
            raise
        except Exception as exc:
            raise FaceIndexError(f"Milvus {method} on '{self._collection}' at {self._uri} failed: {exc}") from exc

    def close(self) -> None:
        """Close the connection; a private (uri=None / loaded) database is deleted."""
        if self._finalizer is not None:
            self._finalizer()
        elif self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        self._client = None
        self._client_box[0] = None

    def __enter__(self) -> "MilvusFaceIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def collection(self) -> str:
        return self._collection

    def _schema(self):
        pm = pymilvus_module()
        schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(field_name="id", datatype=pm.DataType.INT64, is_primary=True)
        schema.add_field(field_name="vector", datatype=pm.DataType.FLOAT_VECTOR, dim=self._dim)
        schema.add_field(field_name="label", datatype=pm.DataType.VARCHAR, max_length=MAX_LABEL_LEN)
        schema.add_field(field_name="path", datatype=pm.DataType.VARCHAR, max_length=MAX_PATH_LEN)
        return schema

    def _create_collection(self, client, name: str) -> None:
        pm = pymilvus_module()
        ip = pm.MilvusClient.prepare_index_params()
        ip.add_index(
            field_name="vector", index_type=self._index_type, metric_type=self._metric, params=dict(self._build_params)
        )
        try:
            client.create_collection(name, schema=self._schema(), index_params=ip, consistency_level="Strong")
        except Exception as exc:
            raise FaceIndexError(f"cannot create Milvus collection '{name}': {exc}") from exc

    def _check_collection(self, where: str) -> None:
        if not self._call("has_collection", self._collection):
            raise FaceIndexError(f"{where}: Milvus collection '{self._collection}' does not exist at {self._uri}")
        desc = self._call("describe_collection", self._collection)
        dims = [f.get("params", {}).get("dim") for f in desc.get("fields", []) if f.get("name") == "vector"]
        if not dims or int(dims[0]) != self._dim:
            raise FaceIndexError(
                f"{where}: Milvus collection '{self._collection}' has vector dim {dims[0] if dims else None}, "
                f"expected {self._dim}"
            )
        self._call("load_collection", self._collection)  # a reopened collection starts released

    def _attach_existing(self) -> None:
        self._check_collection(str(self._uri))
        entries: dict[int, tuple[str, str | None]] = {}
        it = self._call("query_iterator", self._collection, batch_size=4096, filter="", output_fields=["id", "label", "path"])
        try:
            while True:
                batch = it.next()
                if not batch:
                    break
                for r in batch:
                    entries[int(r["id"])] = (r["label"], r["path"] or None)
        finally:
            it.close()
        self._entries = entries
        self._next_id = max(entries) + 1 if entries else 0

    def count_in_collection(self) -> int:
        res = self._call("query", self._collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    # ------------------------------------------------------------------ hooks
    def _backend_add(self, ids: np.ndarray, x: np.ndarray, labels: list[str], paths: list[str | None]) -> None:
        for i, (lab, p) in enumerate(zip(labels, paths)):
            if len(lab.encode("utf-8")) > MAX_LABEL_LEN:
                raise InputError(f"add: label #{i} is longer than {MAX_LABEL_LEN} bytes")
            if p is not None and len(p.encode("utf-8")) > MAX_PATH_LEN:
                raise InputError(f"add: path #{i} is longer than {MAX_PATH_LEN} bytes")
        try:
            self._insert(self._client, self._collection, ids, x, labels, paths)
        except BaseException:
            try:  # undo a partly done insert so the collection matches the index's entries
                self._client.delete(self._collection, ids=[int(i) for i in ids])
            except Exception:
                pass
            raise

    def _insert(self, client, name, ids, x, labels, paths) -> None:
        step = max(1, (8 << 20) // (4 * self._dim))  # ~8 MB of floats per request
        for s in range(0, len(ids), step):
            rows = [
                {"id": int(i), "vector": v.tolist(), "label": lab, "path": p or ""}
                for i, v, lab, p in zip(ids[s : s + step], x[s : s + step], labels[s : s + step], paths[s : s + step])
            ]
            try:
                client.insert(name, rows)
            except Exception as exc:
                raise FaceIndexError(f"Milvus insert into '{name}' failed: {exc}") from exc

    def _backend_remove(self, ids: np.ndarray) -> None:
        self._call("delete", self._collection, ids=[int(i) for i in ids])

    def _backend_relabel(self, ids: np.ndarray, label: str) -> None:
        rows = self._call("get", self._collection, ids=[int(i) for i in ids], output_fields=["id", "vector", "label", "path"])
        for r in rows:
            r["label"] = label
        self._call("upsert", self._collection, data=rows)

    def _backend_search(self, q: np.ndarray, k: int) -> list[list[Hit]]:
        k = min(k, MAX_TOPK)
        params = dict(self._search_params)
        if self._index_type == "HNSW":
            params["ef"] = max(int(params.get("ef", k)), k)
        res = self._call(
            "search",
            self._collection,
            data=[row.tolist() for row in q],
            limit=k,
            anns_field="vector",
            output_fields=["label", "path"],
            search_params={"metric_type": self._metric, "params": params},
        )
        out: list[list[Hit]] = []
        for hits in res:
            row = []
            for h in hits:
                ent = h.get("entity") or {}
                hid = int(h["id"])
                label = ent.get("label")
                if label is None:
                    known = self._hit(hid, h["distance"])
                    if known is None:
                        continue
                    row.append(known)
                    continue
                row.append(Hit(hid, label, float(h["distance"]), ent.get("path") or None))
            out.append(row)
        return out

    def _backend_meta(self) -> dict:
        return {
            "uri": DB_NAME if self._embed else self._uri,
            "embedded": self._embed,
            "collection": self._collection,
            "db_name": self._db_name,
            "index_params": self._build_params,
            "search_params": self._search_params,
        }

    def _backend_info(self) -> dict:
        return {
            "uri": self._uri,
            "collection": self._collection,
            "index_params": dict(self._build_params),
            "search_params": dict(self._search_params),
        }

    def _backend_vectors(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(ids), self._dim), np.float32)
        step = max(1, (8 << 20) // (4 * self._dim))
        for s in range(0, len(ids), step):
            chunk = [int(i) for i in ids[s:s + step]]
            got = {int(r["id"]): r["vector"] for r in self._call("get", self._collection, ids=chunk,
                                                                  output_fields=["id", "vector"])}
            missing = [i for i in chunk if i not in got]
            if missing:
                raise FaceIndexError(f"Milvus collection '{self._collection}' lacks ids {missing[:10]} that the "
                                     "index holds; was it changed by another client?")
            out[s:s + len(chunk)] = np.asarray([got[i] for i in chunk], np.float32)
        return out

    @classmethod
    def _from_meta(cls, meta: dict, **kw: Any) -> "MilvusFaceIndex":
        """A fresh collection derived from the gallery's store: a private milvus-lite database, or
        ``uri=`` (a server or a local ``*.db``), where the collection is rebuilt from the store."""
        uri = kw.get("uri") or (None if meta.get("embedded", True) else meta.get("uri"))
        collection = kw.get("collection") or meta.get("collection") or DEFAULT_COLLECTION
        index = cls(int(meta["dim"]), metric_type=meta["metric_type"], index_type=meta["index_type"],
                    model_name=meta.get("model_name"), uri=uri, collection=collection, token=kw.get("token"),
                    db_name=meta.get("db_name"), index_params=meta.get("index_params"),
                    search_params=kw.get("search_params", meta.get("search_params")),
                    timeout=kw.get("timeout"), exists_ok=True)
        if index._entries:  # the store is the truth: rebuild the collection from it
            index._call("drop_collection", collection)
            index._create_collection(index._client, collection)
            index._entries, index._next_id = {}, 0
        return index


__all__ = ["MilvusFaceIndex", "DEFAULT_COLLECTION", "parse_milvus_index_type"]
