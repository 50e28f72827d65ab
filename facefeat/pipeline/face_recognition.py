"""The face recognition pipeline: detect (YuNet) -> align (5-point similarity) -> embed -> search.

Gallery rule (build/append): an image with no detected face is rejected; an image with several
faces uses its subject (:mod:`facefeat.vision.choice`) when its box area is at least
``GALLERY_DOMINANCE`` times the largest other one (a portrait with faces in the background), and is rejected as ambiguous otherwise.
Rejections are logged and returned with the features (:class:`GalleryFeatures`'s ``rejected``,
one :class:`GalleryRejection` each, with the image's position in the input), never silently
dropped; ``strict=True`` turns them into an error. ``pipeline.last_rejected`` is a per-thread copy
of the calling thread's last call's rejections (threads never see each other's).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Sequence

import numpy as np

from facefeat.errors import InputError
from facefeat.io import expand_inputs, read_image
from facefeat.index.resolve import resolve_index  # noqa: F401 - re-exported: index= as PaddleX takes it
from facefeat.io.image import iter_batches
from facefeat.pipeline.result import FaceRecResult
from facefeat.predict.predictor import FeaturePredictor, create_model
from facefeat.thresholds import is_match

log = logging.getLogger("facefeat")

GALLERY_DOMINANCE = 2.0
ALIGN_MODES = ("align", "crop")


@dataclass(frozen=True)
class GalleryRejection:
    """A gallery image that was not added: its position in the input (``index``), its name (path,
    or ``gallery[i]`` for in-memory images), its label, and why."""

    index: int
    name: str
    label: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


class GalleryFeatures(NamedTuple):
    """What :meth:`FaceRecognitionPipeline.gallery_features` returns: one row of ``features`` per
    accepted image with its label, name and input position, and the rejected images."""

    features: np.ndarray
    labels: list[str]
    names: list[str]
    positions: list[int]
    rejected: list[GalleryRejection]
    #: with ``quality=``: each accepted image's quality figures and aligned 112x112 face
    figures: Optional[list[dict]] = None
    faces: Optional[list[np.ndarray]] = None
    #: what the gallery keeps of each accepted image (crop, detection, content hash, figures):
    #: :class:`facefeat.index.store.SampleRecord`, one per row of ``features``
    records: Optional[list] = None


def _area(box: Sequence[float]) -> float:
    return max(0.0, float(box[2]) - float(box[0])) * max(0.0, float(box[3]) - float(box[1]))


def is_dominant(boxes: Sequence[Sequence[float]]) -> bool:
    """The gallery rule: the first of a photo's usable face ``boxes`` (its subject, see
    :mod:`facefeat.vision.choice`) stands for the photo when it is alone or at least
    ``GALLERY_DOMINANCE`` times the area of every other one."""
    return len(boxes) == 1 or _area(boxes[0]) >= GALLERY_DOMINANCE * max(_area(b) for b in boxes[1:])


class FaceRecognitionPipeline:
    """Detect, align and embed faces, and recognise them against a gallery index."""

    def __init__(self, model: str | None = "SFace", weights: str | os.PathLike | None = None, *,
                 model_dir: str | os.PathLike | None = None, predictor: FeaturePredictor | None = None,
                 det_threshold: float = 0.5, nms_threshold: float = 0.3, min_face_size: int = 20,
                 align: str = "align", rec_threshold: float | str = "auto", rec_topk: int = 5, flip: bool = False,
                 batch_size: int = 32, device: str = "cpu", num_threads: int | None = None,
                 index: Any = None, far: float | None = None, fpir: float | None = None,
                 backend: str = "auto", precision: str = "auto", landmarks: str = "mirror"):
        from facefeat.thresholds import model_thresholds, resolve_threshold
        from facefeat.vision.detector import YuNetDetector

        if align not in ALIGN_MODES:
            raise InputError(f"align must be one of {ALIGN_MODES}, got {align!r}")
        self.predictor = predictor or create_model(model if model_dir is None else None, weights,
                                                   model_dir=model_dir, device=device,
                                                   batch_size=batch_size, num_threads=num_threads,
                                                   backend=backend, precision=precision)
        if self.predictor.meta.extra.get("face_crop"):  # a model directory's own crop, checked once here
            from facefeat.vision.crops import check_face_crop

            self.predictor.meta.extra["face_crop"] = check_face_crop(self.predictor.meta.extra["face_crop"])
        self.det_threshold = float(det_threshold)
        self.nms_threshold = float(nms_threshold)
        self.min_face_size = int(min_face_size)
        self.align_mode = align
        from facefeat.vision.refine import check_landmark_mode

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
        from facefeat.vision.refine import LandmarkRefiner

        self.refiner = LandmarkRefiner(self.detector, self.landmarks)

    @property
    def last_rejected(self) -> list[GalleryRejection]:
        """Rejections of this thread's last gallery call (a copy; see :class:`GalleryFeatures`)."""
        return list(getattr(self._calls, "rejected", ()))

    @property
    def last_added_ids(self) -> list[int]:
        """Ids this thread's last :meth:`append_index` added (a copy)."""
        return list(getattr(self._calls, "added_ids", ()))

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
        arguments first, else the pipeline's settings; "auto" uses the model's calibration."""
        from facefeat.thresholds import resolve_threshold

        if rec_threshold is None and far is None and fpir is None:
            rec_threshold, far, fpir = self.rec_threshold, self.far, self.fpir
            if task == "verify" and fpir is not None and far is None:
                fpir = None  # a 1:N setting does not apply to 1:1
        size = None
        if index is not None:
            size = len(set(index.labels().values()))
        return resolve_threshold(self.thresholds, rec_threshold, far=far, fpir=fpir, task=task,
                                 gallery_size=size, metric_type=getattr(index, "metric_type", "IP"))

    # -- stages -------------------------------------------------------------------------------------
    def detect(self, img: Any, det_threshold: float | None = None) -> list:
        """Faces in one image (largest first) as ``Detection`` objects (landmarks as ``landmarks`` says)."""
        img = read_image(img)
        return self.refiner.refine(img, self.detector.detect(img, det_threshold), det_threshold)

    def align(self, img: np.ndarray, detection) -> np.ndarray:
        """The face as the model takes it: its own ``face_crop`` (facefeat.vision.crops) where it
        has one, else the 5-point alignment (or PaddleX's box crop with ``align="crop"``)."""
        from facefeat.vision.align import align as align_face

        face_crop = self.predictor.meta.extra.get("face_crop")
        if face_crop and self.align_mode == "align":
            from facefeat.vision.crops import model_crop

            return model_crop(img, detection, face_crop)
        return align_face(img, detection, mode=self.align_mode)

    def face_view(self, face: np.ndarray) -> np.ndarray:
        """The 5-point aligned face inside what :meth:`align` returned (the same image for most
        models; a fused model's canvas holds several crops): for quality figures and thumbnails."""
        from facefeat.vision.crops import face_view

        return face_view(face, self.predictor.meta.extra.get("face_crop"))

    def detect_retry(self, img: np.ndarray, det_threshold: float | None = None) -> tuple[list, dict]:
        """Detect, and when no usable face is found retry on padded / rotated copies and at a lower
        threshold (:class:`~facefeat.vision.retry.RetryDetector`); returns ``(faces, path)``."""
        from facefeat.vision.retry import RetryDetector

        from facefeat.vision.choice import order_faces

        thr = self.det_threshold if det_threshold is None else float(det_threshold)
        dets, path = RetryDetector(self.detector, thr, lower_thresholds=(min(0.3, thr),)).detect_with_path(img)
        if path["path"] == "default":  # the plain pass's faces; one the orientation check re-detected stays
            dets = self.refiner.refine(img, dets, thr, keep=dets[:1] if {"orientation", "deroll"} & path.keys() else ())
        return order_faces(dets, img.shape[1], img.shape[0]), path

    def _detect_align(self, img: np.ndarray, thr: float, retry: bool = False) -> tuple[list, list[np.ndarray]]:
        path = None
        if retry:
            dets, path = self.detect_retry(img, thr)
        else:
            from facefeat.vision.choice import order_faces

            dets = self.refiner.refine(img, self.detector.detect(img, thr), thr)
            dets = order_faces(dets, img.shape[1], img.shape[0])
        faces = [self.align(img, d) if not d.too_small else None for d in dets]
        if path is not None and path["path"] not in ("default", "none"):
            for d in dets:
                d.detected_by = path
        return dets, faces

    def _embed_batch(self, faces: list[np.ndarray | None], flip: bool | None) -> list[np.ndarray | None]:
        todo = [f for f in faces if f is not None]
        feats = iter(self.predictor.embed(todo, self.flip if flip is None else flip))
        return [next(feats) if f is not None else None for f in faces]

    # -- embed: the one-call "feature of the face in this photo" ----------------------------------
    def embed(self, inputs: Any, det_threshold: float | None = None, flip: bool | None = None,
              retry: bool = False, quality: bool = False) -> list:
        """Detect, align and embed every face of a photo; one dict per face, the photo's subject first
        (:mod:`facefeat.vision.choice`: the largest face holding the image centre, else the largest),
        then the others largest first.

        A single input returns ``[{"coordinate", "det_score", "landmarks", "feature"}, ...]``;
        several inputs (a list or a directory) return one such list per image, in order. Faces too
        small to align carry ``"feature": None`` and ``"too_small": True``. ``retry=True``: when no
        face is found, retry (see :meth:`detect_retry`); such faces carry ``"detected_by"``.
        ``quality=True`` adds each face's quality figures (:mod:`facefeat.vision.quality`).
        """
        items = expand_inputs(inputs)
        single = len(items) == 1 and not isinstance(inputs, (list, tuple)) and not (
            isinstance(inputs, (str, os.PathLike)) and Path(inputs).is_dir())
        out = [faces for _, faces in self._embed_items(items, det_threshold, flip, retry=retry, quality=quality)]
        return out[0] if single else out

    def _embed_items(self, items, det_threshold, flip, batch_images: int = 8,
                     retry: bool = False, quality: bool = False,
                     failures: list | None = None) -> Iterator[tuple[Any, list[dict]]]:
        thr = self.det_threshold if det_threshold is None else float(det_threshold)
        for chunk in iter_batches(items, batch_images):
            chunk, imgs = self._read_chunk(chunk, failures)
            per_img = [self._detect_align(img, thr, retry) for img in imgs]
            flat = [f for _, faces in per_img for f in faces]
            feats = iter(self._embed_batch(flat, flip))
            for it, img, (dets, aligned) in zip(chunk, imgs, per_img):
                faces = []
                for d, a in zip(dets, aligned):
                    face = d.to_dict()
                    if quality and a is not None:
                        from facefeat.vision.quality import face_quality

                        face["quality"] = face_quality(self.face_view(a), d)
                    feat = next(feats)
                    face["feature"] = None if feat is None else feat.tolist()
                    if d.too_small:
                        face["too_small"] = True
                    if getattr(d, "detected_by", None):
                        face["detected_by"] = d.detected_by
                    faces.append(face)
                yield (it, img), faces

    @staticmethod
    def _read_chunk(chunk: list, failures: list | None) -> tuple[list, list[np.ndarray]]:
        """Read a chunk's images; with a ``failures`` list, unreadable ones are appended to it and
        left out (the caller reports them), else the first raises."""
        good, imgs = [], []
        for it in chunk:
            try:
                imgs.append(read_image(it.source, it.name))
                good.append(it)
            except InputError as exc:
                if failures is None:
                    raise
                failures.append(exc)
        return good, imgs

    # -- gallery -----------------------------------------------------------------------------------
    def _gallery_items(self, gallery_imgs: Any, gallery_label: Any) -> list[tuple[Any, str, str]]:
        """``(source, label, name)`` for a root dir + label file, or parallel lists."""
        if isinstance(gallery_imgs, (list, tuple)):
            labels = list(gallery_label) if isinstance(gallery_label, (list, tuple)) else None
            if labels is None or len(labels) != len(gallery_imgs):
                raise InputError(
                    f"gallery_label must be a list as long as gallery_imgs ({len(gallery_imgs)} images), "
                    f"got {type(gallery_label).__name__}"
                    + (f" of length {len(labels)}" if labels is not None else ""))
            return [(img, str(lab), img if isinstance(img, str) else f"gallery[{i}]")
                    for i, (img, lab) in enumerate(zip(gallery_imgs, labels))]
        from facefeat.index.gallery import load_gallery

        return [(str(p), str(lab), str(p)) for p, lab in load_gallery(gallery_imgs, gallery_label)]

    def gallery_features(self, gallery_imgs: Any, gallery_label: Any, strict: bool = False,
                         progress: bool = False, quality: Any = None) -> GalleryFeatures:
        """Embed a gallery (one face per image, see the module docstring for the rule).

        ``quality``: a policy (:func:`facefeat.vision.quality.get_policy`); images that fail it are
        rejected with the reason, and the result carries each accepted face's figures and aligned crop."""
        policy = None
        if quality is not None:
            from facefeat.vision.quality import face_quality, get_policy

            policy = get_policy(quality)
        from facefeat.index.labels import normalize_label
        from facefeat.pipeline.enrol import sample_record, weights_hash

        weights = weights_hash(self.predictor)
        figures: list[dict] = []
        crops: list[np.ndarray] = []
        records: list = []
        items = self._gallery_items(gallery_imgs, gallery_label)
        rejected: list[GalleryRejection] = []
        self._calls.rejected = rejected  # this thread's view, filled as the call goes

        def reject(pos: int, name: str, label: str, reason: str) -> None:
            if strict:
                raise InputError(f"gallery image {name}: {reason}")
            log.warning("gallery image %s skipped: %s", name, reason)
            rejected.append(GalleryRejection(pos, str(name), label, reason))

        feats, labels, names, positions = [], [], [], []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), desc="gallery", unit="img")
        for chunk in iter_batches(list(enumerate(items)), 16):
            faces, keep = [], []
            for pos, (src, label, name) in chunk:
                try:
                    label = normalize_label(label, f"gallery label of {name}")  # one form, everywhere
                    img = read_image(src, name)
                except InputError as exc:
                    reject(pos, name, label, str(exc))
                    continue
                dets, path = self.detect_retry(img)
                usable = [d for d in dets if not d.too_small]
                if not usable:
                    reject(pos, name, label, "no face detected" if not dets else "face too small to align")
                    continue
                if not is_dominant([d.box for d in usable]):
                    reject(pos, name, label, f"{len(usable)} faces of similar size; cannot tell which is {label!r}")
                    continue
                face = self.align(img, usable[0])
                fig: dict = {}
                if policy is not None:
                    q = face_quality(self.face_view(face), usable[0])
                    why = policy.reasons(q)
                    if why:
                        reject(pos, name, label, "quality: " + "; ".join(why))
                        continue
                    fig = {"quality": q}
                    figures.append(fig)
                    crops.append(self.face_view(face))
                # the stored crop is the 5-point aligned face (thumbnails, health, re-embedding)
                records.append(sample_record(img, self.face_view(face), usable[0], fig, path, weights))
                faces.append(face)
                keep.append((pos, label, name))
            if faces:
                feats.append(self.predictor.embed(faces, self.flip))
                positions += [p for p, _, _ in keep]
                labels += [lab for _, lab, _ in keep]
                names += [n for _, _, n in keep]
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        dim = self.predictor.embedding_size
        x = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
        if policy is None:
            return GalleryFeatures(x, labels, names, positions, list(rejected), records=records)
        return GalleryFeatures(x, labels, names, positions, list(rejected), figures, crops, records)

    def build_index(self, gallery_imgs: Any, gallery_label: Any, metric_type: str = "IP",
                    index_type: str = "HNSW32", backend: str = "faiss", strict: bool = False,
                    progress: bool = False, **backend_kwargs: Any):
        """Embed a gallery and build a new index (FAISS by default, or Milvus)."""
        from facefeat.index import create_index

        g = self.gallery_features(gallery_imgs, gallery_label, strict, progress)
        if len(g.labels) == 0:
            first = f"{g.rejected[0].name}: {g.rejected[0].reason}" if g.rejected else "none given"
            raise InputError(f"gallery has no usable face: {len(g.rejected)} image(s) rejected (first: {first})")
        from facefeat.pipeline.enrol import add_gallery

        index = create_index(backend=backend, dim=self.predictor.embedding_size, metric_type=metric_type,
                             index_type=index_type, model_name=self.predictor.model_name, **backend_kwargs)
        add_gallery(index, g)
        return index

    def append_index(self, gallery_imgs: Any, gallery_label: Any, index, strict: bool = False,
                     progress: bool = False):
        """Embed more gallery images and add them to ``index`` (an index or a saved index directory).

        Returns the index, as PaddleX does (``index_data = pipeline.append_index(...)``; a directory
        is loaded and changes only when you ``index_data.save(dir)``); the new ids are in
        ``self.last_added_ids``.
        """
        index = resolve_index(index)
        if index is None:
            raise InputError("append_index: index is None; pass an index, or a saved index directory")
        index.check_model(self.predictor.model_name, self.predictor.embedding_size)
        from facefeat.pipeline.enrol import add_gallery

        g = self.gallery_features(gallery_imgs, gallery_label, strict, progress)
        self._calls.added_ids = add_gallery(index, g).ids
        return index

    @staticmethod
    def remove_index(remove_ids: int | Iterable[int] | str | os.PathLike, index):
        """Remove ids (an int, a list, or a text file of ids one per line) from ``index``.

        ``index`` is an index or a saved index directory; the index is returned, as PaddleX does.
        Unknown ids raise InputError and nothing is removed.
        """
        index = resolve_index(index)
        if index is None:
            raise InputError("remove_index: index is None; pass an index, or a saved index directory")
        if isinstance(remove_ids, (str, os.PathLike)):
            path = Path(remove_ids)
            if not path.is_file():
                raise InputError(f"remove_ids file {str(remove_ids)!r} does not exist")
            ids = []
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    try:
                        ids.append(int(line.split()[0]))
                    except ValueError:
                        raise InputError(f"{path}:{n}: {line.strip()!r} is not an integer id") from None
        elif isinstance(remove_ids, (int, np.integer)):
            ids = [int(remove_ids)]
        else:
            ids = [int(i) for i in remove_ids]
        index.remove(ids)
        return index

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
                from facefeat.index.people import People

                search = People(index).search
            from facefeat.index.corrections import veto_search  # "not X" corrections veto a name

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
                from facefeat.index.sightings import record as record_sightings

                record_sightings(index, item.name, img, faces, boxes)
            yield FaceRecResult(input_path=item.name, boxes=boxes, operating_point=op, _img=img)

    __call__ = predict

    # -- enrolment ---------------------------------------------------------------------------------
    def enroll(self, gallery: Any, index: Any = None, quality: Any = "standard", strict: bool = False):
        """Enrol people from a ``gallery/<name>/*.jpg`` folder, or a list of ``(image, name)``, into
        ``index`` (or a :class:`~facefeat.index.people.People` view; default: the pipeline's index,
        created as a Flat IP FAISS index when there is none) with the quality ``policy``
        (``off | standard | strict`` or limits). Returns an
        :class:`~facefeat.pipeline.enrol.EnrolReport`: what was added, and each rejected image with
        its reason."""
        from facefeat.index import create_index
        from facefeat.index.people import People
        from facefeat.pipeline.enrol import enroll, folder_items

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
               names: tuple[str, str] = ("img1", "img2")):
        """1:1: are two faces (images or features), or a face and gallery ``person``, the same
        person? See :func:`facefeat.pipeline.verify.verify`."""
        from facefeat.pipeline.verify import verify

        return verify(self, img1, img2, person=person, index=index, rec_threshold=rec_threshold, far=far,
                      det_threshold=det_threshold, flip=flip, names=names)

    # -- clustering and video (facefeat.pipeline.cluster / .video) -------------------------------
    def cluster(self, inputs: Any, threshold: float | None = None, min_samples: int | None = None,
                method: str | None = None, det_threshold: float | None = None, progress: bool = False):
        """Group every face of ``inputs`` into people without labels -> ``ClusterResult``
        (``threshold``: cosine similarity, default the model's calibrated one; see pipeline.cluster)."""
        from facefeat.pipeline.cluster import cluster_faces

        return cluster_faces(self, inputs, threshold, min_samples, method, det_threshold=det_threshold,
                             progress=progress)

    def predict_video(self, source: Any, index: Any = None, every_n: int = 1, **kwargs: Any) -> Iterator[dict]:
        """Recognise and track faces in a video file, stream or ``webcam:N``; yields frame, track and
        summary events (see facefeat.pipeline.video.predict_video for the options)."""
        from facefeat.pipeline.video import predict_video

        return predict_video(self, source, index=index, every_n=every_n, **kwargs)
