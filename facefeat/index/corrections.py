"""Corrections: "this is not X" and "this is X", kept with the gallery, undoable, used by every match.

* :func:`reject_match` ("not X") stores the face as a **negative sample** of person X. In the match
  path (:func:`veto`), a face that is closer to one of X's negatives than to X's best sample is
  not given X's name: X's hits are dropped, so the face falls to the next person or to unknown
  (the threshold still decides).
* :func:`confirm_match` ("this is X") adds the face to X as a sample through the one enrolment
  path (:func:`facefeat.pipeline.enrol.add_gallery`), after the enrolment quality policy.
* :func:`undo` takes a correction back: a negative is dropped (its feature and crop deleted), a
  confirmed sample removed. :func:`list_corrections` lists them.

Both kinds name an existing person (an unknown name is an error), and every correction is one
transaction in the ``corrections`` table beside the gallery (SQLite or PostgreSQL).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Sequence

import numpy as np

from facefeat.errors import FaceIndexError, InputError
from facefeat.index.base import as_features, higher_is_better
from facefeat.index.enrolment import add_gallery
from facefeat.index.labels import normalize_label
from facefeat.index.lifecycle_common import UnknownPerson
from facefeat.index.lifecycle_common import require_attached  # noqa: F401  (re-exported)

CORRECTIONS_TABLE = ("CREATE TABLE IF NOT EXISTS corrections (gallery TEXT NOT NULL, id BIGINT NOT NULL, "
                     "kind TEXT NOT NULL, label TEXT NOT NULL, sample_id BIGINT, feature {blob}, crop {blob}, "
                     "source TEXT, created DOUBLE PRECISION NOT NULL, undone DOUBLE PRECISION, "
                     "PRIMARY KEY (gallery, id))")
#: extra hits searched when a gallery has negatives, so that a vetoed person's place is filled
VETO_EXTRA = 8


def ensure_table(store: Any) -> None:
    """Create the corrections table (in the write paths; readers treat a missing one as empty)."""
    with store._write_tx() as cur:
        cur.execute(CORRECTIONS_TABLE.format(blob=store.blob))


def _rows(store: Any, sql: str, args: Sequence) -> list:
    """Rows of a read of the corrections table; none when it does not exist yet."""
    try:
        with store._read() as cur:
            return store._ex(cur, sql, args).fetchall()
    except FaceIndexError:
        if "correction" in str(sql) and not _has_table(store):
            return []
        raise


def _has_table(store: Any) -> bool:
    try:
        with store._read() as cur:
            store._ex(cur, "SELECT 1 FROM corrections WHERE 1 = 0").fetchall()
        return True
    except Exception:  # noqa: BLE001 - no such table
        return False


def _check_person(store: Any, label: str) -> str:
    label = normalize_label(label)
    if label not in {p["label"] for p in store.persons()}:
        raise UnknownPerson(f"no person {label[:64]!r} in {store.location}; a correction names an enrolled person")
    return label


def _log(store: Any, kind: str, label: str, sample_id: int | None = None, feature: np.ndarray | None = None,
         crop: bytes | None = None, source: str | None = None) -> int:
    ensure_table(store)
    with store._write_tx() as cur:
        store._head(cur, lock=True)  # writers of this gallery take turns: ids in order
        row = store._ex(cur, "SELECT MAX(id) FROM corrections WHERE gallery = ?", (store.gallery,)).fetchone()
        cid = 0 if row is None or row[0] is None else int(row[0]) + 1
        store._ex(cur, "INSERT INTO corrections (gallery, id, kind, label, sample_id, feature, crop, source, created) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (store.gallery, cid, kind, label, sample_id,
                   None if feature is None else np.ascontiguousarray(feature, np.float32).tobytes(), crop, source,
                   time.time()))
    return cid


def reject_match(index: Any, label: str, feature: Any, crop: bytes | None = None, source: str | None = None) -> int:
    """"This face is not ``label``": store it as a negative sample of that person; returns the
    correction id (for :func:`undo`)."""
    store = _store_of(index)
    label = _check_person(store, label)
    x = as_features(feature, index.dim, "correction feature")
    if len(x) != 1:
        raise InputError(f"a correction takes one face's feature, got {len(x)}")
    return _log(store, "not", label, feature=x[0] / max(float(np.linalg.norm(x[0])), 1e-12), crop=crop, source=source)


def confirm_match(pipe: Any, index: Any, image: Any, label: str, quality: Any = "standard",
                  source: str | None = None) -> dict:
    """"This face is ``label``": enrol ``image`` (one face) into that person through the enrolment
    path and its quality policy; returns ``{"correction", "sample_id", "duplicate"}``."""
    label = _check_person(_store_of(index), label)
    return confirm_features(index, pipe.gallery_features([image], [label], strict=True, quality=quality), source)


def confirm_features(index: Any, g: Any, source: str | None = None) -> dict:
    """:func:`confirm_match` for a face already through the enrolment path: ``g`` the one-image
    :class:`~facefeat.pipeline.face_recognition.GalleryFeatures` labelled with the person."""
    store = _store_of(index)
    require_attached(index, "a confirmation")
    if len(g.labels) != 1:
        raise InputError(f"a confirmation takes one face, got {len(g.labels)}")
    label = _check_person(store, g.labels[0])
    res = add_gallery(index, g)
    sid = int(res.ids[0])
    dup = bool(res.duplicates)
    cid = _log(store, "is", label, sample_id=None if dup else sid, source=source)
    return {"correction": cid, "sample_id": sid, "duplicate": dup}


def undo(index: Any, correction_id: int) -> dict:
    """Take back correction ``correction_id``: a negative is deleted (feature and crop), a confirmed
    sample removed from the gallery. Returns what was undone."""
    store = _store_of(index)
    if isinstance(correction_id, bool) or not isinstance(correction_id, (int, np.integer)):
        raise InputError(f"correction id must be an integer, got {correction_id!r}")
    found = _rows(store, "SELECT kind, label, sample_id, undone FROM corrections WHERE gallery = ? AND id = ?",
                  (store.gallery, int(correction_id)))
    row = found[0] if found else None
    if row is None:
        raise InputError(f"no correction {correction_id} in {store.location}")
    kind, label, sid, undone = row
    if undone is not None:
        raise InputError(f"correction {correction_id} was already undone")
    removed = None
    if kind == "is" and sid is not None and int(sid) in index.labels():
        require_attached(index, "undoing a confirmation")
        index.remove([int(sid)])
        removed = int(sid)
    with store._write_tx() as cur:
        store._ex(cur, "UPDATE corrections SET undone = ?, feature = NULL, crop = NULL WHERE gallery = ? AND id = ?",
                  (time.time(), store.gallery, int(correction_id)))
    return {"correction": int(correction_id), "kind": kind, "label": label, "removed_sample": removed}


def list_corrections(index_or_store: Any, label: str | None = None) -> list[dict]:
    """Every correction (``label``: of one person), oldest first."""
    store = _store_of(index_or_store)
    sql = "SELECT id, kind, label, sample_id, source, created, undone FROM corrections WHERE gallery = ?"
    args: list = [store.gallery]
    if label is not None:
        sql, args = sql + " AND label = ?", args + [label]
    rows = _rows(store, sql + " ORDER BY id", args)
    return [{"id": int(i), "kind": k, "label": lab, "sample_id": None if s is None else int(s), "source": src,
             "created": float(c), "undone": None if u is None else float(u)} for i, k, lab, s, src, c, u in rows]


def _store_of(x: Any) -> Any:
    store = getattr(x, "store", x)
    if store is None or not hasattr(store, "_write_tx"):
        raise InputError("corrections need a stored gallery (a directory or postgresql:// URL), not an in-memory index")
    return store


# -- the match path -------------------------------------------------------------------------------
_cache: dict[str, tuple[tuple, dict[str, np.ndarray]]] = {}
_cache_lock = threading.Lock()


def negatives(store: Any) -> dict[str, np.ndarray]:
    """The active negative samples per person (cached until the corrections change)."""
    got = _rows(store, "SELECT COUNT(*), MAX(id), COUNT(undone) FROM corrections WHERE gallery = ?", (store.gallery,))
    if not got or not got[0][0]:
        return {}
    version = tuple(got[0])
    key = f"{type(store).__name__}:{store.location}:{store.gallery}"
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    rows = _rows(store, "SELECT label, feature FROM corrections WHERE gallery = ? AND kind = 'not' AND undone IS NULL "
                 "AND feature IS NOT NULL ORDER BY id", (store.gallery,))
    out: dict[str, list] = {}
    for lab, f in rows:
        out.setdefault(str(lab), []).append(np.frombuffer(bytes(f), np.float32))
    neg = {lab: np.stack(v) for lab, v in out.items()}
    with _cache_lock:
        _cache[key] = (version, neg)
    return neg


def veto(index: Any, queries: Any, hits: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Drop, per query, the hits of every person whose negatives are closer to the query than that
    person's best hit (the match rule then judges what is left). Hits carry ``label`` and ``score``
    in the index's metric; an index without a store, or without corrections, passes them through."""
    store = getattr(index, "store", None)
    if store is None or not hasattr(store, "_write_tx") or not len(hits):
        return [list(h) for h in hits]
    neg = negatives(store)
    if not neg:
        return [list(h) for h in hits]

    q = np.asarray(queries, np.float32).reshape(len(hits), -1)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    l2 = not higher_is_better(index.metric_type)
    out = []
    for qi, row in enumerate(hits):
        best: dict[str, float] = {}
        for h in row:
            best.setdefault(h.label, float(h.score))
        banned = set()
        for lab, s in best.items():
            if lab in neg:
                cos = float((neg[lab] @ q[qi]).max())
                closer = (2.0 - 2.0 * cos) < s if l2 else cos > s
                if closer:
                    banned.add(lab)
        out.append([h for h in row if h.label not in banned])
    return out


def veto_search(index: Any, search: Any, queries: np.ndarray, topk: int) -> list[list[Any]]:
    """``search(queries, topk)`` with the corrections applied: when the gallery holds negatives,
    :data:`VETO_EXTRA` more hits are searched, :func:`veto` drops the vetoed people, ``topk`` kept."""
    store = getattr(index, "store", None)
    if store is None or not hasattr(store, "_write_tx") or not negatives(store):
        return search(queries, topk)
    return [row[:topk] for row in veto(index, queries, search(queries, topk + VETO_EXTRA))]


__all__ = ["confirm_features", "confirm_match", "veto_search", "ensure_table", "list_corrections", "negatives", "reject_match", "undo", "veto"]
