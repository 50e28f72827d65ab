"""Tag ``recognition``::

    POST /face-recognition-infer {image, indexKey?, detThreshold?, recThreshold?, far?, fpir?, topk?,
                                  perPerson?, visualize?}  -> {faces: [{bbox, score, recResults}], image?, ...}
    POST /face-verify            {image1, image2 | indexKey+label, recThreshold?, far?, detThreshold?}
                                                           -> {verified, score, threshold, far, operatingPoint, faces}

The work: :mod:`facefeat.serving.operations.recognition`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from facefeat.serving import schemas as S
from facefeat.serving.budget import request_client
from facefeat.serving.http import ok
from facefeat.serving.operations import recognition as op
from facefeat.serving.routers.common import KEY, RESPONSES, Svc, ignored_fields

router = APIRouter(tags=["recognition"], responses=RESPONSES, dependencies=KEY)
ADMIN_PATHS: tuple[str, ...] = ()


@router.post("/face-recognition-infer", response_model=S.Envelope[S.InferResult])
def infer(request: Request, body: S.InferRequest, svc: Svc):
    svc.require_ready()
    ignored_fields(request, body)
    return ok(request, op.recognize(svc, body, request_client(request), origin=request))


@router.post("/face-verify", response_model=S.Envelope[S.VerifyResult])
def face_verify(request: Request, body: S.VerifyRequest, svc: Svc):
    svc.require_ready()
    ignored_fields(request, body)
    return ok(request, op.verify(svc, body, request_client(request)))
