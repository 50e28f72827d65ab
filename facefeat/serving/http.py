"""HTTP plumbing of the service: the PaddleX envelope, the request middleware (logId, trusted
hosts, API keys, body limit and body read timeout, HEAD on GET routes, framing headers) and the
exception handlers (status by exception type, never a traceback, never an absolute server path)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import threading
import uuid
from typing import Any, Callable, Iterable, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from facefeat.errors import FacefeatError, StorageError
from facefeat.serving.errors import ServingError, status_of

log = logging.getLogger("facefeat.serving")

#: a request over the body limit is read (and discarded) up to this much more, so that the client,
#: which is still sending, gets to read the 413 instead of a reset connection
DRAIN_BYTES = 32 * 1024 * 1024
#: ... and for at most this long, after the 413 has been sent
DRAIN_SECONDS = 2.0
#: on every response: no framing by other sites (clickjacking), no content-type sniffing
SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"),
                    (b"x-content-type-options", b"nosniff")]
_ABS_PATH = re.compile(r"(?<![\w.:/~-])(?:/[^\s'\"():,;/]+){2,}/?")


def envelope(log_id: str, status: int, msg: str) -> dict:
    return {"logId": log_id, "errorCode": status, "errorMsg": msg, "result": None}


def scrub(msg: str, roots: Iterable[str] = ()) -> str:
    """``msg`` without absolute server paths: known roots become ``<storage>``, others their last part."""
    for root in roots:
        if root:
            msg = msg.replace(str(root), "<storage>")
    return _ABS_PATH.sub(lambda m: ".../" + m.group(0).rstrip("/").rsplit("/", 1)[-1], msg)


class KeyRing:
    """API keys and their roles; compared in constant time, never logged or shown."""

    def __init__(self, keys: list[tuple[str, str]]):
        self._keys = [(k.encode(), role) for k, role in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._keys)} keys)"

    def role_of(self, key: Optional[str]) -> Optional[str]:
        if not key:
            return None
        given = key.encode()
        found = None
        for k, role in self._keys:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(given, k) and found is None:
                found = role
        return found


class TooManyFields(ServingError):
    """A request body with an absurd number of unknown fields."""

    status = 422


def log_safe(text: str, limit: int = 64) -> str:
    """``text`` for a log line: control characters and non-ASCII escaped (no forged lines or
    terminal escapes), at most ``limit`` characters of it."""
    cut = text[:limit]
    return cut.encode("unicode_escape").decode("ascii") + ("..." if len(text) > limit else "")


class UnknownFields:
    """Unknown request fields are ignored and each name is logged once, escaped; the names kept
    for "once" are bounded (:attr:`REMEMBERED`), and a body with more than ``limit`` unknown
    fields is refused (422) - they cost memory to parse and are no client's honest mistake."""

    REMEMBERED = 1024

    def __init__(self, limit: int):
        self.limit = int(limit)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._full_noted = False

    def __len__(self) -> int:
        return len(self._seen)

    def note(self, what: str, names: list[str]) -> None:
        if len(names) > self.limit:
            raise TooManyFields(f"the request body has {len(names):,} unknown fields, above the limit of "
                                f"{self.limit} (max_unknown_fields); send only the documented fields")
        with self._lock:
            new = [n for n in dict.fromkeys(names) if n not in self._seen]
            room = self.REMEMBERED - len(self._seen)
            self._seen.update(new[:max(room, 0)])
            full = room < len(new) and not self._full_noted
            self._full_noted = self._full_noted or full
            if room <= 0:
                new = []  # memory full: no longer logged, or every request would log again
        if new:
            log.warning("%s: ignoring fields facefeat does not use: %s", what,
                        ", ".join(log_safe(n) for n in new[:10]) + (", ..." if len(new) > 10 else ""))
        if full:
            log.warning("%s: %d unknown field names logged; further ones are ignored without a log line",
                        what, self.REMEMBERED)


def _header(scope, name: bytes) -> Optional[str]:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


