"""Tag ``sightings``: sightings and unknown faces (all admin: they hold biometric data)::

    POST /face-recognition-sightings-config  {indexKey, record?, keepUnknown?, retentionDays?} -> the settings
    GET  /face-recognition-sightings?indexKey=...&label=&since=&until=&unknown=&limit=       -> {sightings}
    POST /face-recognition-sightings-search  {indexKey, image, limit?}  -> sightings of that face, best first
    GET  /face-recognition-unknown-groups?indexKey=...                  -> {groups: [{group, ids, size}]}
    POST /face-recognition-unknown-name      {indexKey, sightingIds, label} -> the faces join/become the person
    POST /face-recognition-sightings-dismiss {indexKey, sightingIds}    -> {deleted}
    GET  /face-recognition-sighting-crop?indexKey=...&id=...            -> image/jpeg: the face kept

Recognition (``/face-recognition-infer``) records when enabled. The work:
:mod:`facefeat.serving.operations.sightings`.
"""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from facefeat.serving import schemas as S
from facefeat.serving.http import ok
from facefeat.serving.operations import sightings as op
from facefeat.serving.routers.common import KEY, RESPONSES, Svc

router = APIRouter(tags=["sightings"], responses=RESPONSES, dependencies=KEY)
#: endpoints that need an admin key (all of them)
ADMIN_PATHS = ("/face-recognition-sightings-config", "/face-recognition-sightings", "/face-recognition-sightings-search",
               "/face-recognition-unknown-groups", "/face-recognition-unknown-name",
               "/face-recognition-sightings-dismiss", "/face-recognition-sighting-crop")


class ConfigRequest(S._Body):
    indexKey: str
    record: Optional[bool] = Field(None, description="record recognised faces")
    keepUnknown: Optional[bool] = Field(None, description="keep faces that were not named")
    retentionDays: Optional[float] = Field(None, description="days a sighting is kept (> 0)")


class ProbeRequest(S._Body):
    indexKey: str
    image: str = Field(description="the face to look for: base64 (or a data URL) or an http(s) URL")
    limit: int = Field(100, ge=1, le=10000)


class IdsRequest(S._Body):
    indexKey: str
    sightingIds: list[S.Id] = Field(min_length=1, max_length=10000)


class NameRequest(IdsRequest):
    label: str = Field(min_length=1, max_length=S.MAX_LABEL_CHARS)


@router.post("/face-recognition-sightings-config", response_model=S.Envelope[dict])
def sightings_config(request: Request, body: ConfigRequest, svc: Svc):
    return ok(request, op.configure(svc, body))


@router.get("/face-recognition-sightings", response_model=S.Envelope[dict])
def sightings(request: Request, svc: Svc, indexKey: str = Query(..., description="the index key"),
              label: Optional[str] = Query(None, max_length=S.MAX_LABEL_CHARS),
              since: Optional[float] = Query(None, description="from this Unix time"),
              until: Optional[float] = Query(None, description="up to this Unix time"),
              unknown: bool = Query(False, description="unknown faces only"),
              limit: int = Query(100, ge=1, le=10000)):
    return ok(request, op.search(svc, indexKey, label, since, until, unknown, limit))


@router.post("/face-recognition-sightings-search", response_model=S.Envelope[dict])
def sightings_search(request: Request, body: ProbeRequest, svc: Svc):
    svc.require_ready()
    return ok(request, op.search_face(svc, body))


@router.get("/face-recognition-unknown-groups", response_model=S.Envelope[dict])
def unknown_groups(request: Request, svc: Svc, indexKey: str = Query(..., description="the index key")):
    return ok(request, op.unknown_groups(svc, indexKey))


@router.post("/face-recognition-unknown-name", response_model=S.Envelope[dict])
def unknown_name(request: Request, body: NameRequest, svc: Svc):
    return ok(request, op.name_unknown(svc, body))


@router.get("/face-recognition-sighting-crop",
            responses={200: {"content": {"image/jpeg": {}}, "description": "the face kept with a sighting"}})
def sighting_crop(svc: Svc, indexKey: str = Query(..., description="the index key"),
                  id: int = Query(..., ge=0, le=S.MAX_ID, description="the sighting id")):
    return Response(content=op.crop(svc, indexKey, id), media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-cache"})


@router.post("/face-recognition-sightings-dismiss", response_model=S.Envelope[dict])
def sightings_dismiss(request: Request, body: IdsRequest, svc: Svc):
    return ok(request, op.dismiss(svc, body))
