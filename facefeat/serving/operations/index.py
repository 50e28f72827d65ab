"""The galleries (tag ``index``): build, add, remove, delete, info, list (PaddleX's endpoints) and
health, export, import, migrate (facefeat's; the work is in :mod:`facefeat.index.health`,
:mod:`~facefeat.index.archive` and :mod:`~facefeat.index.migrate`)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any, Optional

from facefeat.events import serving as events
from facefeat.index import create_index
from facefeat.index.archive import export_archive, import_archive
from facefeat.index.health import gallery_health
from facefeat.index.migrate import migrate_gallery
from facefeat.pipeline.enrol import add_gallery
from facefeat.serving.service import Service
from facefeat.serving.storage import check_key

log = logging.getLogger("facefeat.serving")


def dups(res: Any) -> dict:
    """``{"duplicates": [...]}`` when a request held images already enrolled (PaddleX's shape otherwise)."""
    return {"duplicates": res.duplicates} if res.duplicates else {}


def gallery_kw(svc: Service, key: str) -> dict:
    """The ``gallery=`` keyword of the index tools when the galleries live in a database."""
    return {"gallery": key} if svc.store.store_url is not None else {}


def build(svc: Service, body: Any, client: str) -> dict:
    """``POST /face-recognition-index-build``: a new gallery of the pairs (all or nothing)."""
    predictor = svc.predictor
    g = svc.gallery_features(body.imageLabelPairs, body.quality, budget=svc.budget(client))
    key = svc.store.new_key()
    index = create_index(backend=svc.store.backend, dim=predictor.embedding_size,
                         metric_type=body.metricType or "IP", index_type=body.indexType or None,
                         model_name=predictor.model_name, **svc.store.collection_kwargs(key))
    res = add_gallery(index, g)
    svc.store.create(key, index, name=body.indexName)
    events.changed(svc.events, key, (), g.labels)
    log.info("index %s built: %d images", key, len(res.ids))
    return {"indexKey": key, "indexName": body.indexName, "imageCount": len(index), "ids": res.ids, **dups(res)}


def add(svc: Service, body: Any, client: str) -> dict:
    """``POST /face-recognition-index-add``: the pairs added in one transaction."""
    key = check_key(body.indexKey)
    svc.store.get(key)  # 404 before the (slow) embedding
    predictor = svc.predictor
    g = svc.gallery_features(body.imageLabelPairs, body.quality, budget=svc.budget(client))
    with svc.store.mutate(key) as index:
        index.check_model(predictor.model_name, predictor.embedding_size)
        before = events.labels(svc.events, index)
        res = add_gallery(index, g)  # one transaction: vectors, labels, crops, figures
        count = len(index)
    events.changed(svc.events, key, before, (before or set()) | set(g.labels))
    return {"imageCount": count, "ids": res.ids, **dups(res)}


def remove(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-index-remove``: the ids present removed; the others listed as missing."""
    key = check_key(body.indexKey)
    with svc.store.mutate(key) as index:
        before = events.labels(svc.events, index)
        present = set(index.ids())
        wanted = list(dict.fromkeys(body.ids))
        removed = [i for i in wanted if i in present]
        missing = [i for i in wanted if i not in present]
        if removed:
            index.remove(removed)  # one transaction: the samples' crops go with them
        count = len(index)
        after = events.labels(svc.events, index)
    events.changed(svc.events, key, before, after)
    return {"imageCount": count, "removed": removed, "missing": missing}


def delete(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-index-delete``."""
    key = check_key(body.indexKey)
    before = events.gallery_labels(svc.store, key) if svc.events is not None else None
    svc.store.delete(key)
    events.changed(svc.events, key, before, ())
    log.info("index %s deleted", key)
    return {"indexKey": key, "deleted": True}


def info(svc: Service, index_key: str) -> dict:
    """``GET /face-recognition-index-info``: the gallery's model, metric, type and entries."""
    key = check_key(index_key)
    index = svc.store.get(key)
    meta = index.info()
    entries = [{"id": i, "label": lab} for i, lab in index.labels().items()]
    return {"indexKey": key, "indexName": index.display_name, "imageCount": len(entries),
            "model": meta.get("model_name"), "dim": int(meta["dim"]), "backend": meta["backend"],
            "metricType": meta["metric_type"], "indexType": meta["index_type"], "entries": entries}


def listing(svc: Service) -> dict:
    """``GET /face-recognition-index-list``: every readable gallery's summary."""
    out = []
    for key in svc.store.keys():
        try:
            out.append(svc.store.summary(key))
        except (OSError, ValueError):
            continue  # being replaced right now, or corrupt: not listed
    return {"indexes": out}


def health(svc: Service, index_key: str, quality: str, max_fixes: int) -> dict:
    """``GET /face-recognition-index-health``: the health report (:func:`facefeat.index.health.gallery_health`)."""
    key = check_key(index_key)
    index = svc.store.get(key)  # 404 when unknown; brought up to date
    rep = gallery_health(index.store, policy=quality, max_fixes=max_fixes)
    return {"indexKey": key, **{k: v for k, v in rep.items() if k != "gallery"}}


def export(svc: Service, index_key: str) -> tuple[str, str]:
    """``(key, path)``: the gallery's archive written to a temporary file that the caller deletes."""
    key = check_key(index_key)
    svc.store.get(key)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".tar", dir=svc.store.root)
    os.close(fd)
    try:
        export_archive(svc.store.location(key), tmp, **gallery_kw(svc, key))
    except BaseException:
        os.unlink(tmp)
        raise
    return key, tmp


def new_key_for_import(svc: Service, index_key: Optional[str]) -> str:
    """The gallery an import goes to: ``index_key`` (checked) or a new key."""
    return check_key(index_key) if index_key else svc.store.new_key()


def import_(svc: Service, key: str, archive: bytes) -> dict:
    """Restore (``key`` unknown) or merge (``key`` existing) the archive ``archive`` holds."""
    new = not svc.store.exists(key)
    fd, tmp = tempfile.mkstemp(prefix=".import-", suffix=".tar", dir=svc.store.root)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(archive)
        rep = import_archive(tmp, svc.store.location(key), **gallery_kw(svc, key))
    except BaseException:
        if new and svc.store.store_url is None and not svc.store.exists(key):
            shutil.rmtree(svc.store.path(key), ignore_errors=True)  # no empty gallery left behind
        raise
    finally:
        os.unlink(tmp)
    rep = {k: v for k, v in rep.items() if k not in ("archive", "target")}
    index = svc.store.get(key)
    return {"indexKey": key, **rep, "imageCount": len(index)}


def migrate(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-index-migrate``: re-embed the gallery with the server's model."""
    key = check_key(body.indexKey)
    svc.store.get(key)
    with svc.pipeline() as pipe:
        rep = migrate_gallery(svc.store.location(key), pipe.predictor, **gallery_kw(svc, key))
    svc.store._cache.pop(key, None)  # the features changed dimension/model: open it afresh
    return {"indexKey": key, **{k: v for k, v in rep.items() if k != "gallery"}}


__all__ = ["add", "build", "delete", "dups", "export", "gallery_kw", "health", "import_", "info", "listing",
           "migrate", "new_key_for_import", "remove"]
