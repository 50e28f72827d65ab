"""Tag ``people``: the people of a gallery::

    GET  /face-recognition-persons?indexKey=...        -> {persons: [{label, sampleCount, sampleIds}], ...}
    POST /face-recognition-person-add    {indexKey, label, images, quality?} -> {label, ids, imageCount}   (admin)
    POST /face-recognition-person-remove {indexKey, label}              -> {label, removed, imageCount}    (admin)
    POST /face-recognition-person-rename {indexKey, label, newLabel}    -> {label, newLabel, renamed}      (admin)
    GET  /face-recognition-thumbnail?indexKey=...&id=...                -> image/jpeg: a sample's aligned face
    POST /face-recognition-correct {indexKey, image, label, kind: not|is, quality?} -> {correctionId, ...} (admin)
    POST /face-recognition-correct-undo {indexKey, correctionId}       -> what was undone                 (admin)
    GET  /face-recognition-corrections?indexKey=...&label=...           -> the corrections
    GET  /face-recognition-person?indexKey=...&label=...                -> everything stored about one person (admin)
    POST /face-recognition-person-forget {indexKey, label}              -> delete all of it, everywhere    (admin)

The work: :mod:`facefeat.serving.operations.people`.
"""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from facefeat.serving import schemas as S
from facefeat.serving.budget import request_client
from facefeat.serving.http import ok
from facefeat.serving.operations import people as op
from facefeat.serving.routers.common import KEY, RESPONSES, Svc, ignored_fields

router = APIRouter(tags=["people"], responses=RESPONSES, dependencies=KEY)
#: endpoints that need an admin key
ADMIN_PATHS = ("/face-recognition-person-add", "/face-recognition-person-remove", "/face-recognition-person-rename",
               "/face-recognition-correct", "/face-recognition-correct-undo", "/face-recognition-person",
               "/face-recognition-person-forget")


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


@router.get("/face-recognition-persons", response_model=S.Envelope[S.PersonsResult])
def persons(request: Request, svc: Svc, indexKey: str = Query(..., description="the index key")):
    return ok(request, op.persons(svc, indexKey))


@router.post("/face-recognition-person-add", response_model=S.Envelope[S.PersonAddResult])
def person_add(request: Request, body: S.PersonAddRequest, svc: Svc):
    svc.require_ready()
    ignored_fields(request, body)
    return ok(request, op.add(svc, body, request_client(request)))


@router.post("/face-recognition-person-remove", response_model=S.Envelope[S.PersonRemoveResult])
def person_remove(request: Request, body: S.PersonRemoveRequest, svc: Svc):
    ignored_fields(request, body)
    return ok(request, op.remove(svc, body))


@router.post("/face-recognition-person-rename", response_model=S.Envelope[S.PersonRenameResult])
def person_rename(request: Request, body: S.PersonRenameRequest, svc: Svc):
    ignored_fields(request, body)
    return ok(request, op.rename(svc, body))


@router.get("/face-recognition-thumbnail",
            responses={200: {"content": {"image/jpeg": {}}, "description": "the sample's aligned face (JPEG)"}})
def thumbnail(svc: Svc, indexKey: str = Query(..., description="the index key"),
              id: int = Query(..., ge=0, le=S.MAX_ID, description="the sample id")):
    data, fmt = op.thumbnail(svc, indexKey, id)
    return Response(content=data, media_type=f"image/{fmt}", headers={"Cache-Control": "private, no-cache"})


@router.post("/face-recognition-correct", response_model=S.Envelope[dict])
def correct(request: Request, body: CorrectRequest, svc: Svc):
    svc.require_ready()
    return ok(request, op.correct(svc, body))


@router.post("/face-recognition-correct-undo", response_model=S.Envelope[dict])
def correct_undo(request: Request, body: UndoRequest, svc: Svc):
    return ok(request, op.undo_correction(svc, body))


@router.get("/face-recognition-corrections", response_model=S.Envelope[dict])
def corrections(request: Request, svc: Svc, indexKey: str = Query(..., description="the index key"),
                label: Optional[str] = Query(None, max_length=S.MAX_LABEL_CHARS)):
    return ok(request, op.corrections(svc, indexKey, label))


@router.get("/face-recognition-person", response_model=S.Envelope[dict])
def person(request: Request, svc: Svc, indexKey: str = Query(..., description="the index key"),
           label: str = Query(..., min_length=1, max_length=S.MAX_LABEL_CHARS)):
    return ok(request, op.report(svc, indexKey, label))


@router.post("/face-recognition-person-forget", response_model=S.Envelope[dict])
def person_forget(request: Request, body: PersonForgetRequest, svc: Svc):
    return ok(request, op.forget(svc, body))
