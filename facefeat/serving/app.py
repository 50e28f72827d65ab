"""``facefeat serve``: the face recognition pipeline as an HTTP service (FastAPI + uvicorn).

PaddleX-compatible endpoints (JSON over POST, every response in the envelope
``{"logId", "errorCode", "errorMsg", "result"}``)::

    POST /face-feature-infer             {image, model?, flip?}                -> {feature, model, dim}
    POST /face-recognition-index-build   {imageLabelPairs, indexType?, metricType?} -> {indexKey, imageCount, ids, rejected}
    POST /face-recognition-index-add     {imageLabelPairs, indexKey}           -> {imageCount, ids, rejected}
    POST /face-recognition-index-remove  {ids, indexKey}                       -> {imageCount}
    POST /face-recognition-infer         {image, indexKey?, detThreshold?, recThreshold?, topk?, visualize?}
                                                                               -> {faces: [{bbox, score, recResults}], image?}
    GET  /face-recognition-index-info?indexKey=...                             -> {indexKey, imageCount, entries: [{id, label}], ...}
    GET  /face-recognition-index-list                                          -> {indexes: [{indexKey, imageCount, model}]}
    GET  /health                                                               -> 200 when the models are loaded, 503 before
    GET  /                                                                     the web page (enrol, gallery, recognise)
    GET  /docs, /openapi.json                                                  FastAPI's generated API docs

``errorCode`` is 0 on success, else the HTTP status: 400 bad input (bad base64, not an image, no
usable face, invalid indexKey), 404 unknown indexKey or ids, 409 index/model mismatch or corrupt
index, 413 a limit exceeded (body size, image pixels, images per request), 422 malformed body,
500 internal error (no traceback is sent; the server log has it under the logId), 503 not ready.

Use :func:`serve` (what ``facefeat serve`` calls) or :func:`create_app` for an ASGI app.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from facefeat.errors import (
    DependencyError,
    FacefeatError,
    IndexError_,
    InputError,
    ModelNotFoundError,
    WeightsError,
    require,
)

require("fastapi", "serve", "facefeat serve")
require("uvicorn", "serve", "facefeat serve")

from fastapi import FastAPI, Query, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import FileResponse, JSONResponse  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from facefeat.serving import schemas as S
from facefeat.serving.storage import IndexNotFound, IndexStore, check_key

log = logging.getLogger("facefeat.serving")

STATIC_DIR = Path(__file__).resolve().parent / "static"

from facefeat.serving.options import (  # noqa: E402
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_BUILD_IMAGES,
    DEFAULT_MAX_IMAGE_PIXELS,
)
#: a request over the body limit is read (and discarded) up to this much more, so that the client,
#: which is still sending, gets to read the 413 instead of a reset connection
DRAIN_BYTES = 32 * 1024 * 1024
ENV_CONFIG = "FACEFEAT_SERVE_CONFIG"


# -- errors -----------------------------------------------------------------------------------------


class ServingError(Exception):
    """An error with its HTTP status; the message goes to the client as ``errorMsg``."""

    status = 400

    def __init__(self, msg: str, status: int | None = None):
        super().__init__(msg)
        if status is not None:
            self.status = status


class LimitExceeded(ServingError):
    status = 413


class NotReady(ServingError):
    status = 503


class NotFound(ServingError):
    status = 404


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, ServingError):
        return exc.status
    if isinstance(exc, IndexNotFound):
        return 404
    if isinstance(exc, IndexError_):
        return 409
    if isinstance(exc, (WeightsError, DependencyError)):
        return 500
    if isinstance(exc, (InputError, ModelNotFoundError, FacefeatError)):
        if "above the limit" in str(exc):  # facefeat.io's pixel guard
            return 413
        return 400
    return 500


# -- settings ---------------------------------------------------------------------------------------


@dataclass
class Settings:
    storage_dir: str
    model: str = "SFace"
    index_backend: str = "faiss"
    milvus_uri: Optional[str] = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_build_images: int = DEFAULT_MAX_BUILD_IMAGES
    feature_models: list = field(default_factory=list)  # more zoo models for /face-feature-infer
    det_threshold: float = 0.5
    rec_threshold: float = 0.4
    rec_topk: int = 5
    infer_concurrency: int = 0  # pipelines working at once (0: min(4, CPUs))
    num_threads: Optional[int] = None  # ONNX Runtime threads per model (None: its default)
    allow_url_images: bool = True
    background_load: bool = False  # True: accept connections at once, /health 503 until loaded

    def check(self) -> None:
        for name in ("max_body_bytes", "max_image_pixels", "max_build_images"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        if str(self.index_backend).lower() not in ("faiss", "milvus"):
            raise InputError(f"index_backend must be 'faiss' or 'milvus', got {self.index_backend!r}")


# -- the service: models, pipelines, indexes --------------------------------------------------------


class Service:
    """Everything the endpoints use; models load once, in :meth:`load` (the app's lifespan)."""

    def __init__(self, settings: Settings):
        settings.check()
        self.settings = settings
        self.store = IndexStore(settings.storage_dir, settings.index_backend, settings.milvus_uri)
        self.ready = threading.Event()
        self.load_error: Optional[str] = None
        self.predictors: dict[str, Any] = {}
        self.default_model: Optional[str] = None
        self._pool: "queue.Queue[Any]" = queue.Queue()
        self.started = time.time()

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> None:
        from facefeat import create_model, create_pipeline

        s = self.settings
        t0 = time.perf_counter()
        try:
            n = s.infer_concurrency or max(1, min(4, os.cpu_count() or 1))
            kw = dict(det_threshold=s.det_threshold, rec_threshold=s.rec_threshold, rec_topk=s.rec_topk)
            first = create_pipeline("face_recognition", model=s.model, num_threads=s.num_threads, **kw)
            predictor = first.predictor
            pipes = [first] + [create_pipeline("face_recognition", predictor=predictor, **kw) for _ in range(n - 1)]
            self.default_model = predictor.model_name
            self.predictors = {predictor.model_name: predictor}
            for name in s.feature_models or []:
                m = create_model(name, num_threads=s.num_threads)
                self.predictors.setdefault(m.model_name, m)
            # warm up: the first run of a session is slow; do it now, not on the first request
            blank = np.zeros((112, 112, 3), np.uint8)
            for m in self.predictors.values():
                m.embed([blank])
            for p in pipes:
                list(p.predict(np.zeros((64, 64, 3), np.uint8)))
                self._pool.put(p)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("facefeat serve: loading the models failed")
            raise
        self.ready.set()
        log.info("facefeat serve: %s loaded (%d pipelines) in %.1f s; storage %s",
                 ", ".join(self.predictors), len(pipes), time.perf_counter() - t0, self.store.root)

    def require_ready(self) -> None:
        if not self.ready.is_set():
            msg = "service is not ready: the models are still loading"
            if self.load_error:
                msg = f"service is not ready: loading the models failed ({self.load_error})"
            raise NotReady(msg)

    @contextmanager
    def pipeline(self) -> Iterator[Any]:
        """A pipeline of the pool (each has its own detector; the feature model is shared)."""
        self.require_ready()
        p = self._pool.get()
        try:
            yield p
        finally:
            self._pool.put(p)

    @property
    def predictor(self):
        self.require_ready()
        return self.predictors[self.default_model]

    # -- inputs ------------------------------------------------------------------------------------
    def decode_image(self, value: str, what: str) -> np.ndarray:
        """A base64 string, data URL or http(s) URL -> BGR image, with the pixel limit applied."""
        from facefeat.io import decode_image_bytes

        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{what}: empty; expected a base64-encoded image or an http(s) URL")
        v = value.strip()
        if v[:8].lower().startswith(("http://", "https://")):
            if not self.settings.allow_url_images:
                raise InputError(f"{what}: image URLs are disabled on this server; send the image as base64")
            from facefeat.io.image import _fetch_url

            data = _fetch_url(v)
        else:
            if v[:5].lower() == "data:":
                head, sep, v = v.partition(",")
                if not sep or ";base64" not in head.lower():
                    raise InputError(f"{what}: a data URL must be base64 ('data:image/jpeg;base64,...')")
            v = re.sub(r"\s+", "", v)
            try:
                if "-" in v or "_" in v:
                    data = base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))
                else:
                    data = base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                raise InputError(f"{what}: not valid base64 (nor an http(s) URL)") from None
        self._check_pixels(data, what)
        return decode_image_bytes(data, what, max_pixels=self.settings.max_image_pixels)

    def _check_pixels(self, data: bytes, what: str) -> None:
        """Decompression-bomb guard on the header alone, so it is a clean 413 before any decode."""
        limit = self.settings.max_image_pixels
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
        except Image.DecompressionBombError as exc:  # PIL's own guard (far above ours by default)
            raise LimitExceeded(f"{what}: image is above the limit of {limit:,} pixels (max_image_pixels; {exc})") from None
        except Exception:
            return  # not readable by PIL: decode_image_bytes will judge (and refuse non-images)
        if w * h > limit:
            raise LimitExceeded(
                f"{what}: image is {w}x{h} = {w * h:,} pixels, above the limit of {limit:,} pixels "
                "(max_image_pixels)"
            )

    def gallery_inputs(self, pairs: list[S.ImageLabelPair]) -> tuple[list[np.ndarray], list[str]]:
        limit = self.settings.max_build_images
        if len(pairs) > limit:
            raise LimitExceeded(
                f"imageLabelPairs holds {len(pairs)} images, above the limit of {limit} per request "
                "(max_build_images); send them in several index-add requests"
            )
        imgs, labels = [], []
        for i, p in enumerate(pairs):
            label = p.label.strip()
            if not label:
                raise InputError(f"imageLabelPairs[{i}].label is blank; give the person's name")
            imgs.append(self.decode_image(p.image, f"imageLabelPairs[{i}].image"))
            labels.append(label)
        return imgs, labels

    def gallery_features(self, pairs: list[S.ImageLabelPair]) -> tuple[np.ndarray, list[str], list[dict]]:
        """Features of the accepted images, their labels, and the rejected ones (index, reason)."""
        imgs, labels = self.gallery_inputs(pairs)
        with self.pipeline() as pipe:
            feats, labs, names = pipe.gallery_features(imgs, labels)
            rejected_raw = list(pipe.last_rejected)
        rejected = []
        for name, reason in rejected_raw:
            m = re.fullmatch(r"gallery\[(\d+)\]", str(name))
            i = int(m.group(1)) if m else -1
            rejected.append({"index": i, "label": labels[i] if 0 <= i < len(labels) else "", "reason": reason})
        if not labs:
            detail = "; ".join(f"#{r['index']}: {r['reason']}" for r in rejected[:5])
            raise InputError(f"no usable face in the {len(imgs)} image(s) given ({detail}); nothing was changed")
        return feats, labs, rejected

    def close(self) -> None:
        self.ready.clear()


