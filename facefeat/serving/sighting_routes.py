"""facefeat's endpoints for sightings and unknown faces (all admin: they hold biometric data)::

    POST /face-recognition-sightings-config  {indexKey, record?, keepUnknown?, retentionDays?} -> the settings
    GET  /face-recognition-sightings?indexKey=...&label=&since=&until=&unknown=&limit=       -> {sightings}
    POST /face-recognition-sightings-search  {indexKey, image, limit?}  -> sightings of that face, best first
    GET  /face-recognition-unknown-groups?indexKey=...                  -> {groups: [{group, ids, size}]}
    POST /face-recognition-unknown-name      {indexKey, sightingIds, label} -> the faces join/become the person
    POST /face-recognition-sightings-dismiss {indexKey, sightingIds}    -> {deleted}
    GET  /face-recognition-sighting-crop?indexKey=...&id=...            -> image/jpeg: the face kept

See :mod:`facefeat.index.sightings`; recognition (``/face-recognition-infer``) records when enabled.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import Field

from facefeat.serving import schemas as S
from facefeat.pipeline.unknown import unknown_groups as group_unknown
from facefeat.serving.http import ok
from facefeat.serving.storage import check_key

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


def add_sighting_routes(app: FastAPI, svc: Any, responses: dict, key_dep: list) -> None:
    """Register the endpoints above."""
    from facefeat.index import sightings as SG

    @app.post("/face-recognition-sightings-config", response_model=S.Envelope[dict], tags=["sightings"],
              responses=responses, dependencies=key_dep)
    def sightings_config(request: Request, body: ConfigRequest):
        key = check_key(body.indexKey)
        out = SG.configure(svc.store.get(key), body.record, body.keepUnknown, body.retentionDays)
        return ok(request, {"indexKey": key, "record": out["record"], "keepUnknown": out["keep_unknown"],
                            "retentionDays": out["retention_days"]})

    @app.get("/face-recognition-sightings", response_model=S.Envelope[dict], tags=["sightings"], responses=responses,
             dependencies=key_dep)
    def sightings(request: Request, indexKey: str = Query(..., description="the index key"),
                  label: Optional[str] = Query(None, max_length=S.MAX_LABEL_CHARS),
                  since: Optional[float] = Query(None, description="from this Unix time"),
                  until: Optional[float] = Query(None, description="up to this Unix time"),
                  unknown: bool = Query(False, description="unknown faces only"),
                  limit: int = Query(100, ge=1, le=10000)):
        key = check_key(indexKey)
        rows = SG.search(svc.store.get(key), label=label, since=since, until=until, unknown=unknown, limit=limit)
        return ok(request, {"indexKey": key, "sightings": rows})

    @app.post("/face-recognition-sightings-search", response_model=S.Envelope[dict], tags=["sightings"],
              responses=responses, dependencies=key_dep)
    def sightings_search(request: Request, body: ProbeRequest):
        svc.require_ready()
        key = check_key(body.indexKey)
        index = svc.store.get(key)
        g = svc.gallery_features([(body.image, "probe")], None, field="image")
        return ok(request, {"indexKey": key, "sightings": SG.search(index, probe=g.features[0], limit=body.limit)})

    @app.get("/face-recognition-unknown-groups", response_model=S.Envelope[dict], tags=["sightings"],
             responses=responses, dependencies=key_dep)
    def unknown_groups(request: Request, indexKey: str = Query(..., description="the index key")):
        key = check_key(indexKey)
        return ok(request, {"indexKey": key, "groups": group_unknown(svc.store.get(key))})

    @app.post("/face-recognition-unknown-name", response_model=S.Envelope[dict], tags=["sightings"],
              responses=responses, dependencies=key_dep)
    def unknown_name(request: Request, body: NameRequest):
        key = check_key(body.indexKey)
        out = SG.name_sightings(svc.store.get(key), body.sightingIds, body.label)
        return ok(request, {"indexKey": key, "label": out["label"], "sightingIds": out["sightings"],
                            "sampleIds": out["sample_ids"], "duplicates": out["duplicates"]})

    @app.get("/face-recognition-sighting-crop", tags=["sightings"], dependencies=key_dep,
             responses={200: {"content": {"image/jpeg": {}}, "description": "the face kept with a sighting"},
                        **responses})
    def sighting_crop(indexKey: str = Query(..., description="the index key"),
                      id: int = Query(..., ge=0, le=S.MAX_ID, description="the sighting id")):
        from facefeat.serving.errors import NotFound

        key = check_key(indexKey)
        crop = SG.sighting_crop(svc.store.get(key), id)
        if crop is None:
            raise NotFound(f"no face kept for sighting {id} of index {key}")
        return Response(content=crop, media_type="image/jpeg", headers={"Cache-Control": "private, no-cache"})

    @app.post("/face-recognition-sightings-dismiss", response_model=S.Envelope[dict], tags=["sightings"],
              responses=responses, dependencies=key_dep)
    def sightings_dismiss(request: Request, body: IdsRequest):
        key = check_key(body.indexKey)
        return ok(request, {"indexKey": key, "deleted": SG.dismiss(svc.store.get(key), body.sightingIds)})


__all__ = ["ADMIN_PATHS", "add_sighting_routes"]
