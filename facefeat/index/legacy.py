"""Gallery folders written by earlier facefeat versions, migrated into a ``gallery.db`` on first open.

The old format: ``meta.json`` (backend, dim, metric, index type, next_id, count, checksums),
``labels.json`` (id -> label, path), the vectors (``vectors.faiss``, or a Milvus ``milvus.db`` /
server collection), ``people.json`` (per-sample figures) and, for the service, thumbnails in a
separate folder. :func:`migrate` reads and checks them (checksums, counts, ids), writes every sample
into a new SQLite gallery in one transaction (a temp file renamed into place: a crash leaves the
old folder as it was), and then moves the old files into ``<dir>/legacy-v1/`` (kept, not deleted).
Ids, labels, paths and vectors are kept exactly, so searches give the same results as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index.factory import backend_class
from facefeat.index.faiss_lib import DEFAULT_EF_CONSTRUCTION, DEFAULT_EF_SEARCH, VECTORS_FILE, faiss_module, ivf_ids
from facefeat.index.milvus_client import DB_NAME, DEFAULT_COLLECTION, release_lite
from facefeat.index.sqlite_store import SqliteStore
from facefeat.index.store import DB_FILE, SampleRecord
from facefeat.utils import dir_lock, recover_dir

META_FILE = "meta.json"
LABELS_FILE = "labels.json"
PEOPLE_FILE = "people.json"
ASIDE = "legacy-v1"
OLD_FILES = (LABELS_FILE, PEOPLE_FILE, "vectors.faiss", "milvus.db", META_FILE)  # meta.json last: it marks the old format


def is_legacy(d: Path) -> bool:
    """Whether ``d`` holds an old-format gallery not yet migrated (or old files left beside a new one)."""
    return (d / META_FILE).is_file()


def _json(p: Path, d: Path, what: str):
    if not p.is_file():
        raise FaceIndexError(f"{d}: not a loadable face index: {p.name} is missing ({what})")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FaceIndexError(f"{d}: {p.name} is corrupt ({exc})") from exc


def read_old_meta(d: Path) -> dict:
    meta = _json(d / META_FILE, d, "not an index, or its save never finished")
    if not isinstance(meta, dict):
        raise FaceIndexError(f"{d}: {META_FILE} is corrupt (expected a JSON object)")
    missing = [k for k in ("backend", "dim", "metric_type", "index_type", "next_id", "count") if k not in meta]
    if missing:
        raise FaceIndexError(f"{d}: {META_FILE} is corrupt: missing keys {', '.join(missing)}")
    if meta["backend"] not in ("faiss", "milvus"):
        raise FaceIndexError(f"{d}: {META_FILE} names unknown backend {meta['backend']!r}")
    for k in ("dim", "next_id", "count"):
        if not isinstance(meta[k], int) or meta[k] < 0 or (k == "dim" and meta[k] == 0):
            raise FaceIndexError(f"{d}: {META_FILE} is corrupt: {k} = {meta[k]!r}")
    if meta["metric_type"] not in ("IP", "L2", "COSINE"):
        raise FaceIndexError(f"{d}: {META_FILE} is corrupt: metric_type = {meta['metric_type']!r}")
    return meta


def _verify_checksums(d: Path, meta: dict) -> None:
    sums = meta.get("checksums")
    if sums is None:
        return
    if not isinstance(sums, dict):
        raise FaceIndexError(f"{d}: {META_FILE} is corrupt: checksums = {sums!r}")
    for rel, want in sorted(sums.items()):
        p, parts = d / rel, Path(rel).parts
        if ".." in parts or not p.is_file():
            top = parts[0] if parts and not (d / parts[0]).exists() else rel
            raise FaceIndexError(f"{d}: {top} is missing (listed in {META_FILE}); the index is incomplete")
        with open(p, "rb") as f:
            if "sha256:" + hashlib.file_digest(f, "sha256").hexdigest() != want:
                raise FaceIndexError(f"{d}: {rel} is corrupt (its checksum does not match {META_FILE}); restore "
                                     "the index from a backup or rebuild it")


def read_old(d: Path, **kw):
    """The old gallery at ``d`` as a loaded FaceIndex (checked), and its per-sample figures."""
    meta = read_old_meta(d)
    _verify_checksums(d, meta)
    raw = _json(d / LABELS_FILE, d, "the id -> label map")
    if not isinstance(raw, dict):
        raise FaceIndexError(f"{d}: {LABELS_FILE} is corrupt (expected a JSON object)")
    entries: dict[int, tuple[str, str | None]] = {}
    try:
        for k, v in raw.items():
            entries[int(k)] = (str(v["label"]), v.get("path"))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise FaceIndexError(f"{d}: {LABELS_FILE} is corrupt ({exc!r})") from exc
    if len(entries) != meta["count"]:
        raise FaceIndexError(f"{d}: count mismatch: {META_FILE} says {meta['count']} entries, "
                             f"{LABELS_FILE} holds {len(entries)}")
    if entries and max(entries) >= meta["next_id"]:
        raise FaceIndexError(f"{d}: {LABELS_FILE} holds id {max(entries)} >= next_id {meta['next_id']}")
    if meta["backend"] == "faiss":
        index = _load_faiss(d, meta, entries, **kw)
    else:
        index = _load_milvus(d, meta, entries, **kw)
    figures: dict[int, dict] = {}
    if (d / PEOPLE_FILE).is_file():
        try:
            figures = {int(k): v for k, v in json.loads((d / PEOPLE_FILE).read_text(encoding="utf-8")).items()}
        except (OSError, ValueError, AttributeError):
            figures = {}  # the old side file was never checksummed; figures are not worth refusing the gallery
    return index, figures


def _load_faiss(directory: Path, meta: dict, entries: dict, **kw: Any):
    """Read a gallery folder of an earlier facefeat (``vectors.faiss``), checked against its meta.json."""
    cls = backend_class("faiss")  # the engine, through the one table of engines (as load_index does)
    f = faiss_module()
    params = meta.get("params") or {}
    try:
        index = cls(
            meta["dim"],
            metric_type=meta["metric_type"],
            index_type=meta["index_type"],
            model_name=meta.get("model_name"),
            nprobe=kw.get("nprobe", params.get("nprobe")),
            ef_search=kw.get("ef_search", params.get("ef_search") or DEFAULT_EF_SEARCH),
            ef_construction=params.get("ef_construction") or DEFAULT_EF_CONSTRUCTION,
        )
    except InputError as exc:
        raise FaceIndexError(f"{directory}: meta.json is corrupt ({exc})") from exc
    vpath = directory / VECTORS_FILE
    if not vpath.is_file():
        raise FaceIndexError(f"{directory}: not a loadable FAISS index: {VECTORS_FILE} is missing")
    try:
        idx = f.read_index(str(vpath))
    except RuntimeError as exc:
        raise FaceIndexError(f"{directory}: {VECTORS_FILE} is corrupt ({str(exc).strip().splitlines()[-1]})") from exc
    ivf = index._kind == "IVF" and not params.get("fallback")
    if ivf and not isinstance(idx, f.IndexIVFFlat):
        raise FaceIndexError(f"{directory}: meta.json says IVF but {VECTORS_FILE} holds no IVF index")
    if not ivf and not isinstance(idx, f.IndexIDMap2):
        raise FaceIndexError(f"{directory}: {VECTORS_FILE} is not an IDMap2 index (not written by facefeat)")
    want_metric = f.METRIC_L2 if meta["metric_type"] == "L2" else f.METRIC_INNER_PRODUCT
    if idx.metric_type != want_metric:
        raise FaceIndexError(
            f"{directory}: {VECTORS_FILE} uses the {'L2' if idx.metric_type == f.METRIC_L2 else 'inner-product'} "
            f"metric but meta.json says {meta['metric_type']}; the files do not belong together")
    inner = idx if ivf else f.downcast_index(idx.index)
    kind = "IVF" if ivf else ("HNSW" if index._kind == "HNSW" else "Flat")
    want_cls = {"IVF": f.IndexIVFFlat, "HNSW": f.IndexHNSW, "Flat": f.IndexFlat}[kind]
    if not isinstance(inner, want_cls):
        raise FaceIndexError(
            f"{directory}: {VECTORS_FILE} holds a {type(inner).__name__} but meta.json says index type "
            f"{meta.get('effective_index_type') or meta['index_type']}; the files do not belong together")
    if ivf and params.get("nlist") is not None and inner.nlist != params["nlist"]:
        raise FaceIndexError(f"{directory}: {VECTORS_FILE} has nlist {inner.nlist} but meta.json says {params['nlist']}")
    if idx.d != meta["dim"]:
        raise FaceIndexError(f"{directory}: {VECTORS_FILE} holds {idx.d}-d vectors but meta.json says dim {meta['dim']}")
    if idx.ntotal != meta["count"]:
        raise FaceIndexError(
            f"{directory}: count mismatch: meta.json says {meta['count']} entries, {VECTORS_FILE} holds {idx.ntotal}"
        )
    stored = set(ivf_ids(idx).tolist() if ivf else f.vector_to_array(idx.id_map).tolist())
    if stored != set(entries):
        raise FaceIndexError(f"{directory}: the ids in {VECTORS_FILE} and labels.json differ")
    index._index = idx
    index._fallback = params.get("fallback")
    index._nlist = params.get("nlist")
    index._apply_search_params()
    index._entries, index._next_id = dict(entries), int(meta["next_id"])
    return index


def _load_milvus(directory: Path, meta: dict, entries: dict, **kw: Any):
    """Open a gallery folder of an earlier facefeat (milvus.db or a server's collection)."""
    cls = backend_class("milvus")
    embedded = bool(meta.get("embedded"))
    collection = meta.get("collection") or DEFAULT_COLLECTION
    owned = None
    if embedded:
        src = directory / DB_NAME
        if not src.exists():
            raise FaceIndexError(f"{directory}: not a loadable Milvus index: {DB_NAME} is missing")
        owned = tempfile.mkdtemp(prefix="facefeat-milvus-")
        try:
            if src.is_dir():  # milvus-lite >= 3 keeps a directory, older ones a file
                shutil.copytree(src, Path(owned) / DB_NAME, ignore=shutil.ignore_patterns("LOCK", "*.lock"))
            else:
                shutil.copy2(src, Path(owned) / DB_NAME)
        except OSError as exc:
            shutil.rmtree(owned, ignore_errors=True)
            raise FaceIndexError(f"{directory}: cannot copy {DB_NAME} ({exc})") from exc
        uri = os.path.join(owned, DB_NAME)
    else:
        uri = kw.get("uri") or meta.get("uri")
        if not uri:
            raise FaceIndexError(f"{directory}: meta.json names no Milvus uri")
    try:
        index = cls(
            meta["dim"],
            metric_type=meta["metric_type"],
            index_type=meta["index_type"],
            model_name=meta.get("model_name"),
            uri=uri,
            collection=collection,
            token=kw.get("token"),
            db_name=meta.get("db_name"),
            index_params=meta.get("index_params"),
            search_params=kw.get("search_params", meta.get("search_params")),
            embed=embedded,
            timeout=kw.get("timeout"),
            _entries=entries,
            _next_id=meta["next_id"],
            _owned_dir=owned,
        )
    except InputError as exc:
        if owned:
            shutil.rmtree(owned, ignore_errors=True)
        raise FaceIndexError(f"{directory}: meta.json is corrupt ({exc})") from exc
    except FaceIndexError:
        if owned:
            release_lite(uri)
            shutil.rmtree(owned, ignore_errors=True)
        raise
    try:
        index._check_collection(str(directory))
        n = index.count_in_collection()
        if n != meta["count"]:
            raise FaceIndexError(
                f"{directory}: count mismatch: meta.json says {meta['count']} entries, Milvus collection "
                f"'{collection}' holds {n}"
            )
    except BaseException:
        index.close()
        raise
    return index


def migrate(d: Path, thumbs: Path | None = None) -> bool:
    """Migrate the old gallery at ``d`` (thumbnails from ``thumbs/<id>.jpg`` when given) into
    ``d/gallery.db``; the old files move to ``d/legacy-v1/``. Returns True if it migrated now."""
    d = Path(d)
    with dir_lock(d):
        recover_dir(d)  # an interrupted save of the old format: its last complete version
        if not is_legacy(d):
            return False
        if (d / DB_FILE).is_file():  # migrated, but the old files were not moved aside yet
            _move_aside(d)
            return False
        index, figures = read_old(d)
        tmp = d / ".migrating"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            store = SqliteStore(tmp)
            ids = sorted(index._entries)

            def rows():
                for s in range(0, len(ids), 5000):
                    part = ids[s:s + 5000]
                    recs = []
                    for i in part:
                        crop = None
                        if thumbs is not None and (thumbs / f"{i}.jpg").is_file():
                            crop = (thumbs / f"{i}.jpg").read_bytes()
                        recs.append(SampleRecord(crop=crop, figures=figures.get(i)))
                    yield (part, [index._entries[i][0] for i in part], [index._entries[i][1] for i in part],
                           np.asarray(index._backend_vectors(np.asarray(part, np.int64)), np.float32), recs)

            store.replace(index._meta(), index._next_id, rows())
            store.close()
            os.replace(tmp / DB_FILE, d / DB_FILE)
            _fsync(d)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            close = getattr(index, "close", None)
            if callable(close):
                close()
        _move_aside(d)
        return True


def _move_aside(d: Path) -> None:
    aside = d / ASIDE
    aside.mkdir(exist_ok=True)
    for name in OLD_FILES:
        if os.path.lexists(d / name):
            os.replace(d / name, aside / name)
    _fsync(d)


def _fsync(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["is_legacy", "migrate", "read_old"]
