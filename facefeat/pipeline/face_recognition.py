"""The face recognition pipeline: detect (YuNet) -> align (5-point similarity) -> embed -> search.

:class:`FaceRecognitionPipeline` holds the settings and the models (construction, config, operating
points) and recognises faces against a gallery (``predict``); its stages are
:class:`~facefeat.pipeline.stages.FaceStages`, its gallery building
:class:`~facefeat.pipeline.gallery.GalleryIndexing` (with the gallery rule), and enrolment,
verification, clustering and video are the topic modules :mod:`~facefeat.pipeline.enrol`,
:mod:`~facefeat.pipeline.verify`, :mod:`~facefeat.pipeline.cluster` and :mod:`~facefeat.pipeline.video`.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Iterator

import numpy as np

from facefeat.errors import InputError
from facefeat.index import create_index
from facefeat.index.corrections import veto_search
from facefeat.index.people import People
from facefeat.index.resolve import resolve_index  # also exported: index= as PaddleX takes it
from facefeat.index.sightings import record as record_sightings
from facefeat.io import expand_inputs
from facefeat.pipeline.cluster import ClusterResult, cluster_faces
from facefeat.pipeline.enrol import EnrolReport, enroll, folder_items
from facefeat.pipeline.gallery import GalleryFeatures, GalleryIndexing, GalleryRejection
from facefeat.pipeline.result import FaceRecResult
from facefeat.pipeline.stages import FaceStages
from facefeat.pipeline.verify import VerifyResult, verify
from facefeat.pipeline.video import predict_video
from facefeat.predict.predictor import FeaturePredictor, create_model
from facefeat.thresholds import is_match, model_thresholds, resolve_threshold
from facefeat.vision.align import ALIGN_MODES
from facefeat.vision.choice import GALLERY_DOMINANCE, is_dominant
from facefeat.vision.crops import check_face_crop
from facefeat.vision.detector import YuNetDetector
from facefeat.vision.refine import LandmarkRefiner, check_landmark_mode


class FaceRecognitionPipeline(FaceStages, GalleryIndexing):
    """Detect, align and embed faces, and recognise them against a gallery index."""

    def __init__(self, model: str | None = "SFace", weights: str | os.PathLike | None = None, *,
                 model_dir: str | os.PathLike | None = None, predictor: FeaturePredictor | None = None,
                 det_threshold: float = 0.5, nms_threshold: float = 0.3, min_face_size: int = 20,
                 align: str = "align", rec_threshold: float | str = "auto", rec_topk: int = 5, flip: bool = False,
                 batch_size: int = 32, device: str = "cpu", num_threads: int | None = None,
                 index: Any = None, far: float | None = None, fpir: float | None = None,
                 backend: str = "auto", precision: str = "auto", landmarks: str = "mirror"):
        if align not in ALIGN_MODES:
            raise InputError(f"align must be one of {ALIGN_MODES}, got {align!r}")
        self.predictor = predictor or create_model(model if model_dir is None else None, weights,
                                                   model_dir=model_dir, device=device,
                                                   batch_size=batch_size, num_threads=num_threads,
                                                   backend=backend, precision=precision)
        if self.predictor.meta.extra.get("face_crop"):  # a model directory's own crop, checked once here
            self.predictor.meta.extra["face_crop"] = check_face_crop(self.predictor.meta.extra["face_crop"])
        self.det_threshold = float(det_threshold)
        self.nms_threshold = float(nms_threshold)
        self.min_face_size = int(min_face_size)
        self.align_mode = align
        self.landmarks = check_landmark_mode(landmarks)  # how the 5 points are placed: facefeat.vision.refine
        #: a number, or "auto" / "best_accuracy": the model's calibrated operating point (see
        #: facefeat.thresholds); ``far``/``fpir`` choose which one
        self.rec_threshold = rec_threshold
        self.far, self.fpir = far, fpir
        self.thresholds = model_thresholds(self.predictor)
        resolve_threshold(self.thresholds, rec_threshold, far=far, fpir=fpir)  # reject bad settings now
        self.rec_topk = int(rec_topk)
        self.flip = bool(flip)
        self.index = resolve_index(index)
        self._calls = threading.local()
        # one detector for every threshold (set per call) and every thread (a bounded pool inside)
        self.detector = YuNetDetector(score_threshold=self.det_threshold, nms_threshold=self.nms_threshold,
                                      min_face_size=self.min_face_size)
        self.refiner = LandmarkRefiner(self.detector, self.landmarks)

    #: top-level config keys passed to the constructor as they are
    _CONFIG_ARGS = ("det_threshold", "rec_threshold", "rec_topk", "align", "flip", "min_face_size",
                    "nms_threshold", "device", "num_threads", "index", "landmarks")

    @classmethod
    def from_config(cls, config: dict, **overrides: Any) -> "FaceRecognitionPipeline":
        """Build from a validated pipeline config (:func:`facefeat.config.load_pipeline_config`).

        ``SubModules.Recognition`` gives the model (``model_name``, ``model_dir``, ``weights``,
        ``batch_size``); keyword arguments that are not None override the config (``model=``,
        ``weights=``, ``model_dir=`` or ``predictor=`` replace its Recognition model).
        """
        rec = (config.get("SubModules") or {}).get("Recognition") or {}
        kw = {k: config[k] for k in cls._CONFIG_ARGS if config.get(k) is not None}
        for src, dst in (("model_name", "model"), ("model_dir", "model_dir"), ("weights", "weights"),
                         ("batch_size", "batch_size")):
            if rec.get(src) is not None:
                kw[dst] = rec[src]
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if any(k in overrides for k in ("model", "weights", "model_dir", "predictor")):
            for k in ("model", "weights", "model_dir"):
                kw.pop(k, None)
        kw.update(overrides)
        return cls(**kw)

    def __repr__(self) -> str:
        return (f"FaceRecognitionPipeline(model={self.predictor.model_name!r}, align={self.align_mode!r}, "
                f"det_threshold={self.det_threshold}, rec_threshold={self.rec_threshold!r})")

    def operating_point(self, task: str = "identify", rec_threshold: Any = None, far: float | None = None,
                        fpir: float | None = None, index: Any = None) -> tuple[float, dict]:
        """``(threshold, operating point)`` for ``task`` ("verify" 1:1 or "identify" 1:N): explicit
        arguments first, else the pipeline's settings; "auto" uses the model's calibration. With an
        ``index``, the threshold is in its scores' unit (a squared distance for L2) and a 1:N point
        is the one calibrated nearest its number of people."""
        if rec_threshold is None and far is None and fpir is None:
            rec_threshold, far, fpir = self.rec_threshold, self.far, self.fpir
            if task == "verify" and fpir is not None and far is None:
                fpir = None  # a 1:N setting does not apply to 1:1
        size = None
        if index is not None and task == "identify":
            size = len(set(index.labels().values()))
        return resolve_threshold(self.thresholds, rec_threshold, far=far, fpir=fpir, task=task,
                                 gallery_size=size, metric_type=getattr(index, "metric_type", "IP"))

    # -- recognition -------------------------------------------------------------------------------
    def predict(self, inputs: Any, index: Any = None, det_threshold: float | None = None,
                rec_threshold: float | str | None = None, rec_topk: int | None = None,
                flip: bool | None = None, far: float | None = None, fpir: float | None = None,
                per_person: bool = False, hamming_radius: Any = None,
                failures: list | None = None) -> Iterator[FaceRecResult]:
        """Yield a FaceRecResult per image: every face with its top-k gallery matches.

        ``hamming_radius`` (PaddleX's, for binary indexes) is accepted and ignored: facefeat's
        galleries hold float features.

        The decision threshold is ``rec_threshold`` (a number), or the model's calibrated 1:N
        point (``"auto"``: FPIR 1% at the calibrated gallery size nearest the index's; ``fpir=``
        / ``far=`` choose another); each result's ``operating_point`` says which was used.
        ``per_person=True``: the top-k *people* (each one's best sample score, with ``sample_ids``)
        instead of the top-k gallery images. ``failures``: a list that collects the InputError of
        each unreadable input, which is then skipped (by default the first one raises).
        """
        index = self.index if index is None else resolve_index(index)
        if index is not None:
            index.check_model(self.predictor.model_name, self.predictor.embedding_size)
        thr, op = self.operating_point("identify", rec_threshold, far, fpir, index)
        topk = self.rec_topk if rec_topk is None else int(rec_topk)
        if topk < 1:
            raise InputError(f"rec_topk must be >= 1, got {topk}")
        for (item, img), faces in self._embed_items(expand_inputs(inputs), det_threshold, flip,
                                                     failures=failures):
            queries = [f for f in faces if f["feature"] is not None]
            search = getattr(index, "search", None)
            if per_person and index is not None:
                search = People(index).search
            # "not X" corrections veto a name
            hits = veto_search(index, search, np.asarray([f["feature"] for f in queries], np.float32), topk) \
                if index is not None and queries and len(index) else [[] for _ in queries]
            hits_iter = iter(hits)
            boxes = []
            for f in faces:
                box = {"labels": None, "rec_scores": None, "det_score": f["det_score"],
                       "coordinate": f["coordinate"], "landmarks": f["landmarks"]}
                if f.get("too_small"):
                    box["too_small"] = True
                else:
                    h = next(hits_iter)
                    if h and is_match(h[0].score, thr, index.metric_type):
                        box["labels"] = [x.label for x in h]
                        box["rec_scores"] = [round(float(x.score), 6) for x in h]
                        if per_person:
                            box["sample_ids"] = [x.sample_id for x in h]
                boxes.append(box)
            if index is not None:  # opt-in per gallery: recognitions and unknown faces kept (sightings)
                record_sightings(index, item.name, img, faces, boxes)
            yield FaceRecResult(input_path=item.name, boxes=boxes, operating_point=op, _img=img)

    __call__ = predict

    # -- enrolment ---------------------------------------------------------------------------------
    def enroll(self, gallery: Any, index: Any = None, quality: Any = "standard", strict: bool = False) -> EnrolReport:
        """Enrol people from a ``gallery/<name>/*.jpg`` folder, or a list of ``(image, name)``, into
        ``index`` (or a :class:`~facefeat.index.people.People` view; default: the pipeline's index,
        created as a Flat IP FAISS index when there is none) with the quality ``policy``
        (``off | standard | strict`` or limits). Returns an
        :class:`~facefeat.pipeline.enrol.EnrolReport`: what was added, and each rejected image with
        its reason."""
        if index is None:
            if self.index is None:
                self.index = create_index(dim=self.predictor.embedding_size, metric_type="IP", index_type="Flat",
                                          model_name=self.predictor.model_name)
            index = self.index
        people = index if isinstance(index, People) else People(index)
        items = folder_items(gallery) if isinstance(gallery, (str, os.PathLike)) else list(gallery)
        return enroll(self, people, items, quality=quality, strict=strict)

    # -- verification ------------------------------------------------------------------------------
    def verify(self, img1: Any, img2: Any = None, *, person: str | None = None, index: Any = None,
               rec_threshold: float | str | None = None, far: float | None = None,
               det_threshold: float | None = None, flip: bool | None = None,
               names: tuple[str, str] = ("img1", "img2")) -> VerifyResult:
        """1:1: are two faces (images or features), or a face and gallery ``person``, the same
        person? See :func:`facefeat.pipeline.verify.verify`."""
        return verify(self, img1, img2, person=person, index=index, rec_threshold=rec_threshold, far=far,
                      det_threshold=det_threshold, flip=flip, names=names)

    # -- clustering and video (facefeat.pipeline.cluster / .video) -------------------------------
    def cluster(self, inputs: Any, threshold: float | None = None, min_samples: int | None = None,
                method: str | None = None, det_threshold: float | None = None, progress: bool = False
                ) -> ClusterResult:
        """Group every face of ``inputs`` into people without labels -> ``ClusterResult``
        (``threshold``: cosine similarity, default the model's calibrated one; see pipeline.cluster)."""
        return cluster_faces(self, inputs, threshold, min_samples, method, det_threshold=det_threshold,
                             progress=progress)

    def predict_video(self, source: Any, index: Any = None, every_n: int = 1, **kwargs: Any) -> Iterator[dict]:
        """Recognise and track faces in a video file, stream or ``webcam:N``; yields frame, track and
        summary events (see facefeat.pipeline.video.predict_video for the options)."""
        return predict_video(self, source, index=index, every_n=every_n, **kwargs)


__all__ = ["ALIGN_MODES", "FaceRecognitionPipeline", "GALLERY_DOMINANCE", "GalleryFeatures", "GalleryRejection",
           "is_dominant", "resolve_index"]