# -- ASGI middleware --------------------------------------------------------------------------------


def _envelope(log_id: str, status: int, msg: str) -> dict:
    return {"logId": log_id, "errorCode": status, "errorMsg": msg, "result": None}


class BodyTooLarge(Exception):
    pass


def _make_http_exception(status: int, detail: str):
    return StarletteHTTPException(status_code=status, detail=detail)


class RequestContextMiddleware:
    """Gives each request a logId (``X-Log-Id`` header too) and enforces the body size limit.

    The limit is checked on ``Content-Length`` before anything is read and on the bytes actually
    received (chunked bodies, lying headers). A refused body is drained (up to DRAIN_BYTES more) so
    the client reads the 413 envelope rather than a reset connection.
    """

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body = int(max_body_bytes)

    def _too_large_msg(self, n: int | None) -> str:
        got = f"is {n:,} bytes, above" if n is not None else "is larger than"
        return (f"request body {got} the limit of {self.max_body:,} bytes (max_body_bytes); "
                "send smaller images or fewer per request")

    async def _send_json(self, send, status: int, body: dict, log_id: str, close: bool = True) -> None:
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                   (b"x-log-id", log_id.encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _drain(self, receive, budget: int) -> None:
        while budget > 0:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            budget -= len(msg.get("body", b""))
            if not msg.get("more_body", False):
                return

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        log_id = uuid.uuid4().hex
        scope.setdefault("state", {})["log_id"] = log_id
        length = None
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    return await self._send_json(send, 400, _envelope(log_id, 400, "invalid Content-Length header"), log_id)
        if length is not None and length > self.max_body:
            await self._drain(receive, DRAIN_BYTES)
            return await self._send_json(send, 413, _envelope(log_id, 413, self._too_large_msg(length)), log_id)

        received = 0
        max_body = self.max_body
        too_large_msg = self._too_large_msg
        drain = self._drain

        async def limited_receive():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > max_body:
                    if msg.get("more_body", False):
                        await drain(receive, DRAIN_BYTES)
                    # an HTTPException passes through FastAPI's body parsing untouched
                    raise _make_http_exception(413, too_large_msg(None))
            return msg

        started = False

        async def send_with_id(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-log-id", log_id.encode()))
                message = {**message, "headers": headers}
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
            await self._send_json(send, 500, _envelope(log_id, 500, msg), log_id, close=False)


# -- the app ----------------------------------------------------------------------------------------


def create_app(
    storage_dir: str | os.PathLike,
    model: str = "SFace",
    index_backend: str = "faiss",
    milvus_uri: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_build_images: int = DEFAULT_MAX_BUILD_IMAGES,
    *,
    feature_models: list[str] | None = None,
    det_threshold: float = 0.5,
    rec_threshold: float = 0.4,
    rec_topk: int = 5,
    infer_concurrency: int = 0,
    num_threads: int | None = None,
    allow_url_images: bool = True,
    background_load: bool = False,
):
    """The FastAPI app. Models load in its lifespan (once, at start-up); indexes live under
    ``storage_dir/indexes/<indexKey>/`` and survive restarts. See the module doc for endpoints."""
    settings = Settings(
        storage_dir=str(storage_dir), model=model, index_backend=index_backend, milvus_uri=milvus_uri,
        max_body_bytes=max_body_bytes, max_image_pixels=max_image_pixels, max_build_images=max_build_images,
        feature_models=list(feature_models or []), det_threshold=det_threshold, rec_threshold=rec_threshold,
        rec_topk=rec_topk, infer_concurrency=infer_concurrency, num_threads=num_threads,
        allow_url_images=allow_url_images, background_load=background_load,
    )
    svc = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.background_load:
            threading.Thread(target=_load_quietly, args=(svc,), name="facefeat-load", daemon=True).start()
        else:
            await run_in_threadpool(svc.load)
        yield
        svc.close()

    app = FastAPI(
        title="facefeat face recognition service",
        version=_version(),
        description="PaddleX-compatible face recognition pipeline: face features, gallery indexes, recognition.",
        lifespan=lifespan,
    )
    app.state.service = svc
    app.state.settings = settings
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)

    def log_id_of(request: Request) -> str:
        return getattr(request.state, "log_id", None) or uuid.uuid4().hex

    def ok(request: Request, result: Any) -> dict:
        return {"logId": log_id_of(request), "errorCode": 0, "errorMsg": "Success", "result": result}

    def error(request: Request, status: int, msg: str) -> JSONResponse:
        return JSONResponse(status_code=status, content=_envelope(log_id_of(request), status, msg))

    # -- exception handlers: always the envelope, never a traceback ------------------------------
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:10]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
        return error(request, 422, "malformed request: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(ServingError)
    async def _serving(request: Request, exc: ServingError):
        return error(request, exc.status, str(exc))

    @app.exception_handler(FacefeatError)
    async def _facefeat(request: Request, exc: FacefeatError):
        status = _status_of(exc)
        if status >= 500:
            log.error("logId %s: %s: %s", log_id_of(request), type(exc).__name__, exc)
        return error(request, status, str(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log_id = log_id_of(request)
        log.error("logId %s: internal error", log_id, exc_info=exc)
        return error(request, 500, f"internal server error ({type(exc).__name__}); see the server log for logId {log_id}")

    # -- endpoints ---------------------------------------------------------------------------------
    @app.get("/health", response_model=S.Envelope[S.HealthResult], tags=["service"])
    def health(request: Request):
        svc.require_ready()
        return ok(request, {"status": "ready", "models": list(svc.predictors), "indexBackend": svc.store.backend})

    @app.post("/face-feature-infer", response_model=S.Envelope[S.FeatureInferResult], tags=["face feature"])
    def face_feature_infer(request: Request, body: S.FeatureInferRequest):
        svc.require_ready()
        name = body.model or svc.default_model
        predictor = svc.predictors.get(name)
        if predictor is None:
            from facefeat.registry import get_spec

            try:  # accept other spellings of a loaded model's name
                predictor = svc.predictors.get(get_spec(name).name)
            except FacefeatError:
                predictor = None
            if predictor is None:
                raise ServingError(f"model {name!r} is not loaded on this server; loaded: {', '.join(svc.predictors)}")
        img = svc.decode_image(body.image, "image")
        feat = predictor.embed([img], flip=body.flip)[0]
        return ok(request, {"feature": [float(x) for x in feat], "model": predictor.model_name,
                            "dim": int(predictor.embedding_size)})

    @app.post("/face-recognition-index-build", response_model=S.Envelope[S.BuildIndexResult], tags=["index"])
    def index_build(request: Request, body: S.BuildIndexRequest):
        from facefeat.index import create_index

        svc.require_ready()
        predictor = svc.predictor
        feats, labels, rejected = svc.gallery_features(body.imageLabelPairs)
        key = svc.store.new_key()
        index = create_index(backend=svc.store.backend, dim=predictor.embedding_size,
                             metric_type=body.metricType or "IP", index_type=body.indexType or None,
                             model_name=predictor.model_name, **svc.store.collection_kwargs(key))
        ids = index.add(feats, labels)
        svc.store.create(key, index)
        log.info("index %s built: %d images (%d rejected)", key, len(ids), len(rejected))
        return ok(request, {"indexKey": key, "imageCount": len(index), "ids": ids, "rejected": rejected})

    @app.post("/face-recognition-index-add", response_model=S.Envelope[S.AddImagesToIndexResult], tags=["index"])
    def index_add(request: Request, body: S.AddImagesToIndexRequest):
        svc.require_ready()
        key = check_key(body.indexKey)
        svc.store.get(key)  # 404 before the (slow) embedding
        predictor = svc.predictor
        feats, labels, rejected = svc.gallery_features(body.imageLabelPairs)
        with svc.store.mutate(key) as index:
            index.check_model(predictor.model_name, predictor.embedding_size)
            ids = index.add(feats, labels)
            count = len(index)
        return ok(request, {"imageCount": count, "ids": ids, "rejected": rejected})

    @app.post("/face-recognition-index-remove", response_model=S.Envelope[S.RemoveImagesFromIndexResult],
              tags=["index"])
    def index_remove(request: Request, body: S.RemoveImagesFromIndexRequest):
        svc.require_ready()
        key = check_key(body.indexKey)
        with svc.store.mutate(key) as index:
            present = set(index.ids())
            unknown = sorted({int(i) for i in body.ids} - present)
            if unknown:
                shown = ", ".join(map(str, unknown[:20])) + (", ..." if len(unknown) > 20 else "")
                raise NotFound(f"ids not in index {key}: {shown}; nothing was removed")
            index.remove(body.ids)
            count = len(index)
        return ok(request, {"imageCount": count})

    @app.post("/face-recognition-infer", response_model=S.Envelope[S.InferResult], tags=["recognition"])
    def infer(request: Request, body: S.InferRequest):
        import cv2

        svc.require_ready()
        index = svc.store.get(check_key(body.indexKey)) if body.indexKey is not None else None
        img = svc.decode_image(body.image, "image")
        # detectors are cached per threshold: round it so that clients cannot grow the cache unboundedly
        det_thr = None if body.detThreshold is None else round(float(body.detThreshold), 2)
        with svc.pipeline() as pipe:
            res = next(iter(pipe.predict(img, index=index, det_threshold=det_thr,
                                         rec_threshold=body.recThreshold, rec_topk=body.topk)))
            vis = res.draw() if body.visualize else None
        faces = []
        for b in res["boxes"]:
            recs = []
            if b.get("labels"):
                recs = [{"label": str(lab), "score": round(float(sc), 6)}
                        for lab, sc in zip(b["labels"], b["rec_scores"])]
            faces.append({"bbox": [round(float(x), 2) for x in b["coordinate"]],
                          "score": round(float(b["det_score"]), 6), "recResults": recs})
        out: dict = {"faces": faces, "image": None}
        if vis is not None:
            okk, buf = cv2.imencode(".jpg", vis, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not okk:
                raise ServingError("cannot encode the visualisation as JPEG", 500)
            out["image"] = base64.b64encode(buf.tobytes()).decode("ascii")
        return ok(request, out)

    @app.get("/face-recognition-index-info", response_model=S.Envelope[S.IndexInfoResult], tags=["index"])
    def index_info(request: Request, indexKey: str = Query(..., description="the index key")):
        key = check_key(indexKey)
        index = svc.store.get(key)
        info = index.info()
        entries = [{"id": i, "label": lab} for i, lab in index.labels().items()]
        return ok(request, {"indexKey": key, "imageCount": len(entries), "model": info.get("model_name"),
                            "dim": int(info["dim"]), "backend": info["backend"], "metricType": info["metric_type"],
                            "indexType": info["index_type"], "entries": entries})

    @app.get("/face-recognition-index-list", response_model=S.Envelope[S.IndexListResult], tags=["index"])
    def index_list(request: Request):
        out = []
        for key in svc.store.keys():
            try:
                out.append(svc.store.summary(key))
            except (OSError, ValueError):
                continue  # being replaced right now, or corrupt: not listed
        return ok(request, {"indexes": out})

    # -- the web page --------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index_page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


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


def create_app_from_env():
    """App factory for ``uvicorn --factory`` (several workers): settings from ``$FACEFEAT_SERVE_CONFIG``."""
    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        raise InputError(f"${ENV_CONFIG} is not set; it holds create_app()'s keyword arguments as JSON")
    return create_app(**json.loads(raw))


def serve(host: str = "127.0.0.1", port: int = 8080, workers: int = 1, log_level: str = "info",
          **app_kwargs: Any) -> None:
    """Run the service with uvicorn until interrupted (``facefeat serve``).

    ``app_kwargs`` go to :func:`create_app` (``storage_dir`` is required). With ``workers > 1``
    uvicorn starts that many processes from the factory :func:`create_app_from_env`, the settings
    passing through ``$FACEFEAT_SERVE_CONFIG``; they share the storage directory (per-index file
    locks serialise their writes, and each reloads an index another one changed).
    """
    import uvicorn

    if "storage_dir" not in app_kwargs or app_kwargs["storage_dir"] is None:
        raise InputError("serve: storage_dir is required (where the indexes are kept)")
    workers = int(workers)
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    app_kwargs["storage_dir"] = str(Path(app_kwargs["storage_dir"]).expanduser().resolve())
    if workers == 1:
        uvicorn.run(create_app(**app_kwargs), host=host, port=int(port), log_level=log_level)
        return
    os.environ[ENV_CONFIG] = json.dumps(app_kwargs)
    uvicorn.run("facefeat.serving.app:create_app_from_env", factory=True, host=host, port=int(port),
                workers=workers, log_level=log_level)


def main(argv: list[str] | None = None) -> int:
    """``python -m facefeat.serving.app --storage DIR [--host --port --workers --model ...]``."""
    import argparse

    from facefeat.serving.options import configure_cli, run_cli

    p = argparse.ArgumentParser(prog="facefeat serve", description="Run the face recognition HTTP service.")
    configure_cli(p)
    return run_cli(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
