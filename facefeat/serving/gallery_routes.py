"""facefeat's own endpoints for living with a gallery (same envelope, limits and key roles)::

    GET  /face-recognition-index-health?indexKey=...&quality=standard   -> the health report (read)
    GET  /face-recognition-index-export?indexKey=...                    -> the archive (application/x-tar) (admin)
    POST /face-recognition-index-import[?indexKey=...]  body: the archive -> {indexKey, mode, ...}         (admin)
         (no indexKey, or an unknown one: a new gallery restored exactly; an existing one: merged by person)
    POST /face-recognition-index-migrate {indexKey}     -> re-embed with the server's model            (admin)
    GET  /face-recognition-person?indexKey=...&label=...  -> everything stored about one person         (admin)
    POST /face-recognition-person-forget {indexKey, label} -> delete all of it, everywhere              (admin)
    POST /face-recognition-correct {indexKey, image, label, kind: not|is, quality?} -> {correctionId, ...} (admin)
    POST /face-recognition-correct-undo {indexKey, correctionId}                   -> what was undone     (admin)
    GET  /face-recognition-corrections?indexKey=...&label=...                      -> the corrections     (read)

The work is done in :mod:`facefeat.index.health`, :mod:`~facefeat.index.archive`,
:mod:`~facefeat.index.migrate` and :mod:`~facefeat.index.privacy`.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Literal, Optional

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse
from pydantic import Field
from starlette.background import BackgroundTask

from facefeat.serving import schemas as S
from facefeat.serving.errors import PersonNotFound
from facefeat.serving.http import ok
from facefeat.serving.sighting_routes import ADMIN_PATHS as SIGHTING_ADMIN, add_sighting_routes
from facefeat.serving.storage import check_key

#: endpoints that need an admin key
ADMIN_PATHS = ("/face-recognition-correct", "/face-recognition-correct-undo", "/face-recognition-index-export", "/face-recognition-index-import", "/face-recognition-index-migrate",
               "/face-recognition-person", "/face-recognition-person-forget") + SIGHTING_ADMIN
ARCHIVE_TYPE = "application/x-tar"


class MigrateRequest(S._Body):
    indexKey: str


class PersonForgetRequest(S._Body):
    indexKey: str
    label: str = Field(min_length=1, max_length=S.MAX_LABEL_CHARS)


class CorrectRequest(S._Body):
    indexKey: str
    image: str = Field(description="the face: base64 (or a data URL) or an http(s) URL; one face (or one clearly largest)")
    label: str = Field(min_length=1, max_length=S.MAX_LABEL_CHARS, description="the person the correction names")
    kind: Literal["not", "is"] = Field(description="'not': the face is not this person; 'is': it is (a new sample)")
    quality: Optional[S.QualityPolicyName] = Field("standard", description="'is': the enrolment quality policy")


class UndoRequest(S._Body):
    indexKey: str
    correctionId: S.Id


def _gallery_kw(svc: Any, key: str) -> dict:
    return {"gallery": key} if svc.store.store_url is not None else {}


def add_routes(app: FastAPI, svc: Any, responses: dict, key_dep: list) -> None:
    """Register the endpoints above on ``app`` (``svc``: the :class:`~facefeat.serving.service.Service`)."""
    add_correction_routes(app, svc, responses, key_dep)
    add_sighting_routes(app, svc, responses, key_dep)  # sightings and unknown faces (sighting_routes)

    @app.get("/face-recognition-index-health", response_model=S.Envelope[dict], tags=["index"], responses=responses,
             dependencies=key_dep)
    def index_health(request: Request, indexKey: str = Query(..., description="the index key"),
                     quality: Literal["off", "standard", "strict"] = Query("standard", description="quality policy"),
                     maxFixes: int = Query(20, ge=0, le=1000, description="fixes listed")):
        from facefeat.index.health import gallery_health

        key = check_key(indexKey)
        index = svc.store.get(key)  # 404 when unknown; brought up to date
        rep = gallery_health(index.store, policy=quality, max_fixes=maxFixes)
        return ok(request, {"indexKey": key, **{k: v for k, v in rep.items() if k != "gallery"}})

    @app.get("/face-recognition-index-export", tags=["index"], dependencies=key_dep,
             responses={200: {"content": {ARCHIVE_TYPE: {}}, "description": "the gallery archive"}, **responses})
    def index_export(indexKey: str = Query(..., description="the index key")):
        from facefeat.index.archive import export_archive

        key = check_key(indexKey)
        svc.store.get(key)
        fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".tar", dir=svc.store.root)
        os.close(fd)
        try:
            export_archive(svc.store.location(key), tmp, **_gallery_kw(svc, key))
        except BaseException:
            os.unlink(tmp)
            raise
        return FileResponse(tmp, media_type=ARCHIVE_TYPE, filename=f"gallery-{key}.tar",
                            background=BackgroundTask(os.unlink, tmp))

    @app.post("/face-recognition-index-import", response_model=S.Envelope[dict], tags=["index"], responses=responses,
              dependencies=key_dep, openapi_extra={"requestBody": {"required": True, "content": {
                  ARCHIVE_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
    async def index_import(request: Request, indexKey: str | None = Query(None, description="merge into this index")):
        from starlette.concurrency import run_in_threadpool

        from facefeat.index.archive import import_archive

        key = check_key(indexKey) if indexKey else svc.store.new_key()
        new = not svc.store.exists(key)
        body = await request.body()
        fd, tmp = tempfile.mkstemp(prefix=".import-", suffix=".tar", dir=svc.store.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            rep = await run_in_threadpool(import_archive, tmp, svc.store.location(key), **_gallery_kw(svc, key))
        except BaseException:
            if new and svc.store.store_url is None and not svc.store.exists(key):
                import shutil

                shutil.rmtree(svc.store.path(key), ignore_errors=True)  # no empty gallery left behind
            raise
        finally:
            os.unlink(tmp)
        rep = {k: v for k, v in rep.items() if k not in ("archive", "target")}
        index = svc.store.get(key)
        return ok(request, {"indexKey": key, **rep, "imageCount": len(index)})

    @app.post("/face-recognition-index-migrate", response_model=S.Envelope[dict], tags=["index"], responses=responses,
              dependencies=key_dep)
    def index_migrate(request: Request, body: MigrateRequest):
        from facefeat.index.migrate import migrate_gallery

        svc.require_ready()
        key = check_key(body.indexKey)
        svc.store.get(key)
        with svc.pipeline() as pipe:
            rep = migrate_gallery(svc.store.location(key), pipe.predictor, **_gallery_kw(svc, key))
        svc.store._cache.pop(key, None)  # the features changed dimension/model: open it afresh
        return ok(request, {"indexKey": key, **{k: v for k, v in rep.items() if k != "gallery"}})

    @app.get("/face-recognition-person", response_model=S.Envelope[dict], tags=["people"], responses=responses,
             dependencies=key_dep)
    def person(request: Request, indexKey: str = Query(..., description="the index key"),
               label: str = Query(..., min_length=1, max_length=S.MAX_LABEL_CHARS)):
        from facefeat.index.privacy import UnknownPerson, person_report

        key = check_key(indexKey)
        svc.store.get(key)
        try:
            rep = person_report(svc.store.location(key), label, **_gallery_kw(svc, key))
        except UnknownPerson as exc:
            raise PersonNotFound(f"{exc} (index {key})") from None
        return ok(request, {"indexKey": key, **{k: v for k, v in rep.items() if k != "gallery"}})

    @app.post("/face-recognition-person-forget", response_model=S.Envelope[dict], tags=["people"],
              responses=responses, dependencies=key_dep)
    def person_forget(request: Request, body: PersonForgetRequest):
        from facefeat.index.privacy import UnknownPerson, forget_person

        key = check_key(body.indexKey)
        index = svc.store.get(key)
        try:
            rep = forget_person(svc.store.location(key), body.label, **_gallery_kw(svc, key))
        except UnknownPerson as exc:
            raise PersonNotFound(f"{exc} (index {key})") from None
        index.refresh()
        return ok(request, {"indexKey": key, "label": rep["label"], "removed": [s["id"] for s in rep["samples"]],
                            "imageCount": len(index)})


def add_correction_routes(app: FastAPI, svc: Any, responses: dict, key_dep: list) -> None:
    """``POST /face-recognition-correct {indexKey, image, label, kind: not|is, quality?}`` (admin),
    ``POST /face-recognition-correct-undo {indexKey, correctionId}`` (admin),
    ``GET /face-recognition-corrections?indexKey=...&label=...`` (read): see :mod:`facefeat.index.corrections`."""
    from facefeat.index import corrections as C
    from facefeat.index.privacy import UnknownPerson

    @app.post("/face-recognition-correct", response_model=S.Envelope[dict], tags=["people"], responses=responses,
              dependencies=key_dep)
    def correct(request: Request, body: CorrectRequest):
        svc.require_ready()
        key = check_key(body.indexKey)
        index = svc.store.get(key)
        try:
            C._check_person(index.store, body.label)  # 404 before the (slow) embedding
            g = svc.gallery_features([(body.image, body.label)], body.quality if body.kind == "is" else None,
                                     field="image")
            if body.kind == "is":
                out = C.confirm_features(index, g)
                return ok(request, {"correctionId": out["correction"], "kind": "is", "label": g.labels[0],
                                    "sampleId": out["sample_id"], "duplicate": out["duplicate"]})
            cid = C.reject_match(index, g.labels[0], g.features[0], crop=g.records[0].crop)
        except UnknownPerson as exc:
            raise PersonNotFound(f"{exc} (index {key})") from None
        return ok(request, {"correctionId": cid, "kind": "not", "label": g.labels[0]})

    @app.post("/face-recognition-correct-undo", response_model=S.Envelope[dict], tags=["people"],
              responses=responses, dependencies=key_dep)
    def correct_undo(request: Request, body: UndoRequest):
        key = check_key(body.indexKey)
        out = C.undo(svc.store.get(key), body.correctionId)
        return ok(request, {"correctionId": out["correction"], "kind": out["kind"], "label": out["label"],
                            "removedSample": out["removed_sample"]})

    @app.get("/face-recognition-corrections", response_model=S.Envelope[dict], tags=["people"], responses=responses,
             dependencies=key_dep)
    def corrections(request: Request, indexKey: str = Query(..., description="the index key"),
                    label: Optional[str] = Query(None, max_length=S.MAX_LABEL_CHARS)):
        key = check_key(indexKey)
        return ok(request, {"indexKey": key, "corrections": C.list_corrections(svc.store.get(key), label)})


__all__ = ["ADMIN_PATHS", "add_correction_routes", "add_routes"]
