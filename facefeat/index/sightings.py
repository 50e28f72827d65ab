"""Sightings: where faces were seen - recognitions recorded and unknown faces kept (both opt-in).

A gallery records nothing by default (faces are biometric data). :func:`configure` turns on
``record`` (recognised faces: time, source, box, the name given, the score) and/or ``keep_unknown``
(faces not named), each kept ``retention_days`` (> 0) with its feature and aligned crop, and
deleted for real afterwards by :func:`sweep` (run at every recording, and by the CLI).

* :func:`record` - called by the recognition path (``pipeline.predict``) for every face;
* :func:`search` - by person, time range, unknown only, or a probe face (1:1 at the model's
  calibrated ``far=1e-3`` point), including faces that were unknown when seen;
* :func:`facefeat.pipeline.unknown.unknown_groups` - the unknown faces grouped into candidate people with the existing
  clustering (:func:`facefeat.pipeline.cluster.cluster_features` at its default threshold);
* :func:`name_sightings` - name a group: its faces join (or become) a person as samples and the
  past sightings take the name; :func:`dismiss` deletes sightings.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Sequence

import numpy as np

from facefeat.errors import FacefeatError, InputError
from facefeat.index.health import gallery_thresholds
from facefeat.index.labels import normalize_label
from facefeat.index.lifecycle_common import require_attached, scrub_log
from facefeat.index.store import SampleRecord, content_hash
from facefeat.thresholds import is_match, resolve_threshold

log = logging.getLogger("facefeat")

TABLES = (
    "CREATE TABLE IF NOT EXISTS sighting_settings (gallery TEXT PRIMARY KEY, record INTEGER NOT NULL, "
    "keep_unknown INTEGER NOT NULL, retention_days DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sightings (gallery TEXT NOT NULL, id BIGINT NOT NULL, created DOUBLE PRECISION "
    "NOT NULL, source TEXT, box TEXT, label TEXT, score DOUBLE PRECISION, feature {blob} NOT NULL, crop {blob}, "
    "PRIMARY KEY (gallery, id))",
    "CREATE INDEX IF NOT EXISTS sightings_by_time ON sightings (gallery, created)",
)
DAY_S = 86400.0


def _store(x: Any) -> Any:
    store = getattr(x, "store", x)
    if store is None or not hasattr(store, "_write_tx"):
        raise InputError("sightings need a stored gallery (a directory or postgresql:// URL)")
    return store


def _rows(store: Any, sql: str, args: Sequence = ()) -> list:
    """Rows of a read; none when the gallery never turned sightings on (no tables yet)."""
    try:
        with store._read() as cur:
            return store._ex(cur, sql, args).fetchall()
    except FacefeatError:
        if not _has_table_named(store, "sighting_settings"):
            return []
        raise


def _has_table_named(store: Any, table: str) -> bool:
    try:
        with store._read() as cur:
            store._ex(cur, f"SELECT 1 FROM {table} WHERE 1 = 0").fetchall()
        return True
    except Exception:  # noqa: BLE001 - no such table
        return False


def configure(index_or_store: Any, record: bool | None = None, keep_unknown: bool | None = None,
              retention_days: float | None = None) -> dict:
    """Change (and return) the gallery's sighting settings; ``retention_days`` must be > 0."""
    store = _store(index_or_store)
    if retention_days is not None:
        try:
            r = float(retention_days)
        except (TypeError, ValueError):
            raise InputError(f"retention_days must be a number of days, got {retention_days!r}") from None
        if not math.isfinite(r) or r <= 0:
            raise InputError(f"retention_days must be more than 0 days, got {retention_days!r} (turn recording off "
                             "instead)")
    cur_s = settings(store)
    new = {"record": cur_s["record"] if record is None else bool(record),
           "keep_unknown": cur_s["keep_unknown"] if keep_unknown is None else bool(keep_unknown),
           "retention_days": cur_s["retention_days"] if retention_days is None else float(retention_days)}
    with store._write_tx() as cur:
        for t in TABLES:
            cur.execute(t.format(blob=store.blob))
        store._ex(cur, "INSERT INTO sighting_settings (gallery, record, keep_unknown, retention_days) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (gallery) DO UPDATE SET record = excluded.record, keep_unknown = excluded.keep_unknown, "
                  "retention_days = excluded.retention_days",
                  (store.gallery, int(new["record"]), int(new["keep_unknown"]), new["retention_days"]))
    return new


