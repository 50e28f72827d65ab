"""``facefeat serve``: the face recognition pipeline as an HTTP service (FastAPI + uvicorn).

PaddleX-compatible endpoints (JSON over POST, every response in the envelope
``{"logId", "errorCode", "errorMsg", "result"}``)::

    POST /face-feature-infer             {image, model?, flip?}                -> {feature, model, dim}
    POST /face-recognition-index-build   {imageLabelPairs, indexType?, metricType?, indexName?}
                                                                               -> {indexKey, indexName, imageCount, ids}
    POST /face-recognition-index-add     {imageLabelPairs, indexKey}           -> {imageCount, ids}
    POST /face-recognition-index-remove  {ids, indexKey}                       -> {imageCount, removed, missing}
    POST /face-recognition-index-delete  {indexKey}                            -> {indexKey, deleted}   (admin)
    POST /face-recognition-infer         {image, indexKey?, detThreshold?, recThreshold?, topk?, visualize?}
                                                                               -> {faces: [{bbox, score, recResults}], image?}
    GET  /face-recognition-index-info?indexKey=...                             -> {indexKey, imageCount, entries, ...}
    GET  /face-recognition-index-list                                          -> {indexes: [{indexKey, imageCount, model}]}

facefeat's own endpoints (same envelope, limits and key roles)::

    POST /face-verify                    {image1, image2 | indexKey+label, recThreshold?, far?, detThreshold?}
                                                                               -> {verified, score, threshold, far, operatingPoint, faces}
    GET  /face-recognition-persons?indexKey=...                                -> {persons: [{label, sampleCount, sampleIds}], ...}
    POST /face-recognition-person-add    {indexKey, label, images, quality?}   -> {label, ids, imageCount}   (admin)
    POST /face-recognition-person-remove {indexKey, label}                     -> {label, removed, imageCount} (admin)
    POST /face-recognition-person-rename {indexKey, label, newLabel}           -> {label, newLabel, renamed}  (admin)
    GET  /face-recognition-thumbnail?indexKey=...&id=...                       -> image/jpeg: a sample's aligned face

``/face-recognition-infer`` defaults to the model's calibrated 1:N threshold (``recThreshold``
"auto"; ``far``/``fpir`` choose another point) and says which in ``threshold``/``operatingPoint``;
``perPerson: true`` gives the top-k people. Build/add take ``quality`` (off | standard | strict).
    GET  /health                                                               -> 200 when the models are loaded, 503 before
    GET  /                                                                     the web page (enrol, gallery, recognise)
    GET  /docs, /openapi.json                                                  FastAPI's generated API docs

``errorCode`` is 0 on success, else the HTTP status (see :data:`~facefeat.serving.routers.common.ERRORS`).
With API keys set (``--api-key``/``$FACEFEAT_API_KEYS``) every endpoint but ``/health``, the page and
the docs needs a key; build/add/remove/delete and the person writes need an admin key. This module is the app
factory (settings, lifespan, middleware, routers, static files) and the runner (``serve``). Modules:
:mod:`.options` (settings, CLI), :mod:`.routers` (one router per OpenAPI tag), :mod:`.operations` (each
endpoint's work and answer), :mod:`.service` (models, inputs), :mod:`.http` (envelope, middleware,
errors), :mod:`.batching`, :mod:`.storage`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional

from facefeat import __version__
from facefeat.errors import InputError, require

require("fastapi", "serve", "facefeat serve")
require("uvicorn", "serve", "facefeat serve")

from fastapi import FastAPI  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402

from facefeat.events import serving as events  # noqa: E402
from facefeat.serving.http import KeyRing, RequestContextMiddleware, UnknownFields, install_handlers  # noqa: E402
from facefeat.serving.options import Settings, settings_from_args  # noqa: E402
from facefeat.serving.routers import ADMIN_PATHS, ROUTERS, pages  # noqa: E402
from facefeat.serving.service import Service  # noqa: E402
from facefeat.serving.workers import PROTOCOL, exit_with_parent, set_header_timeout  # noqa: E402

log = logging.getLogger("facefeat.serving")

ENV_CONFIG = "FACEFEAT_SERVE_CONFIG"
_PUBLIC = ("/health", "/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


def required_role(method: str, path: str) -> Optional[str]:
    """``None`` (public), ``"read"`` or ``"admin"`` for a request."""
    if path in _PUBLIC or path.startswith("/static/"):
        return None
    return "admin" if path in ADMIN_PATHS else "read"


def create_app(settings: Settings | str | os.PathLike | None = None, **fields: Any) -> FastAPI:
    """The FastAPI app for ``settings`` (a :class:`Settings`; or a storage directory and/or
    Settings fields as keywords). Models load in its lifespan (once, at start-up); indexes live
    under ``storage_dir/indexes/<indexKey>/`` and survive restarts."""
    if not isinstance(settings, Settings):
        if settings is not None:
            fields["storage_dir"] = str(settings)
        settings = Settings(**fields)
    elif fields:
        raise InputError("create_app: pass a Settings or keyword fields, not both")
    settings = settings.resolved()
    svc = Service(settings)
    keys = KeyRing(settings.keys())
    set_header_timeout(settings.header_timeout_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.background_load:
            threading.Thread(target=_load_quietly, args=(svc,), name="facefeat-load", daemon=True).start()
        else:
            await run_in_threadpool(svc.load)
        yield
        svc.close()

    app = FastAPI(title="facefeat face recognition service", version=_version(), lifespan=lifespan,
                  description="PaddleX-compatible face recognition pipeline: face features, gallery indexes, "
                              "recognition. Errors: the envelope with errorCode = HTTP status.",
                  docs_url=None, redoc_url=None)
    app.state.service = svc
    app.state.settings = settings
    app.state.unknown_fields = UnknownFields(settings.max_unknown_fields)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes,
                       allowed_hosts=settings.allowed_hosts, keys=keys, required_role=required_role,
                       body_timeout_s=settings.body_timeout_s)
    install_handlers(app, lambda: [str(svc.store.root), str(Path(settings.storage_dir))])
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(pages.router)
    pages.mount_static(app)
    return app


def _load_quietly(svc: Service) -> None:
    try:
        svc.load()
    except Exception:  # recorded in svc.load_error; /health says why
        pass


def _version() -> str:
    try:
        return __version__
    except Exception:  # pragma: no cover
        return "0"


# -- running ----------------------------------------------------------------------------------------


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (several workers): settings from ``$FACEFEAT_SERVE_CONFIG``."""
    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        raise InputError(f"${ENV_CONFIG} is not set; it holds the serve Settings as JSON")
    exit_with_parent()  # a worker process: leave with the master (kill -9 of the master included)
    return create_app(Settings.from_json(raw))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings | None = None, **fields: Any) -> None:
    """Run the service with uvicorn until interrupted (``facefeat serve``).

    With ``workers > 1`` uvicorn starts that many processes from the factory
    :func:`create_app_from_env`, the settings passing through ``$FACEFEAT_SERVE_CONFIG``; they
    share the storage directory (per-index file locks serialise their writes, and each reloads an
    index another one changed).
    """
    import uvicorn

    if settings is None:
        settings = Settings(**fields)
    elif fields:
        raise InputError("serve: pass a Settings or keyword fields, not both")
    s = settings.resolved()
    if not _is_loopback(s.host) and not s.keys():
        msg = (f"WARNING: facefeat serve binds {s.host} (beyond loopback) without an API key: anyone who can "
               "reach it can read and change every gallery; set --api-key or $FACEFEAT_API_KEYS")
        log.warning(msg)
        print(msg, file=sys.stderr, flush=True)
    if s.workers == 1:
        uvicorn.run(create_app(s), host=s.host, port=int(s.port), log_level=s.log_level, http=PROTOCOL)
        return
    events.check_targets(s)  # bad event URLs / credentials fail here, once, not in every worker
    os.environ[ENV_CONFIG] = s.to_json()
    uvicorn.run("facefeat.serving.app:create_app_from_env", factory=True, host=s.host, port=int(s.port),
                workers=s.workers, log_level=s.log_level, http=PROTOCOL)


def run_cli(a: Any) -> int:
    """``facefeat serve``: the parsed flags (:func:`facefeat.serving.options.configure_cli`) -> :func:`serve`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    s = settings_from_args(a).resolved()
    print(f"facefeat serve: storage {s.storage_dir}", file=sys.stderr, flush=True)
    serve(s)
    return 0