def _host_of(value: str) -> str:
    v = value.strip().lower()
    if v.startswith("["):
        return v[1:v.find("]")] if "]" in v else v
    return v.rsplit(":", 1)[0] if v.count(":") == 1 else v


class RequestContextMiddleware:
    """Per request: a logId (``X-Log-Id`` header too), the trusted-host check (DNS rebinding),
    the API key check (before any body is read), the body size limit and read timeout, HEAD
    answered as GET without a body, and :data:`SECURITY_HEADERS` on every response.

    The limit is checked on ``Content-Length`` before anything is read (the 413 is sent at once)
    and on the bytes actually received (chunked bodies, lying headers). A refused body is drained
    afterwards (at most DRAIN_BYTES, DRAIN_SECONDS) so that a client still sending can read the
    413 rather than a reset connection. A body not received within ``body_timeout_s`` is a 408.
    """

    def __init__(self, app, max_body_bytes: int, allowed_hosts: list[str], keys: KeyRing,
                 required_role: Callable[[str, str], Optional[str]], body_timeout_s: float = 30.0):
        self.app = app
        self.body_timeout = float(body_timeout_s)
        self.max_body = int(max_body_bytes)
        self.any_host = "*" in allowed_hosts
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.keys = keys
        self.required_role = required_role

    def _too_large_msg(self, length: int | None) -> str:
        got = f"of {length:,} bytes is above" if length is not None else "is above"
        return (f"request body {got} the limit of {self.max_body:,} bytes (max_body_bytes); "
                "send smaller images or fewer per request")

    async def _send_json(self, send, status: int, body: dict, log_id: str, close: bool = True,
                         extra: list | None = None, then_drain=None) -> None:
        """The envelope as a response; ``then_drain`` (receive) reads the rest of the body after the
        response has gone out and before it is completed (so the client has it at once)."""
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                   (b"x-log-id", log_id.encode()), *SECURITY_HEADERS, *(extra or [])]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": then_drain is not None})
        if then_drain is not None:
            await self._drain(then_drain, DRAIN_BYTES)
            await send({"type": "http.response.body", "body": b""})

    async def _drain(self, receive, budget: int, seconds: float = DRAIN_SECONDS) -> None:
        async def drain() -> None:
            left = budget
            while left > 0:
                msg = await receive()
                if msg["type"] != "http.request":
                    return
                left -= len(msg.get("body", b""))
                if not msg.get("more_body", False):
                    return

        try:
            await asyncio.wait_for(drain(), seconds)
        except asyncio.TimeoutError:
            pass

    def _auth_error(self, scope) -> Optional[tuple[int, str]]:
        need = self.required_role(scope.get("method", "GET"), scope.get("path", "/"))
        if need is None or not self.keys:
            return None
        key = _header(scope, b"x-api-key")
        auth = _header(scope, b"authorization")
        if not key and auth and auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
        if not key:
            return 401, "an API key is required: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'"
        role = self.keys.role_of(key)
        if role is None:
            return 401, "the API key is not valid"
        if need == "admin" and role != "admin":
            return 403, "this API key is read-only; changing indexes needs an admin key"
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        log_id = uuid.uuid4().hex
        scope.setdefault("state", {})["log_id"] = log_id
        if not self.any_host:
            host = _host_of(_header(scope, b"host") or "")
            if host not in self.allowed_hosts:
                await self._drain(receive, DRAIN_BYTES)
                return await self._send_json(send, 400, envelope(log_id, 400, "Host header not allowed on this "
                                                                 "server (--allowed-host)"), log_id)
        denied = self._auth_error(scope)
        if denied is not None:
            await self._drain(receive, DRAIN_BYTES)
            extra = [(b"www-authenticate", b'Bearer realm="facefeat"')] if denied[0] == 401 else None
            return await self._send_json(send, denied[0], envelope(log_id, *denied), log_id, close=False,
                                         extra=extra)
        length = None
        raw = _header(scope, b"content-length")
        if raw is not None:
            try:
                length = int(raw)
            except ValueError:
                return await self._send_json(send, 400, envelope(log_id, 400, "invalid Content-Length header"),
                                             log_id)
        if length is not None and length > self.max_body:
            # a client that waits for "100 Continue" has sent no body: nothing to drain
            expects = (_header(scope, b"expect") or "").lower() == "100-continue"
            return await self._send_json(send, 413, envelope(log_id, 413, self._too_large_msg(length)), log_id,
                                         then_drain=None if expects else receive)

        received = 0
        body_done = False
        max_body = self.max_body
        too_large_msg = self._too_large_msg
        drain = self._drain
        body_deadline = asyncio.get_running_loop().time() + self.body_timeout
        body_timeout = self.body_timeout

        async def limited_receive():
            nonlocal received, body_done
            if body_done:  # after the body: disconnect notices, no deadline
                return await receive()
            left = body_deadline - asyncio.get_running_loop().time()
            try:
                msg = await asyncio.wait_for(receive(), max(left, 0.001))
            except asyncio.TimeoutError:
                raise StarletteHTTPException(status_code=408, detail=(
                    f"request body not received within {body_timeout:g} s (body_timeout_s); "
                    "send the whole body promptly"), headers={"Connection": "close"}) from None
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                body_done = not msg.get("more_body", False)
                if received > max_body:
                    if msg.get("more_body", False):
                        await drain(receive, DRAIN_BYTES)
                    # an HTTPException passes through FastAPI's body parsing untouched
                    raise StarletteHTTPException(status_code=413, detail=too_large_msg(None))
            else:
                body_done = True
            return msg

        started = False
        head = scope.get("method") == "HEAD"
        if head:  # HEAD on a GET route: the GET answer's status and headers, no body
            scope = {**scope, "method": "GET"}

        async def send_with_id(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-log-id", log_id.encode()),
                                                  *SECURITY_HEADERS]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except Exception as exc:
            # answered here rather than by Starlette's ServerErrorMiddleware, which re-raises and
            # so makes uvicorn drop the (keep-alive) connection after the 500
            log.error("logId %s: internal error", log_id, exc_info=exc)
            if started:
                raise
            msg = f"internal server error ({type(exc).__name__}); see the server log for logId {log_id}"
            await self._send_json(send, 500, envelope(log_id, 500, msg), log_id, close=False)


