"""What every router shares: the error statuses documented on each endpoint, the API-key header
(documented; the middleware checks it), and the dependencies and helpers of a route body (the
app's :class:`~facefeat.serving.service.Service`, unknown-field notes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from facefeat.serving import schemas as S
from facefeat.serving.service import Service

#: every error status the service answers, as documented in the OpenAPI document
ERRORS = {
    400: "bad input: bad base64, not an image, no usable face, invalid indexKey, disallowed Host",
    401: "API key missing or not valid (only when the server has keys)",
    403: "the API key is read-only",
    404: "unknown indexKey, person (label) or sample thumbnail",
    409: "index/model mismatch or corrupt index",
    408: "the request body was not received within body_timeout_s",
    413: "a limit exceeded: body size, image pixels (per image, per request), images per request, downloaded bytes",
    422: "malformed body (errorMsg is the JSON list of problems), or too many unknown fields",
    500: "internal error (no traceback is sent; the server log has it under the logId)",
    503: "not ready (models loading), too many image downloads at once, no pipeline free before the deadline, "
         "or the gallery database unavailable",
    504: "the request's work ran past request_timeout_s",
    507: "the disk holding the galleries is full; nothing of the change was saved",
}
RESPONSES = {code: {"model": S.ErrorEnvelope, "description": text} for code, text in ERRORS.items()}
#: documents the key in the OpenAPI document (and /docs' Authorize button); the middleware checks it
KEY = [Depends(APIKeyHeader(name="X-API-Key", auto_error=False,
                            description="needed when the server has API keys (--api-key)"))]


async def _service(request: Request) -> Service:
    return request.app.state.service


#: a route parameter ``svc: Svc`` is the app's service (nothing of it shows in the OpenAPI document)
Svc = Annotated[Service, Depends(_service)]


def ignored_fields(request: Request, body: Any, where: str = "") -> None:
    """Unknown (and documented-unused) fields are ignored (:class:`~facefeat.serving.http.UnknownFields`)."""
    names = [where + k for k in (body.model_extra or {})]
    if getattr(body, "hammingRadius", None) is not None:
        names.append("hammingRadius")
    for p in getattr(body, "imageLabelPairs", None) or []:
        names += [f"imageLabelPairs[].{k}" for k in (p.model_extra or {})]
    request.app.state.unknown_fields.note(type(body).__name__, names)


__all__ = ["ERRORS", "KEY", "RESPONSES", "Svc", "ignored_fields"]
