"""The service behind the endpoints: models and pipelines (loaded once), image inputs (base64 or,
when allowed, URLs through a small fetch pool), gallery features, and the index store."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import queue
import re
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np

from facefeat.errors import FacefeatError, InputError, LimitError
from facefeat.events.serving import open_for_service
from facefeat.index.labels import normalize_label
from facefeat.io.fetch import fetch_url
from facefeat.io.image import decode_image_bytes, image_size
from facefeat.registry import get_spec
from facefeat.serving.batching import BatchingPredictor
from facefeat.serving.budget import FairSlots, RequestBudget
from facefeat.serving.errors import NotReady, ServiceBusy, ServingError
from facefeat.serving.options import Settings
from facefeat.serving.storage import IndexStore

log = logging.getLogger("facefeat.serving")


def runtime_info(predictor: Any) -> dict:
    """Backend, precision and CPU features of a predictor, where it reports them."""
    fn = getattr(predictor, "runtime_info", None)
    if callable(fn):
        try:
            info = fn()
            if isinstance(info, dict):
                return {str(k): v for k, v in info.items()}
        except Exception as exc:  # never let /health fail on this
            log.debug("runtime_info() failed: %s", exc)
    runner = getattr(predictor, "runner", None)
    return {"backend": getattr(predictor, "backend", None) or type(runner).__name__ if runner else "unknown"}


class Service:
    """Everything the endpoints use; models load once, in :meth:`load` (the app's lifespan)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = IndexStore(settings.storage_dir, settings.index_backend, settings.milvus_uri,
                                getattr(settings, "store", None))
        self.ready = threading.Event()
        self.load_error: Optional[str] = None
        self.predictors: dict[str, Any] = {}
        self.default_model: Optional[str] = None
        #: the pipelines' model behind its request batcher (None with ``batch_window_ms`` 0)
        self.batcher: Any = None
        self._batchers: list[Any] = []
        self._pool: "queue.Queue[Any]" = queue.Queue()
        self._slots = FairSlots(1, 1)  # sized in load()
        self._fetch_slots = threading.BoundedSemaphore(settings.url_fetch_concurrency)
        self.started = time.time()

        self.events = open_for_service(settings, self.store)  # None without --mqtt/--webhook; errors now, at start

    # -- loading -----------------------------------------------------------------------------------
    def _pipeline_kwargs(self) -> dict:
        s = self.settings
        kw = dict(det_threshold=s.det_threshold, rec_threshold=s.rec_threshold, rec_topk=s.rec_topk,
                  num_threads=s.num_threads, model=s.model)
        return {k: v for k, v in kw.items() if v is not None}

    def load(self) -> None:
        from facefeat import create_model, create_pipeline

        s = self.settings
        t0 = time.perf_counter()
        try:
            n = s.infer_concurrency or max(1, min(4, os.cpu_count() or 1))
            name = s.pipeline or "face_recognition"
            kw = self._pipeline_kwargs()
            first = create_pipeline(name, **kw)
            predictor = first.predictor
            first.predictor = self._batched(predictor)
            self.batcher = first.predictor if self._batchers else None
            kw.pop("model", None)
            kw.pop("num_threads", None)
            pipes = [first] + [create_pipeline(name, predictor=first.predictor, **kw) for _ in range(n - 1)]
            self.default_model = predictor.model_name
            self.predictors = {predictor.model_name: first.predictor}
            for extra in s.feature_models or []:
                m = create_model(extra, num_threads=s.num_threads)
                if m.model_name not in self.predictors:
                    self.predictors[m.model_name] = self._batched(m)
            # warm up: the first run of a session is slow; do it now, not on the first request
            blank = np.zeros((112, 112, 3), np.uint8)
            for m in self.predictors.values():
                m.embed([blank])
            for p in pipes:
                p.detector.max_faces = s.max_faces
                list(p.predict(np.zeros((64, 64, 3), np.uint8)))
                self._pool.put(p)
            self._slots = FairSlots(len(pipes), s.client_slots or len(pipes))
        except Exception as exc:
            self.load_error = type(exc).__name__
            log.exception("facefeat serve: loading the models failed")
            raise
        self.ready.set()
        log.info("facefeat serve: %s loaded (%d pipelines) in %.1f s; storage %s",
                 ", ".join(self.predictors), len(pipes), time.perf_counter() - t0, self.store.root)

    def _batched(self, predictor: Any) -> Any:
        """``predictor`` behind a :class:`~facefeat.serving.batching.BatchingPredictor` (concurrent
        requests' faces embedded together), or as it is with ``batch_window_ms`` 0."""
        if self.settings.batch_window_ms <= 0:
            return predictor

        batched = BatchingPredictor(predictor, self.settings.batch_window_ms, self.settings.batch_max)
        self._batchers.append(batched)
        return batched

    def feature_model(self, name: Optional[str] = None) -> Any:
        """The loaded feature model called ``name`` (any spelling the registry knows; None: the
        pipelines' model), batched as the pipelines' is; an error listing the loaded ones if none."""
        self.require_ready()
        name = name or self.default_model
        predictor = self.predictors.get(name)
        if predictor is None:
            try:  # accept other spellings of a loaded model's name
                predictor = self.predictors.get(get_spec(name).name)
            except FacefeatError:
                predictor = None
            if predictor is None:
                raise ServingError(f"model {name[:64]!r} is not loaded on this server; loaded: "
                                   f"{', '.join(self.predictors)}")
        return predictor

    def require_ready(self) -> None:
        if not self.ready.is_set():
            msg = "service is not ready: the models are still loading"
            if self.load_error:
                msg = f"service is not ready: loading the models failed ({self.load_error}; see the server log)"
            raise NotReady(msg)

    def budget(self, client: str = "-") -> RequestBudget:
        """A new request's budget (pixels, deadline) from the settings."""
        s = self.settings
        return RequestBudget(s.max_request_pixels, s.request_timeout_s, client)

    @contextmanager
    def pipeline(self, budget: Optional[RequestBudget] = None) -> Iterator[Any]:
        """A pipeline of the pool (each has its own detector; the feature model is shared), shared
        fairly between clients (:class:`~facefeat.serving.budget.FairSlots`); waiting for one past
        the budget's deadline is a 503."""
        self.require_ready()
        budget = budget or self.budget()
        with self._slots.slot(budget.client, budget.remaining()):
            p = self._pool.get()
            try:
                yield p
            finally:
                self._pool.put(p)

    @property
    def predictor(self):
        self.require_ready()
        return self.predictors[self.default_model]

    def health(self) -> dict:
        self.require_ready()
        return {"status": "ready", "models": list(self.predictors), "indexBackend": self.store.backend,
                "runtime": runtime_info(self.predictor), "auth": bool(self.settings.api_keys)}

    # -- inputs ------------------------------------------------------------------------------------
    def fetch(self, url: str, what: str) -> bytes:
        """Download an image URL in the fetch pool (at most ``url_fetch_concurrency`` at once)."""
        s = self.settings
        if not s.allow_url_images:
            raise InputError(f"{what}: image URLs are disabled on this server (start it with "
                             "--allow-url-images); send the image as base64")
        if not self._fetch_slots.acquire(timeout=0.5):
            raise ServiceBusy(f"{what}: too many image downloads in progress; retry later or send base64")
        try:
            return fetch_url(url, timeout=s.url_timeout_s, max_bytes=s.url_max_bytes or s.max_body_bytes,
                             allowed_networks=s.url_allowed_networks, what=what)
        finally:
            self._fetch_slots.release()

    def image_bytes(self, value: str, what: str, budget: Optional[RequestBudget] = None) -> bytes:
        """A base64 string, data URL or http(s) URL -> the encoded image, its size read from the
        header and checked (``max_image_pixels``, and the request's pixel budget) before decoding."""
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{what}: empty; expected a base64-encoded image or an http(s) URL")
        v = value.strip()
        if v[:8].lower().startswith(("http://", "https://")):
            data = self.fetch(v, what)
        else:
            if v[:5].lower() == "data:":
                head, sep, v = v.partition(",")
                if not sep or ";base64" not in head.lower():
                    raise InputError(f"{what}: a data URL must be base64 ('data:image/jpeg;base64,...')")
            try:
                data = base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                v = re.sub(r"\s+", "", v)
                try:
                    if "-" in v or "_" in v:
                        data = base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))
                    else:
                        data = base64.b64decode(v, validate=True)
                except (binascii.Error, ValueError):
                    raise InputError(f"{what}: not valid base64 (nor an http(s) URL)") from None
        if not data:
            raise InputError(f"{what}: empty data, not an image")
        w, h = image_size(data, what)
        limit = self.settings.max_image_pixels
        if w * h > limit:
            raise LimitError(f"{what}: image is {w}x{h} = {w * h:,} pixels, above the limit of {limit:,} pixels "
                             "(max_image_pixels)")
        if budget is not None:
            budget.charge(w, h, what)
        return data

    def decode(self, data: bytes, what: str) -> np.ndarray:
        """Encoded image bytes (checked by :meth:`image_bytes`) -> BGR, by the one reader."""
        return decode_image_bytes(data, what, max_pixels=self.settings.max_image_pixels)

    def decode_image(self, value: str, what: str, budget: Optional[RequestBudget] = None) -> np.ndarray:
        """:meth:`image_bytes` then :meth:`decode`."""
        return self.decode(self.image_bytes(value, what, budget), what)

    def gallery_features(self, pairs: list, quality: Optional[str] = None,
                         field: str = "imageLabelPairs", budget: Optional[RequestBudget] = None) -> Any:
        """The pipeline's :class:`~facefeat.pipeline.face_recognition.GalleryFeatures` of every pair
        (``.image``/``.label`` or ``(image, label)``; labels normalised), with a record per sample
        (crop, detection, content hash, figures), in request order - or an InputError naming every pair that has no
        usable face or fails the ``quality`` policy (nothing is added then, so the ids of a request
        are always positional)."""
        limit = self.settings.max_build_images
        if len(pairs) > limit:
            raise LimitError(f"{field} holds {len(pairs)} images, above the limit of {limit} per request "
                             "(max_build_images); send them in several requests")

        budget = budget or self.budget()
        encoded, labels, names = [], [], []
        for i, p in enumerate(pairs):  # every header checked before anything is decoded
            image, label = (p.image, p.label) if hasattr(p, "image") else p
            where = f"{field}[{i}].image" if field == "imageLabelPairs" else f"{field}[{i}]"
            labels.append(normalize_label(label, f"{field}[{i}].label" if field == "imageLabelPairs" else "label"))
            encoded.append(self.image_bytes(image, where, budget))
            names.append(where)
        with self.pipeline(budget) as pipe:
            imgs = [self.decode(data, where) for data, where in zip(encoded, names)]
            del encoded
            budget.check("while decoding the images")
            out, problems = self._embed_gallery(pipe, imgs, labels, quality or "off", field)
            del imgs
        budget.check("while detecting and embedding the faces")
        if problems:
            shown = "; ".join(problems[:20]) + ("; ..." if len(problems) > 20 else "")
            what = "have no usable face" if not quality or quality == "off" else \
                f"have no usable face or fail the {quality!r} quality policy"
            raise InputError(f"{len(problems)} of {len(labels)} image(s) {what}, so nothing was "
                             f"changed (each pair's id is its position): {shown}")
        for r in out.records or []:
            if quality:
                r.figures = {**(r.figures or {}), "policy": quality}
        return out

    @staticmethod
    def _embed_gallery(pipe: Any, imgs: list, labels: list[str], quality: Optional[str] = None,
                       field: str = "imageLabelPairs") -> tuple[Any, list[str]]:
        """The pipeline's gallery features (with quality figures and aligned faces when ``quality``
        is given) and the problems ("imageLabelPairs[i] ('label'): reason"), taken from the
        pipeline's structured rejections (their input position), never from message text."""
        out = pipe.gallery_features(imgs, labels) if quality is None else \
            pipe.gallery_features(imgs, labels, quality=quality)
        problems = [f"{field}[{r.index}] ({labels[r.index]!r}): {r.reason}" for r in out.rejected]
        return out, problems

    def close(self) -> None:
        self.ready.clear()
        if self.events is not None:
            self.events.close()
        for batched in self._batchers:
            batched.close()