def _problems(exc: RequestValidationError) -> list[dict]:
    """Pydantic's problems as PaddleX sends them (JSON), without echoing the input back."""
    out = []
    for e in exc.errors()[:20]:
        item = {"type": e.get("type"), "loc": [str(x) for x in e.get("loc", ())], "msg": e.get("msg", "invalid")}
        out.append(item)
    return out


def install_handlers(app: FastAPI, roots: Callable[[], list[str]]) -> None:
    """Exception handlers: every error in the envelope, status by exception type."""

    def log_id_of(request: Request) -> str:
        return getattr(request.state, "log_id", None) or uuid.uuid4().hex

    def error(request: Request, status: int, msg: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(status_code=status, content=envelope(log_id_of(request), status, scrub(msg, roots())),
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return error(request, 422, json.dumps(_problems(exc), default=str))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(FacefeatError)
    async def _facefeat(request: Request, exc: FacefeatError):
        status = status_of(exc)
        if status >= 500 and not isinstance(exc, (ServingError, StorageError)):  # storage: a plain message
            return internal(request, exc)
        return error(request, status, str(exc))

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception):
        return internal(request, exc)

    def internal(request: Request, exc: BaseException) -> JSONResponse:
        log_id = log_id_of(request)
        log.error("logId %s: internal error", log_id, exc_info=exc)
        return error(request, 500, f"internal server error ({type(exc).__name__}); see the server log for "
                                   f"logId {log_id}")


def ok(request: Request, result: Any) -> JSONResponse:
    """The success envelope, sent as is (results are built from plain types; the endpoints'
    ``response_model`` documents them without re-validating each response)."""
    return JSONResponse({"logId": getattr(request.state, "log_id", None) or uuid.uuid4().hex, "errorCode": 0,
                         "errorMsg": "Success", "result": result})
