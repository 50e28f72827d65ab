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

``errorCode`` is 0 on success, else the HTTP status (see :data:`ERRORS`). With API keys set
(``--api-key``/``$FACEFEAT_API_KEYS``) every endpoint but ``/health``, the page and the docs
needs a key; build/add/remove/delete and the person writes need an admin key. Modules: :mod:`.options` (settings, CLI),
:mod:`.service` (models, inputs), :mod:`.http` (envelope, middleware, errors), :mod:`.storage`.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional

from facefeat.errors import FacefeatError, InputError, require

require("fastapi", "serve", "facefeat serve")
require("uvicorn", "serve", "facefeat serve")

from fastapi import Depends, FastAPI, Query, Request  # noqa: E402
from fastapi.responses import FileResponse, Response  # noqa: E402
from fastapi.security import APIKeyHeader  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402

from facefeat.serving import schemas as S  # noqa: E402
from facefeat.results import _jsonable  # noqa: E402
from facefeat.serving.errors import NotFound, PersonNotFound, ServingError  # noqa: E402
from facefeat.serving.budget import request_client  # noqa: E402
from facefeat.serving.docs_page import install_docs  # noqa: E402
from facefeat.serving.gallery_routes import ADMIN_PATHS as GALLERY_ADMIN, add_routes as add_gallery_routes  # noqa: E402
from facefeat.serving.http import KeyRing, RequestContextMiddleware, UnknownFields, install_handlers, ok  # noqa: E402
from facefeat.serving.options import Settings  # noqa: E402
from facefeat.serving.service import Service  # noqa: E402
from facefeat.serving.storage import check_key  # noqa: E402
from facefeat.events import serving as events  # noqa: E402
from facefeat.serving.workers import PROTOCOL, exit_with_parent, set_header_timeout  # noqa: E402

log = logging.getLogger("facefeat.serving")

STATIC_DIR = Path(__file__).resolve().parent / "static"
ENV_CONFIG = "FACEFEAT_SERVE_CONFIG"

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
_RESPONSES = {code: {"model": S.ErrorEnvelope, "description": text} for code, text in ERRORS.items()}
#: documents the key in the OpenAPI document (and /docs' Authorize button); the middleware checks it
_KEY = [Depends(APIKeyHeader(name="X-API-Key", auto_error=False,
                             description="needed when the server has API keys (--api-key)"))]
