"""Model migration keeping names: re-embed every stored crop of a gallery with another model.

:func:`migrate_gallery` embeds each sample's stored aligned face with the new model, ``batch``
samples at a time, and keeps the new features in a side table (``migrations``, one transaction
per batch) while the gallery goes on answering with the old model. When every sample has its new
feature it swaps them in **one transaction**: features, model name, weights hash, dimension and
the new model's calibration (``thresholds``, so operating points follow the new model) change
together, ids, labels, sources, figures and crops stay, and a ``reset`` change tells every reader
to reload. A gallery therefore never mixes models; a migration interrupted (kill -9, power loss)
resumes where its last batch ended when run again with the same model, and the side table is
emptied by the swap (or when a different model is asked for). "Not X" corrections are re-embedded
from their crops in the same swap (one without a crop is dropped: an old-model feature would veto
wrongly).

Samples enrolled by an earlier facefeat have no stored crop and cannot be re-embedded: the
migration refuses the gallery, naming them (re-enrol or remove them first).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

from facefeat.errors import FaceIndexError
from facefeat.index.corrections import _rows
from facefeat.index.lifecycle_common import decode_crop, drop_derived
from facefeat.index.persist import open_existing_store
from facefeat.index.store import STORE_FORMAT_VERSION
from facefeat.results import BaseResult
from facefeat.thresholds import model_thresholds

MIGRATIONS_TABLE = ("CREATE TABLE IF NOT EXISTS migrations (gallery TEXT NOT NULL, id BIGINT NOT NULL, "
                    "target TEXT NOT NULL, feature {blob} NOT NULL, PRIMARY KEY (gallery, id))")
BATCH = 64


class MigrationReport(BaseResult):
    """``{"gallery", "from", "to", "samples", "people", "embedded", "resumed", "seconds"}``."""

    default_stem = "migrate"


def ensure_tables(store: Any) -> None:
    """Create the side table of interrupted migrations (once per store; SQLite and PostgreSQL)."""
    with store._write_tx() as cur:
        cur.execute(MIGRATIONS_TABLE.format(blob=store.blob))


def model_key(predictor: Any) -> str:
    """What identifies the target model of a migration: name, dimension and weights hash."""
    info: dict = {}
    try:
        info = predictor.runtime_info() or {}
    except Exception:  # noqa: BLE001 - a predictor without runtime_info
        info = {}
    wh = info.get("weights_sha256") or info.get("model_sha256") or str(getattr(predictor, "model_dir", "") or "")
    return f"{predictor.model_name}|{int(predictor.embedding_size)}|{wh}"


def resolve_predictor(model: str, device: str = "cpu", **kw: Any) -> Any:
    """A predictor for what the user named: a model directory, a weights file, or a zoo name."""
    from pathlib import Path

    from facefeat.predict.predictor import create_model

    p = Path(str(model)).expanduser()
    if p.is_dir():
        return create_model(model_dir=p, device=device, **kw)
    if p.is_file():
        return create_model(None, weights=p, device=device, **kw)
    return create_model(str(model), device=device, **kw)


def _done(store: Any, target: str) -> set[int]:
    with store._read() as cur:
        rows = store._ex(cur, "SELECT id FROM migrations WHERE gallery = ? AND target = ?",
                         (store.gallery, target)).fetchall()
    return {int(r[0]) for r in rows}


def _sample_ids(store: Any) -> list[int]:
    out: list[int] = []
    for ids, *_ in store.load():
        out += ids.tolist()
    return out


def _without_crops(store: Any) -> list[int]:
    with store._read() as cur:
        rows = store._ex(cur, "SELECT s.id FROM samples s LEFT JOIN crops c ON c.gallery = s.gallery AND c.id = s.id "
                         "WHERE s.gallery = ? AND c.id IS NULL ORDER BY s.id", (store.gallery,)).fetchall()
    return [int(r[0]) for r in rows]


def _embed(store: Any, predictor: Any, ids: list[int]) -> np.ndarray:
    recs = store.records(ids, with_crops=True)
    faces = []
    for i in ids:
        r = recs.get(i)
        img = None if r is None else decode_crop(r.crop)
        if img is None:
            raise FaceIndexError(f"{store.location}: sample {i}'s stored crop is missing or not an image; remove or "
                                 "re-enrol it, then migrate again")
        faces.append(img)
    return np.ascontiguousarray(predictor.embed(faces, False), np.float32)


def migrate_gallery(location: str | os.PathLike, predictor: Any, batch: int = BATCH,
                    progress: Callable[[int, int], None] | None = None, gallery: str | None = None) -> MigrationReport:
    """Re-embed the gallery at ``location`` (directory or ``postgresql://`` URL) with ``predictor``;
    see the module doc. ``progress(done, total)`` is called after each batch."""
    t0 = time.time()
    store = open_existing_store(location, gallery)
    try:
        meta = store.meta()
        target = model_key(predictor)
        if meta.get("model_key") == target:
            n = len(_sample_ids(store))
            return MigrationReport(gallery=store.location, **{"from": meta.get("model_name"), "to": predictor.model_name},
                                   samples=n, people=len(store.persons()), embedded=0, resumed=0, note="already on this model",
                                   seconds=0.0)
        missing = _without_crops(store)
        if missing:
            shown = ", ".join(str(i) for i in missing[:10]) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
            raise FaceIndexError(f"{store.location}: sample(s) {shown} have no stored face crop (enrolled by an earlier "
                                 "facefeat), so they cannot be re-embedded; re-enrol or remove them, then migrate")
        ensure_tables(store)
        with store._write_tx() as cur:  # forget another model's unfinished migration, and removed samples
            store._ex(cur, "DELETE FROM migrations WHERE gallery = ? AND (target <> ? OR id NOT IN "
                      "(SELECT id FROM samples WHERE gallery = ?))", (store.gallery, target, store.gallery))
        resumed = len(_done(store, target))
        embedded = 0
        for _round in range(20):  # samples added meanwhile are embedded before the swap
            done = _done(store, target)
            todo = [i for i in _sample_ids(store) if i not in done]
            total = len(done) + len(todo)
            for s in range(0, len(todo), max(1, int(batch))):
                part = todo[s:s + max(1, int(batch))]
                x = _embed(store, predictor, part)
                with store._write_tx() as cur:
                    cur.executemany(store._q("INSERT INTO migrations (gallery, id, target, feature) VALUES (?, ?, ?, ?) "
                                             "ON CONFLICT (gallery, id) DO UPDATE SET target = excluded.target, "
                                             "feature = excluded.feature"),
                                    [(store.gallery, i, target, f.tobytes()) for i, f in zip(part, x)])
                embedded += len(part)
                if progress is not None:
                    progress(len(done) + s + len(part), total)
            negs = _negatives(store, predictor)
            if _swap(store, meta, predictor, target, model_thresholds(predictor), negs):
                drop_derived(store)  # a graph snapshot of the old features: rebuilt at the next open
                break
        else:
            raise FaceIndexError(f"{store.location}: samples kept being added during the migration; retry when quieter")
        return MigrationReport(gallery=store.location, **{"from": meta.get("model_name"), "to": predictor.model_name},
                               samples=len(_sample_ids(store)), people=len(store.persons()), embedded=embedded,
                               resumed=resumed, negatives_reembedded=len(negs[0]), negatives_dropped=len(negs[1]),
                               seconds=round(time.time() - t0, 2))
    finally:
        store.close()


def _negatives(store: Any, predictor: Any) -> tuple[list[tuple[int, bytes]], list[int]]:
    """The gallery's active "not X" corrections re-embedded from their crops (``(id, feature)``),
    and those without a crop (dropped by the swap: their old-model feature would veto wrongly)."""
    rows = _rows(store, "SELECT id, crop FROM corrections WHERE gallery = ? AND kind = 'not' AND undone IS NULL "
                 "AND feature IS NOT NULL ORDER BY id", (store.gallery,))
    keep, faces, drop = [], [], []
    for i, crop in rows:
        img = decode_crop(crop)
        if img is None:
            drop.append(int(i))
        else:
            keep.append(int(i))
            faces.append(img)
    x = np.ascontiguousarray(predictor.embed(faces, False), np.float32) if faces else []
    return [(i, f.tobytes()) for i, f in zip(keep, x)], drop


def _swap(store: Any, old: dict, predictor: Any, target: str, thresholds: dict | None,
          negs: tuple[list, list] = ([], [])) -> bool:
    """Put the new features in place in one transaction; False when some sample still lacks one."""
    import json


    with store._write_tx() as cur:
        seq, _ = store._head(cur, lock=True)
        left = store._ex(cur, "SELECT COUNT(*) FROM samples s LEFT JOIN migrations m ON m.gallery = s.gallery AND "
                         "m.id = s.id AND m.target = ? WHERE s.gallery = ? AND m.id IS NULL",
                         (target, store.gallery)).fetchone()[0]
        if int(left):
            return False
        wh = target.rsplit("|", 1)[-1] or None
        store._ex(cur, "UPDATE samples SET feature = (SELECT m.feature FROM migrations m WHERE m.gallery = samples.gallery "
                  "AND m.id = samples.id), model_name = ?, weights_hash = ? WHERE gallery = ?",
                  (predictor.model_name, wh, store.gallery))
        meta = {k: v for k, v in old.items() if k != "thresholds"}
        params = dict(meta.get("params") or {})
        params.pop("centroids", None)  # trained on the old features: the engine trains again
        meta.update(dim=int(predictor.embedding_size), model_name=predictor.model_name, model_key=target,
                    params=params, store_version=STORE_FORMAT_VERSION,
                    migrated_from={"model_name": old.get("model_name"), "dim": old.get("dim"),
                                   "model_key": old.get("model_key"), "at": time.time()})
        if thresholds:
            meta["thresholds"] = thresholds
        store._ex(cur, "UPDATE galleries SET meta = ?, seq = ? WHERE name = ?", (json.dumps(meta), seq + 1, store.gallery))
        store._ex(cur, "INSERT INTO changes (gallery, seq, kind, ids, label) VALUES (?, ?, 'reset', '', NULL)",
                  (store.gallery, seq + 1))
        store._ex(cur, "DELETE FROM migrations WHERE gallery = ?", (store.gallery,))
        for i, f in negs[0]:  # corrections follow the model too
            store._ex(cur, "UPDATE corrections SET feature = ? WHERE gallery = ? AND id = ?", (f, store.gallery, i))
        for i in negs[1]:
            store._ex(cur, "UPDATE corrections SET undone = ?, feature = NULL WHERE gallery = ? AND id = ?",
                      (time.time(), store.gallery, i))
    store._meta = None
    return True


def pending_migration(store: Any) -> dict:
    """``{"target", "samples"}`` of an unfinished migration of the store's gallery (empty when none)."""
    try:
        with store._read() as cur:
            rows = store._ex(cur, "SELECT target, COUNT(*) FROM migrations WHERE gallery = ? GROUP BY target",
                             (store.gallery,)).fetchall()
    except FaceIndexError:  # no such table: never migrated here
        return {}
    return {"target": rows[0][0], "samples": int(rows[0][1])} if rows else {}


__all__ = ["MigrationReport", "ensure_tables", "migrate_gallery", "model_key", "pending_migration", "resolve_predictor"]
