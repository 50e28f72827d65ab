"""What a gallery keeps about one person, and forgetting a person for real.

:func:`person_report` lists everything stored about a person: the person row, every sample (source,
time, content hash, detection, quality figures, the crop's size and format, the model that made the
feature) and the vectors of an unfinished model migration. :func:`forget_person` removes all of it
in one transaction - samples, features, crops, the person, pending migration vectors - blanks the
name in the change log, and (SQLite) checkpoints the write-ahead log so that no removed page stays
in a side file (the database itself overwrites deleted content: ``secure_delete``).
"""

from __future__ import annotations

import os
from typing import Any

from facefeat.index import sightings
from facefeat.index.corrections import list_corrections
from facefeat.index.labels import normalize_label
from facefeat.index.lifecycle_common import (  # noqa: F401  (re-exported)
    DERIVED_FILES,
    UnknownPerson,
    drop_derived,
    scrub_log,
)
from facefeat.index.migrate import pending_migration
from facefeat.index.persist import open_existing_store
from facefeat.index.store import Op
from facefeat.results import BaseResult


class PersonReport(BaseResult):
    """``{"gallery", "label", "created", "samples": [...], "pending_migration_vectors", "stored_in"}``."""

    default_stem = "person"


def _person_not_found(store: Any, label: str) -> Exception:
    return UnknownPerson(f"no person {label[:64]!r} in {store.location}")


def person_report(location: str | os.PathLike, label: str, gallery: str | None = None) -> PersonReport:
    """Everything the gallery at ``location`` stores about ``label`` (PersonNotFound when none)."""
    label = normalize_label(label)
    store = open_existing_store(location, gallery)
    try:
        person = next((p for p in store.persons() if p["label"] == label), None)
        if person is None:
            raise _person_not_found(store, label)
        with store._read() as cur:
            rows = store._ex(cur, "SELECT id, source, model_name, created FROM samples WHERE gallery = ? AND label = ? "
                             "ORDER BY id", (store.gallery, label)).fetchall()
        ids = [int(r[0]) for r in rows]
        recs = store.records(ids, with_crops=True)
        samples = []
        for i, src, model, created in rows:
            r = recs.get(int(i))
            samples.append({"id": int(i), "source": src, "created": float(created), "model_name": model,
                            "feature_dim": int(store.meta()["dim"]), "weights_hash": r.weights_hash if r else None,
                            "content_hash": r.content_hash if r else None, "det": r.det if r else None,
                            "figures": r.figures if r else None,
                            "crop": {"format": r.crop_format, "bytes": len(r.crop)} if r and r.crop else None})
        pending = _pending_vectors(store, ids)
        corrections = list_corrections(store, label)
        seen = sightings.search(store, label=label, limit=10 ** 9)
        return PersonReport(gallery=store.location, label=label, created=person["created"], samples=samples,
                            pending_migration_vectors=pending, corrections=corrections, sightings=seen,
                            stored_in=["persons", "samples (feature, figures, detection, hash)", "crops"]
                            + (["migrations (an unfinished model migration)"] if pending else []))
    finally:
        store.close()


def _pending_vectors(store: Any, ids: list[int]) -> int:
    if not ids or not pending_migration(store):
        return 0
    n = 0
    for k in range(0, len(ids), 500):
        part = ids[k:k + 500]
        with store._read() as cur:
            n += int(store._ex(cur, f"SELECT COUNT(*) FROM migrations WHERE gallery = ? AND id IN "
                               f"({','.join('?' * len(part))})", (store.gallery, *part)).fetchone()[0])
    return n


def forget_person(location: str | os.PathLike, label: str, gallery: str | None = None) -> PersonReport:
    """Remove everything stored about ``label`` (see the module doc); returns what was removed."""
    label = normalize_label(label)
    report = person_report(location, label, gallery)
    ids = [s["id"] for s in report["samples"]]
    store = open_existing_store(location, gallery)
    try:
        if not ids:
            raise _person_not_found(store, label)
        pending = bool(pending_migration(store))
        store.write([Op("remove", ids)])  # samples, features, crops, the person: one transaction
        with store._write_tx() as cur:
            if pending:
                for k in range(0, len(ids), 500):
                    part = ids[k:k + 500]
                    store._ex(cur, f"DELETE FROM migrations WHERE gallery = ? AND id IN ({','.join('?' * len(part))})",
                              (store.gallery, *part))
            store._ex(cur, "UPDATE changes SET label = '' WHERE gallery = ? AND label = ?", (store.gallery, label))
            if report["corrections"]:  # negative samples and confirmations naming the person
                store._ex(cur, "DELETE FROM corrections WHERE gallery = ? AND label = ?", (store.gallery, label))
            if report["sightings"]:  # where the person was seen
                store._ex(cur, "DELETE FROM sightings WHERE gallery = ? AND label = ?", (store.gallery, label))
        report["log_checkpointed"] = scrub_log(store)
        report["derived_files_removed"] = drop_derived(store)  # a graph snapshot may hold the vectors
        report["removed"] = True
        return report
    finally:
        store.close()


__all__ = ["DERIVED_FILES", "PersonReport", "UnknownPerson", "drop_derived", "scrub_log", "forget_person", "person_report"]
