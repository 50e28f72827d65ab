"""Tag ``face feature``: ``POST /face-feature-infer {image, model?, flip?} -> {feature, model, dim}``
(PaddleX's face feature module; through the request batcher, :mod:`facefeat.serving.operations.feature`)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from facefeat.serving import schemas as S
from facefeat.serving.budget import request_client
from facefeat.serving.http import ok
from facefeat.serving.operations import feature as op
from facefeat.serving.routers.common import KEY, RESPONSES, Svc, ignored_fields

router = APIRouter(tags=["face feature"], responses=RESPONSES, dependencies=KEY)
ADMIN_PATHS: tuple[str, ...] = ()


@router.post("/face-feature-infer", response_model=S.Envelope[S.FeatureInferResult])
def face_feature_infer(request: Request, body: S.FeatureInferRequest, svc: Svc):
    svc.require_ready()
    ignored_fields(request, body)
    return ok(request, op.feature(svc, body, request_client(request)))
