"""Tag ``index``: the galleries. PaddleX's endpoints::

    POST /face-recognition-index-build   {imageLabelPairs, indexType?, metricType?, indexName?, quality?}
                                                              -> {indexKey, indexName, imageCount, ids}  (admin)
    POST /face-recognition-index-add     {imageLabelPairs, indexKey, quality?} -> {imageCount, ids}      (admin)
    POST /face-recognition-index-remove  {ids, indexKey}      -> {imageCount, removed, missing}           (admin)
    POST /face-recognition-index-delete  {indexKey}           -> {indexKey, deleted}                      (admin)
    GET  /face-recognition-index-info?indexKey=...            -> {indexKey, imageCount, entries, ...}
    GET  /face-recognition-index-list                         -> {indexes: [{indexKey, imageCount, model}]}

and facefeat's, for living with a gallery::

    GET  /face-recognition-index-health?indexKey=...&quality=standard   -> the health report
    GET  /face-recognition-index-export?indexKey=...                    -> the archive (application/x-tar) (admin)
    POST /face-recognition-index-import[?indexKey=...]  body: the archive -> {indexKey, mode, ...}         (admin)
         (no indexKey, or an unknown one: a new gallery restored exactly; an existing one: merged by person)
    POST /face-recognition-index-migrate {indexKey}     -> re-embed with the server's model            (admin)

The work: :mod:`facefeat.serving.operations.index`.
"""

from __future__ import annotations

import os
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from facefeat.serving import schemas as S
from facefeat.serving.budget import request_client
from facefeat.serving.http import ok
from facefeat.serving.operations import index as op
from facefeat.serving.routers.common import KEY, RESPONSES, Svc, ignored_fields

router = APIRouter(tags=["index"], responses=RESPONSES, dependencies=KEY)
#: endpoints that need an admin key
ADMIN_PATHS = ("/face-recognition-index-build", "/face-recognition-index-add", "/face-recognition-index-remove",
               "/face-recognition-index-delete", "/face-recognition-index-export", "/face-recognition-index-import",
               "/face-recognition-index-migrate")
ARCHIVE_TYPE = "application/x-tar"


class MigrateRequest(S._Body):
    indexKey: str


@router.post("/face-recognition-index-build", response_model=S.Envelope[S.BuildIndexResult])
def index_build(request: Request, body: S.BuildIndexRequest, svc: Svc):
    svc.require_ready()
    ignored_fields(request, body)
    return ok(request, op.build(svc, body, request_client(request)))


@router.post("/face-recognition-index-add", response_model=S.Envelope[S.AddImagesToIndexResult])
def index_add(request: Request, body: S.AddImagesToIndexRequest, svc: Svc):
    svc.require_ready()
    ignored_fields(request, body)
    return ok(request, op.add(svc, body, request_client(request)))


@router.post("/face-recognition-index-remove", response_model=S.Envelope[S.RemoveImagesFromIndexResult])
def index_remove(request: Request, body: S.RemoveImagesFromIndexRequest, svc: Svc):
    svc.require_ready()
    ignored_fields(request, body)
    return ok(request, op.remove(svc, body))


@router.post("/face-recognition-index-delete", response_model=S.Envelope[S.DeleteIndexResult])
def index_delete(request: Request, body: S.DeleteIndexRequest, svc: Svc):
    ignored_fields(request, body)
    return ok(request, op.delete(svc, body))


@router.get("/face-recognition-index-info", response_model=S.Envelope[S.IndexInfoResult])
def index_info(request: Request, svc: Svc, indexKey: str = Query(..., description="the index key")):
    return ok(request, op.info(svc, indexKey))


@router.get("/face-recognition-index-list", response_model=S.Envelope[S.IndexListResult])
def index_list(request: Request, svc: Svc):
    return ok(request, op.listing(svc))


@router.get("/face-recognition-index-health", response_model=S.Envelope[dict])
def index_health(request: Request, svc: Svc, indexKey: str = Query(..., description="the index key"),
                 quality: Literal["off", "standard", "strict"] = Query("standard", description="quality policy"),
                 maxFixes: int = Query(20, ge=0, le=1000, description="fixes listed")):
    return ok(request, op.health(svc, indexKey, quality, maxFixes))


@router.get("/face-recognition-index-export",
            responses={200: {"content": {ARCHIVE_TYPE: {}}, "description": "the gallery archive"}})
def index_export(svc: Svc, indexKey: str = Query(..., description="the index key")):
    key, tmp = op.export(svc, indexKey)
    return FileResponse(tmp, media_type=ARCHIVE_TYPE, filename=f"gallery-{key}.tar",
                        background=BackgroundTask(os.unlink, tmp))


@router.post("/face-recognition-index-import", response_model=S.Envelope[dict],
             openapi_extra={"requestBody": {"required": True, "content": {
                 ARCHIVE_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
async def index_import(request: Request, svc: Svc,
                       indexKey: str | None = Query(None, description="merge into this index")):
    key = op.new_key_for_import(svc, indexKey)
    body = await request.body()
    return ok(request, await run_in_threadpool(op.import_, svc, key, body))


@router.post("/face-recognition-index-migrate", response_model=S.Envelope[dict])
def index_migrate(request: Request, body: MigrateRequest, svc: Svc):
    svc.require_ready()
    return ok(request, op.migrate(svc, body))
