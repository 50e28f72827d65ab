"""Tag ``service``: ``GET /health`` (public): 200 when the models are loaded, 503 before."""

from __future__ import annotations

from fastapi import APIRouter, Request

from facefeat.serving import schemas as S
from facefeat.serving.http import ok
from facefeat.serving.routers.common import RESPONSES, Svc

router = APIRouter(tags=["service"], responses=RESPONSES)
ADMIN_PATHS: tuple[str, ...] = ()


@router.get("/health", response_model=S.Envelope[S.HealthResult])
def health(request: Request, svc: Svc):
    return ok(request, svc.health())