_PUBLIC = ("/health", "/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
_ADMIN = ("/face-recognition-index-build", "/face-recognition-index-add", "/face-recognition-index-remove",
          "/face-recognition-index-delete", "/face-recognition-person-add", "/face-recognition-person-remove",
          "/face-recognition-person-rename") + GALLERY_ADMIN


def required_role(method: str, path: str) -> Optional[str]:
    """``None`` (public), ``"read"`` or ``"admin"`` for a request."""
    if path in _PUBLIC or path.startswith("/static/"):
        return None
    return "admin" if path in _ADMIN else "read"


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
    unknown = UnknownFields(settings.max_unknown_fields)
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
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes,
                       allowed_hosts=settings.allowed_hosts, keys=keys, required_role=required_role,
                       body_timeout_s=settings.body_timeout_s)
    install_handlers(app, lambda: [str(svc.store.root), str(Path(settings.storage_dir))])

    def ignored_fields(body: Any, where: str = "") -> None:
        """Unknown (and documented-unused) fields are ignored (:class:`~facefeat.serving.http.UnknownFields`)."""
        names = [where + k for k in (body.model_extra or {})]
        if getattr(body, "hammingRadius", None) is not None:
            names.append("hammingRadius")
        for p in getattr(body, "imageLabelPairs", None) or []:
            names += [f"imageLabelPairs[].{k}" for k in (p.model_extra or {})]
        unknown.note(type(body).__name__, names)

    def budget(request: Request):
        return svc.budget(request_client(request))

    # -- endpoints ---------------------------------------------------------------------------------
    @app.get("/health", response_model=S.Envelope[S.HealthResult], tags=["service"], responses=_RESPONSES)
    def health(request: Request):
        return ok(request, svc.health())

    @app.post("/face-feature-infer", response_model=S.Envelope[S.FeatureInferResult], tags=["face feature"],
              responses=_RESPONSES, dependencies=_KEY)
    def face_feature_infer(request: Request, body: S.FeatureInferRequest):
        svc.require_ready()
        ignored_fields(body)
        name = body.model or svc.default_model
        predictor = svc.predictors.get(name)
        if predictor is None:
            from facefeat.registry import get_spec

            try:  # accept other spellings of a loaded model's name
                predictor = svc.predictors.get(get_spec(name).name)
            except FacefeatError:
                predictor = None
            if predictor is None:
                raise ServingError(f"model {name[:64]!r} is not loaded on this server; loaded: "
                                   f"{', '.join(svc.predictors)}")
        bud = budget(request)
        data = svc.image_bytes(body.image, "image", bud)
        with svc.pipeline(bud):
            feat = predictor.embed([svc.decode(data, "image")], flip=body.flip)[0]
        return ok(request, {"feature": feat.tolist(), "model": predictor.model_name,
                            "dim": int(predictor.embedding_size)})

    @app.post("/face-recognition-index-build", response_model=S.Envelope[S.BuildIndexResult], tags=["index"],
              responses=_RESPONSES, dependencies=_KEY)
    def index_build(request: Request, body: S.BuildIndexRequest):
        from facefeat.index import create_index
        from facefeat.pipeline.enrol import add_gallery

        svc.require_ready()
        ignored_fields(body)
        predictor = svc.predictor
        g = svc.gallery_features(body.imageLabelPairs, body.quality, budget=budget(request))
        key = svc.store.new_key()
        index = create_index(backend=svc.store.backend, dim=predictor.embedding_size,
                             metric_type=body.metricType or "IP", index_type=body.indexType or None,
                             model_name=predictor.model_name, **svc.store.collection_kwargs(key))
        res = add_gallery(index, g)
        svc.store.create(key, index, name=body.indexName)
        events.changed(svc.events, key, (), g.labels)
        log.info("index %s built: %d images", key, len(res.ids))
        return ok(request, {"indexKey": key, "indexName": body.indexName, "imageCount": len(index), "ids": res.ids,
                            **_dups(res)})

    @app.post("/face-recognition-index-add", response_model=S.Envelope[S.AddImagesToIndexResult], tags=["index"],
              responses=_RESPONSES, dependencies=_KEY)
    def index_add(request: Request, body: S.AddImagesToIndexRequest):
        svc.require_ready()
        ignored_fields(body)
        key = check_key(body.indexKey)
        svc.store.get(key)  # 404 before the (slow) embedding
        predictor = svc.predictor
        g = svc.gallery_features(body.imageLabelPairs, body.quality, budget=budget(request))
        from facefeat.pipeline.enrol import add_gallery

        with svc.store.mutate(key) as index:
            index.check_model(predictor.model_name, predictor.embedding_size)
            before = events.labels(svc.events, index)
            res = add_gallery(index, g)  # one transaction: vectors, labels, crops, figures
            count = len(index)
        events.changed(svc.events, key, before, (before or set()) | set(g.labels))
        return ok(request, {"imageCount": count, "ids": res.ids, **_dups(res)})

    @app.post("/face-recognition-index-remove", response_model=S.Envelope[S.RemoveImagesFromIndexResult],
              tags=["index"], responses=_RESPONSES, dependencies=_KEY)
    def index_remove(request: Request, body: S.RemoveImagesFromIndexRequest):
        svc.require_ready()
        ignored_fields(body)
        key = check_key(body.indexKey)
        with svc.store.mutate(key) as index:
            before = events.labels(svc.events, index)
            present = set(index.ids())
            wanted = list(dict.fromkeys(body.ids))
            removed = [i for i in wanted if i in present]
            missing = [i for i in wanted if i not in present]
            if removed:
                index.remove(removed)  # one transaction: the samples' crops go with them
            count = len(index)
            after = events.labels(svc.events, index)
        events.changed(svc.events, key, before, after)
        return ok(request, {"imageCount": count, "removed": removed, "missing": missing})

    @app.post("/face-recognition-index-delete", response_model=S.Envelope[S.DeleteIndexResult], tags=["index"],
              responses=_RESPONSES, dependencies=_KEY)
    def index_delete(request: Request, body: S.DeleteIndexRequest):
        ignored_fields(body)
        key = check_key(body.indexKey)
        before = events.gallery_labels(svc.store, key) if svc.events is not None else None
        svc.store.delete(key)
        events.changed(svc.events, key, before, ())
        log.info("index %s deleted", key)
        return ok(request, {"indexKey": key, "deleted": True})

    @app.post("/face-recognition-infer", response_model=S.Envelope[S.InferResult], tags=["recognition"],
              responses=_RESPONSES, dependencies=_KEY)
    def infer(request: Request, body: S.InferRequest):
        import cv2

        svc.require_ready()
        ignored_fields(body)
        index = svc.store.get(check_key(body.indexKey)) if body.indexKey is not None else None
        bud = budget(request)
        data = svc.image_bytes(body.image, "image", bud)
        # detectors are cached per threshold: round it so that clients cannot grow the cache unboundedly
        det_thr = None if body.detThreshold is None else round(float(body.detThreshold), 2)
        with svc.pipeline(bud) as pipe:
            img = svc.decode(data, "image")
            res = next(iter(pipe.predict(img, index=index, det_threshold=det_thr,
                                         rec_threshold=body.recThreshold, rec_topk=body.topk,
                                         far=body.far, fpir=body.fpir, per_person=bool(body.perPerson))))
            vis = res.draw() if body.visualize is not False else None
        faces = []
        for b in res["boxes"]:
            recs = []
            if b.get("labels"):
                recs = [{"label": str(lab), "score": round(float(sc), 6)}
                        for lab, sc in zip(b["labels"], b["rec_scores"])]
            face = {"bbox": [round(float(x), 2) for x in b["coordinate"]],
                    "score": round(float(b["det_score"]), 6), "recResults": recs}
            if body.perPerson:
                face["sampleIds"] = [int(i) for i in b.get("sample_ids") or []]
            faces.append(face)
        op = _jsonable(res.get("operating_point") or {})
        bud.check("while recognising the faces")
        out: dict = {"faces": faces, "image": None, "threshold": op.get("threshold"), "operatingPoint": op,
                     "facesCapped": len(faces) >= settings.max_faces}
        events.recognized(svc.events, request, body.indexKey, faces, img, op)
        if vis is not None:
            okk, buf = cv2.imencode(".jpg", vis, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not okk:
                raise RuntimeError("cannot encode the visualisation as JPEG")
            out["image"] = base64.b64encode(buf.tobytes()).decode("ascii")
        return ok(request, out)

    @app.get("/face-recognition-index-info", response_model=S.Envelope[S.IndexInfoResult], tags=["index"],
             responses=_RESPONSES, dependencies=_KEY)
    def index_info(request: Request, indexKey: str = Query(..., description="the index key")):
        key = check_key(indexKey)
        index = svc.store.get(key)
        info = index.info()
        entries = [{"id": i, "label": lab} for i, lab in index.labels().items()]
        return ok(request, {"indexKey": key, "indexName": index.display_name, "imageCount": len(entries),
                            "model": info.get("model_name"),
                            "dim": int(info["dim"]), "backend": info["backend"], "metricType": info["metric_type"],
                            "indexType": info["index_type"], "entries": entries})

    @app.get("/face-recognition-index-list", response_model=S.Envelope[S.IndexListResult], tags=["index"],
             responses=_RESPONSES, dependencies=_KEY)
    def index_list(request: Request):
        out = []
        for key in svc.store.keys():
            try:
                out.append(svc.store.summary(key))
            except (OSError, ValueError):
                continue  # being replaced right now, or corrupt: not listed
        return ok(request, {"indexes": out})

    @app.post("/face-verify", response_model=S.Envelope[S.VerifyResult], tags=["recognition"],
              responses=_RESPONSES, dependencies=_KEY)
    def face_verify(request: Request, body: S.VerifyRequest):
        svc.require_ready()
        ignored_fields(body)
        if (body.image2 is None) == (body.label is None):
            raise InputError("face-verify: give image2, or indexKey and label (a gallery person), not both")
        if (body.label is None) != (body.indexKey is None):
            raise InputError("face-verify: label and indexKey go together (the person and the gallery holding them)")
        if body.recThreshold is not None and body.far is not None:
            raise InputError("face-verify: give recThreshold or far, not both")
        index = svc.store.get(check_key(body.indexKey)) if body.indexKey is not None else None
        if index is not None:
            from facefeat.index.people import People

            if body.label not in People(index):
                raise PersonNotFound(f"no person {body.label[:64]!r} in index {body.indexKey}")
        bud = budget(request)
        data1 = svc.image_bytes(body.image1, "image1", bud)
        data2 = svc.image_bytes(body.image2, "image2", bud) if body.image2 is not None else None
        det_thr = None if body.detThreshold is None else round(float(body.detThreshold), 2)
        with svc.pipeline(bud) as pipe:
            img1 = svc.decode(data1, "image1")
            img2 = svc.decode(data2, "image2") if data2 is not None else None
            res = pipe.verify(img1, img2, person=body.label, index=index, rec_threshold=body.recThreshold,
                              far=body.far, det_threshold=det_thr, names=("image1", "image2"))
        bud.check("while verifying")
        r = _jsonable(dict(res))
        for side, what in zip(r["faces"], ("image1", "image2")):
            if side.get("input") not in ("feature", "person"):
                side["input"] = what
        return ok(request, {"verified": r["verified"], "score": r["score"], "threshold": r["threshold"],
                            "far": r.get("far"), "operatingPoint": r.get("operating_point") or {}, "faces": r["faces"]})

    @app.get("/face-recognition-persons", response_model=S.Envelope[S.PersonsResult], tags=["people"],
             responses=_RESPONSES, dependencies=_KEY)
    def persons(request: Request, indexKey: str = Query(..., description="the index key")):
        from facefeat.index.people import People

        key = check_key(indexKey)
        index = svc.store.get(key)
        rows = People(index).list()
        return ok(request, {"indexKey": key, "personCount": len(rows), "imageCount": len(index),
                            "persons": [{"label": p["label"], "sampleCount": p["samples"], "sampleIds": p["sample_ids"]}
                                        for p in rows]})

    @app.post("/face-recognition-person-add", response_model=S.Envelope[S.PersonAddResult], tags=["people"],
              responses=_RESPONSES, dependencies=_KEY)
    def person_add(request: Request, body: S.PersonAddRequest):
        svc.require_ready()
        ignored_fields(body)
        key = check_key(body.indexKey)
        svc.store.get(key)  # 404 before the (slow) embedding
        predictor = svc.predictor
        g = svc.gallery_features([(im, body.label) for im in body.images], body.quality, field="images",
                                 budget=budget(request))
        from facefeat.pipeline.enrol import add_gallery

        with svc.store.mutate(key) as index:
            index.check_model(predictor.model_name, predictor.embedding_size)
            before = events.labels(svc.events, index)
            res = add_gallery(index, g)
            count = len(index)
        events.changed(svc.events, key, before, (before or set()) | {g.labels[0]})
        return ok(request, {"label": g.labels[0], "ids": res.ids, "imageCount": count, **_dups(res)})

    @app.post("/face-recognition-person-remove", response_model=S.Envelope[S.PersonRemoveResult], tags=["people"],
              responses=_RESPONSES, dependencies=_KEY)
    def person_remove(request: Request, body: S.PersonRemoveRequest):
        ignored_fields(body)
        key = check_key(body.indexKey)
        from facefeat.index.labels import normalize_label

        label = normalize_label(body.label)
        with svc.store.people(key) as people:
            ids = people.sample_ids(label)
            if not ids:
                raise PersonNotFound(f"no person {label[:64]!r} in index {key}")
            people.index.remove(ids)  # one transaction: the samples' crops go with them
            count = len(people.index)
        events.changed(svc.events, key, {label}, ())
        return ok(request, {"label": label, "removed": ids, "imageCount": count})

    @app.post("/face-recognition-person-rename", response_model=S.Envelope[S.PersonRenameResult], tags=["people"],
              responses=_RESPONSES, dependencies=_KEY)
    def person_rename(request: Request, body: S.PersonRenameRequest):
        ignored_fields(body)
        key = check_key(body.indexKey)
        from facefeat.index.labels import normalize_label

        label, new = normalize_label(body.label), normalize_label(body.newLabel, "newLabel")
        with svc.store.people(key) as people:
            if not people.sample_ids(label):
                raise PersonNotFound(f"no person {label[:64]!r} in index {key}")
            n = people.rename(label, new)
        events.changed(svc.events, key, {label}, {new})
        return ok(request, {"label": label, "newLabel": new, "renamed": n})

    @app.get("/face-recognition-thumbnail", tags=["people"], dependencies=_KEY,
             responses={200: {"content": {"image/jpeg": {}}, "description": "the sample's aligned face (JPEG)"},
                        **_RESPONSES})
    def thumbnail(indexKey: str = Query(..., description="the index key"),
                  id: int = Query(..., ge=0, le=S.MAX_ID, description="the sample id")):
        key = check_key(indexKey)
        crop = svc.store.crop(key, id)  # from the gallery itself: a removed sample has none
        if crop is None:
            raise NotFound(f"no thumbnail for sample {id} of index {key}")
        return Response(content=crop[0], media_type=f"image/{crop[1]}", headers={"Cache-Control": "private, no-cache"})

    add_gallery_routes(app, svc, _RESPONSES, _KEY)  # health, export, import, migrate, person (gallery_routes)

    # -- the web page --------------------------------------------------------------------------------
    install_docs(app, app.title)

    @app.get("/", include_in_schema=False)
    def index_page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _dups(res: Any) -> dict:
    """``{"duplicates": [...]}`` when a request held images already enrolled (PaddleX's shape otherwise)."""
    return {"duplicates": res.duplicates} if res.duplicates else {}


def _load_quietly(svc: Service) -> None:
    try:
        svc.load()
    except Exception:  # recorded in svc.load_error; /health says why
        pass


def _version() -> str:
    try:
        from facefeat import __version__

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
    from facefeat.serving.options import settings_from_args

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    s = settings_from_args(a).resolved()
    print(f"facefeat serve: storage {s.storage_dir}", file=sys.stderr, flush=True)
    serve(s)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m facefeat.serving.app [--storage DIR --host --port --workers --model ...]``."""
    import argparse

    from facefeat.serving.options import configure_cli

    p = argparse.ArgumentParser(prog="facefeat serve", description="Run the face recognition HTTP service.")
    configure_cli(p)
    return run_cli(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