def settings(store: Any) -> dict:
    """``{"record", "keep_unknown", "retention_days"}`` (all off, 30 days, until configured)."""
    rows = _rows(store, "SELECT record, keep_unknown, retention_days FROM sighting_settings WHERE gallery = ?",
                 (store.gallery,))
    if not rows:
        return {"record": False, "keep_unknown": False, "retention_days": 30.0}
    r, k, d = rows[0]
    return {"record": bool(r), "keep_unknown": bool(k), "retention_days": float(d)}


def record(index: Any, source: str | None, img: np.ndarray, faces: Sequence[dict], boxes: Sequence[dict],
           when: float | None = None) -> int:
    """Record the faces of one recognised image as the gallery's settings say; returns how many.
    A storage failure is logged, never fails the recognition."""
    store = getattr(index, "store", None)
    if store is None or not hasattr(store, "_write_tx"):
        return 0
    try:
        s = settings(store)
        if not (s["record"] or s["keep_unknown"]):
            return 0
        return _record(store, s, source, img, faces, boxes, time.time() if when is None else float(when))
    except FacefeatError as exc:
        log.warning("%s: sightings not recorded: %s", store.location, exc)
        return 0


def _record(store: Any, s: dict, source: str | None, img: np.ndarray, faces: Sequence[dict], boxes: Sequence[dict],
            now: float) -> int:
    import cv2

    from facefeat.vision.align import align_face

    rows = []
    for f, b in zip(faces, boxes):
        if f.get("feature") is None:
            continue
        label = (b.get("labels") or [None])[0]
        if (label is None and not s["keep_unknown"]) or (label is not None and not s["record"]):
            continue
        crop = None
        try:
            ok, buf = cv2.imencode(".jpg", align_face(img, f["landmarks"]), [cv2.IMWRITE_JPEG_QUALITY, 90])
            crop = buf.tobytes() if ok else None
        except Exception:  # noqa: BLE001 - a face that cannot be aligned is kept without its crop
            crop = None
        score = (b.get("rec_scores") or [None])[0]
        rows.append((source, json.dumps(f.get("coordinate")), label, score,
                     np.asarray(f["feature"], np.float32).tobytes(), crop))
    if not rows:
        return 0
    with store._write_tx() as cur:
        store._head(cur, lock=True)
        top = store._ex(cur, "SELECT MAX(id) FROM sightings WHERE gallery = ?", (store.gallery,)).fetchone()[0]
        first = 0 if top is None else int(top) + 1
        cur.executemany(store._q("INSERT INTO sightings (gallery, id, created, source, box, label, score, feature, crop) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                        [(store.gallery, first + k, now, *r) for k, r in enumerate(rows)])
        store._ex(cur, "DELETE FROM sightings WHERE gallery = ? AND created < ?",
                  (store.gallery, now - s["retention_days"] * DAY_S))
    return len(rows)


def sweep(index_or_store: Any, now: float | None = None) -> int:
    """Delete the sightings older than the retention period (crops included); returns how many."""
    store = _store(index_or_store)
    if not _has_table_named(store, "sightings"):
        return 0
    cutoff = (time.time() if now is None else float(now)) - settings(store)["retention_days"] * DAY_S
    n = int(_rows(store, "SELECT COUNT(*) FROM sightings WHERE gallery = ? AND created < ?", (store.gallery, cutoff))[0][0])
    with store._write_tx() as cur:
        store._ex(cur, "DELETE FROM sightings WHERE gallery = ? AND created < ?", (store.gallery, cutoff))
    if n:
        scrub_log(store)
    return n


def _threshold(store: Any) -> float:
    return resolve_threshold(gallery_thresholds(store.meta()), "auto", task="verify", metric_type="IP")[0]


def search(index_or_store: Any, label: str | None = None, since: float | None = None, until: float | None = None,
           probe: Any = None, unknown: bool = False, limit: int = 100, threshold: float | None = None) -> list[dict]:
    """Sightings, newest first (with ``probe``: those matching the probe face, best first)."""
    store = _store(index_or_store)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError(f"limit must be a positive integer, got {limit!r}")
    if label is not None:
        label = normalize_label(label)
    sql, args = "SELECT id, created, source, box, label, score, feature FROM sightings WHERE gallery = ?", [store.gallery]
    for cond, val in (("label = ?", label), ("created >= ?", since), ("created <= ?", until)):
        if val is not None:
            sql, args = f"{sql} AND {cond}", args + [val]
    if unknown:
        sql += " AND label IS NULL"
    rows = _rows(store, sql + " ORDER BY created DESC, id DESC" + ("" if probe is not None else f" LIMIT {int(limit)}"),
                 args)
    out = [{"id": int(i), "time": float(c), "source": src, "box": json.loads(b) if b else None, "label": lab,
            "score": None if s is None else float(s), "_f": f} for i, c, src, b, lab, s, f in rows]
    if probe is not None:
        q = np.asarray(probe, np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        t = _threshold(store) if threshold is None else float(threshold)
        for r in out:
            r["match_score"] = round(float(np.frombuffer(bytes(r["_f"]), np.float32) @ q), 6)
        out = sorted((r for r in out if is_match(r["match_score"], t)), key=lambda r: -r["match_score"])[:limit]
    for r in out:
        del r["_f"]
    return out


def name_sightings(index: Any, ids: Sequence[int], label: str) -> dict:
    """Name sightings (a group): their faces become samples of ``label`` (a new person, or joining
    one) through the gallery's duplicate rule, and the sightings take the name."""
    store = _store(index)
    require_attached(index, "naming sightings")
    label = normalize_label(label)
    want = sorted({int(i) for i in ids})
    if not want:
        raise InputError("name: give the sighting ids to name")
    marks = ",".join("?" * len(want))
    rows = _rows(store, f"SELECT id, feature, crop, source, created FROM sightings WHERE gallery = ? AND id IN ({marks})",
                 (store.gallery, *want))
    missing = sorted(set(want) - {int(r[0]) for r in rows})
    if missing:
        raise InputError(f"no sighting(s) {', '.join(map(str, missing[:10]))} in {store.location}; nothing was named")
    x = np.stack([np.frombuffer(bytes(r[1]), np.float32) for r in rows])
    recs = [SampleRecord(crop=None if r[2] is None else bytes(r[2]), figures={"from_sighting": int(r[0])},
                         content_hash=content_hash(np.frombuffer(bytes(r[1]), np.uint8)), created=float(r[4]))
            for r in rows]
    res = index.add_samples(x, [label] * len(rows), [r[3] for r in rows], recs)
    with store._write_tx() as cur:
        store._ex(cur, f"UPDATE sightings SET label = ? WHERE gallery = ? AND id IN ({marks})", (label, store.gallery, *want))
    return {"label": label, "sightings": want, "sample_ids": res.added, "duplicates": len(res.duplicates)}


def sighting_crop(index_or_store: Any, sighting_id: int) -> bytes | None:
    """The aligned face (JPEG) kept with a sighting, or None."""
    store = _store(index_or_store)
    rows = _rows(store, "SELECT crop FROM sightings WHERE gallery = ? AND id = ?", (store.gallery, int(sighting_id)))
    return bytes(rows[0][0]) if rows and rows[0][0] is not None else None


def dismiss(index_or_store: Any, ids: Sequence[int]) -> int:
    """Delete sightings (crop and feature included); returns how many."""
    store = _store(index_or_store)
    want = sorted({int(i) for i in ids})
    if not want or not _has_table_named(store, "sightings"):
        return 0
    marks = ",".join("?" * len(want))
    n = int(_rows(store, f"SELECT COUNT(*) FROM sightings WHERE gallery = ? AND id IN ({marks})",
                  (store.gallery, *want))[0][0])
    with store._write_tx() as cur:
        store._ex(cur, f"DELETE FROM sightings WHERE gallery = ? AND id IN ({marks})", (store.gallery, *want))
    if n:
        scrub_log(store)
    return n


__all__ = ["configure", "dismiss", "name_sightings", "record", "search", "settings", "sighting_crop", "sweep"]
