"""A snapshot of a gallery's HNSW graph beside its ``gallery.db``, so that opening a large gallery does
not rebuild the graph (minutes at 1 M faces on two cores).

``gallery.hnsw`` (FAISS's file) and ``gallery.hnsw.json`` ({counter, count, dim, metric_type,
index_type, sha256, removed}) are *derived* data: written atomically after a full build, checked
(checksum, dimension, metric, type) before use, and reconciled with the database at open - ids the
database holds that the graph lacks are added, ids it no longer holds are removed - then the change
log is replayed as usual. A missing, stale or damaged snapshot only costs a rebuild; it can never
give a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.utils import current_umask

log = logging.getLogger("facefeat")

SNAPSHOT = "gallery.hnsw"
#: galleries smaller than this are rebuilt at open (faster than reading a snapshot)
SNAPSHOT_MIN = 2000


def _paths(store: Any) -> tuple[Path, Path] | None:
    d = getattr(store, "directory", None)  # SQLite galleries only: PostgreSQL replicas rebuild
    return None if d is None else (Path(d) / SNAPSHOT, Path(d) / (SNAPSHOT + ".json"))


def _sha(p: Path) -> str:
    with open(p, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def wanted(index: Any) -> bool:
    return index.backend == "faiss" and index._effective_kind() == "HNSW" and len(index) >= SNAPSHOT_MIN


def write(index: Any, store: Any) -> None:
    """Write the snapshot of ``index`` (its state at the index's counter); best effort."""
    paths = _paths(store)
    if paths is None or not wanted(index):
        return
    import faiss

    snap, side = paths
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gallery.", suffix=".hnsw.tmp", dir=snap.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~current_umask())  # like gallery.db: the user's umask decides
        faiss.write_index(index._index, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        info = {"counter": index._seq, "count": int(index._index.ntotal), "dim": index.dim,
                "metric_type": index.metric_type, "index_type": index.index_type, "sha256": _sha(Path(tmp)),
                "removed": sorted(index._dead)}
        os.replace(tmp, snap)
        side_tmp = side.with_suffix(".json.tmp")
        side_tmp.write_text(json.dumps(info))
        os.replace(side_tmp, side)
    except (OSError, RuntimeError) as exc:
        log.warning("%s: cannot write the HNSW snapshot (%s); the next open rebuilds the graph", snap, exc)
        try:
            os.unlink(tmp)
        except OSError:
            pass


def read(index: Any, store: Any) -> bool:
    """Fill an empty FAISS HNSW ``index`` from the snapshot, reconciled with ``store``; False when
    there is no usable snapshot (the caller builds from the database)."""
    paths = _paths(store)
    if paths is None or index.backend != "faiss" or index._kind != "HNSW":
        return False
    snap, side = paths
    if not snap.is_file() or not side.is_file():
        return False
    import faiss

    try:
        info = json.loads(side.read_text())
        if (info.get("dim"), info.get("metric_type"), info.get("index_type")) != \
                (index.dim, index.metric_type, index.index_type) or _sha(snap) != info.get("sha256"):
            raise ValueError("it does not match the gallery or its checksum")
        graph = faiss.read_index(str(snap))
        if not isinstance(graph, faiss.IndexIDMap2) or graph.d != index.dim:
            raise ValueError("not an HNSW graph of this gallery")
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("%s: snapshot not used (%s); rebuilding the graph", snap, exc)
        return False
    seq = store.counter()
    entries: dict[int, tuple[str, Any]] = {}
    for ids, labels, paths_ in store.entries():
        entries.update(zip(ids, zip(labels, paths_)))
    index._index = graph
    index._dead = {int(i) for i in info.get("removed") or []}
    index._apply_search_params()
    in_graph = set(faiss.vector_to_array(graph.id_map).tolist()) - index._dead
    missing = sorted(set(entries) - in_graph)
    gone = sorted(in_graph - set(entries))
    if gone:
        index._backend_remove(np.asarray(gone, np.int64))
    index._make_selector()
    for ids, labels, paths_, feats in store.load(missing) if missing else ():
        index._backend_add(ids, feats, labels, paths_)
    index._entries = entries
    index._next_id = max(store.next_id(), max(entries, default=-1) + 1)
    index._seq = seq
    if len(missing) + len(gone) > max(1000, len(entries) // 10):
        write(index, store)  # much changed since: refresh the snapshot
    return True


__all__ = ["SNAPSHOT", "SNAPSHOT_MIN", "read", "write"]
