"""The face recognition pipeline: detect (YuNet) -> align (5-point similarity) -> embed -> search.

Gallery rule (build/append): an image with no detected face is rejected; an image with several
faces uses the largest one when its box area is at least ``GALLERY_DOMINANCE`` times the
next one (a portrait with faces in the background), and is rejected as ambiguous otherwise.
Rejections are logged, kept in ``pipeline.last_rejected`` as ``(name, reason)``, and never
silently dropped; ``strict=True`` turns them into an error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from facefeat.errors import InputError
from facefeat.io import expand_inputs, read_image
from facefeat.io.image import iter_batches
from facefeat.pipeline.result import FaceRecResult
from facefeat.predict.predictor import FeaturePredictor, create_model

log = logging.getLogger("facefeat")

GALLERY_DOMINANCE = 2.0
ALIGN_MODES = ("align", "crop")


def _area(box: Sequence[float]) -> float:
    return max(0.0, float(box[2]) - float(box[0])) * max(0.0, float(box[3]) - float(box[1]))


def _is_match(metric_type: str, score: float, threshold: float) -> bool:
    """IP/COSINE scores are similarities (higher is better); L2 scores are distances (lower)."""
    return score <= threshold if str(metric_type).upper() == "L2" else score >= threshold


class FaceRecognitionPipeline:
    """Detect, align and embed faces, and recognise them against a gallery index."""

    def __init__(self, model: str | None = "SFace", weights: str | os.PathLike | None = None, *,
                 model_dir: str | os.PathLike | None = None, predictor: FeaturePredictor | None = None,
                 det_threshold: float = 0.5, nms_threshold: float = 0.3, min_face_size: int = 20,
                 align: str = "align", rec_threshold: float = 0.4, rec_topk: int = 5, flip: bool = False,
                 batch_size: int = 32, device: str = "cpu", num_threads: int | None = None,
                 index: Any = None, backend: str = "auto", precision: str = "auto"):
        from facefeat.vision.detector import YuNetDetector

        if align not in ALIGN_MODES:
            raise InputError(f"align must be one of {ALIGN_MODES}, got {align!r}")
        self.predictor = predictor or create_model(model if model_dir is None else None, weights,
                                                   model_dir=model_dir, device=device,
                                                   batch_size=batch_size, num_threads=num_threads,
                                                   backend=backend, precision=precision)
        self.det_threshold = float(det_threshold)
        self.nms_threshold = float(nms_threshold)
        self.min_face_size = int(min_face_size)
        self.align_mode = align
        self.rec_threshold = float(rec_threshold)
        self.rec_topk = int(rec_topk)
        self.flip = bool(flip)
        self.index = index
        self.last_rejected: list[tuple[str, str]] = []
        self._detectors: dict[float, Any] = {}
        self._detector_cls = YuNetDetector
        self.detector = self._detector(self.det_threshold)

    def __repr__(self) -> str:
        return (f"FaceRecognitionPipeline(model={self.predictor.model_name!r}, align={self.align_mode!r}, "
                f"det_threshold={self.det_threshold}, rec_threshold={self.rec_threshold})")

    # -- stages -------------------------------------------------------------------------------------
    def _detector(self, threshold: float):
        det = self._detectors.get(threshold)
        if det is None:
            det = self._detector_cls(score_threshold=threshold, nms_threshold=self.nms_threshold,
                                     min_face_size=self.min_face_size)
            self._detectors[threshold] = det
        return det

    def detect(self, img: Any, det_threshold: float | None = None) -> list:
        """Faces in one image (largest first) as ``Detection`` objects."""
        thr = self.det_threshold if det_threshold is None else float(det_threshold)
        return self._detector(thr).detect(read_image(img))

    def align(self, img: np.ndarray, detection) -> np.ndarray:
        from facefeat.vision.align import align as align_face

        return align_face(img, detection, mode=self.align_mode)

    def _detect_align(self, img: np.ndarray, thr: float) -> tuple[list, list[np.ndarray]]:
        dets = self._detector(thr).detect(img)
        faces = [self.align(img, d) if not d.too_small else None for d in dets]
        return dets, faces

    def _embed_batch(self, faces: list[np.ndarray | None], flip: bool | None) -> list[np.ndarray | None]:
        todo = [f for f in faces if f is not None]
        feats = iter(self.predictor.embed(todo, self.flip if flip is None else flip))
        return [next(feats) if f is not None else None for f in faces]

    # -- embed: the one-call "feature of the face in this photo" ----------------------------------
    def embed(self, inputs: Any, det_threshold: float | None = None, flip: bool | None = None) -> list:
        """Detect, align and embed every face of a photo; one dict per face, largest first.

        A single input returns ``[{"coordinate", "det_score", "landmarks", "feature"}, ...]``;
        several inputs (a list or a directory) return one such list per image, in order. Faces too
        small to align carry ``"feature": None`` and ``"too_small": True``.
        """
        items = expand_inputs(inputs)
        single = len(items) == 1 and not isinstance(inputs, (list, tuple)) and not (
            isinstance(inputs, (str, os.PathLike)) and Path(inputs).is_dir())
        out = [faces for _, faces in self._embed_items(items, det_threshold, flip)]
        return out[0] if single else out

    def _embed_items(self, items, det_threshold, flip, batch_images: int = 8) -> Iterator[tuple[Any, list[dict]]]:
        thr = self.det_threshold if det_threshold is None else float(det_threshold)
        for chunk in iter_batches(items, batch_images):
            imgs = [read_image(it.source, it.name) for it in chunk]
            per_img = [self._detect_align(img, thr) for img in imgs]
            flat = [f for _, faces in per_img for f in faces]
            feats = iter(self._embed_batch(flat, flip))
            for it, img, (dets, _) in zip(chunk, imgs, per_img):
                faces = []
                for d in dets:
                    face = d.to_dict()
                    feat = next(feats)
                    face["feature"] = None if feat is None else feat.tolist()
                    if d.too_small:
                        face["too_small"] = True
                    faces.append(face)
                yield (it, img), faces

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
                         progress: bool = False) -> tuple[np.ndarray, list[str], list[str]]:
        """Embed a gallery (one face per image, see the module docstring for the rule)."""
        items = self._gallery_items(gallery_imgs, gallery_label)
        self.last_rejected = []
        feats, labels, names = [], [], []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), desc="gallery", unit="img")
        for chunk in iter_batches(items, 16):
            faces, keep = [], []
            for src, label, name in chunk:
                try:
                    img = read_image(src, name)
                except InputError as exc:
                    self._reject(name, str(exc), strict)
                    continue
                dets = [d for d in self.detector.detect(img)]
                usable = [d for d in dets if not d.too_small]
                if not usable:
                    why = "no face detected" if not dets else "face too small to align"
                    self._reject(name, why, strict)
                    continue
                if len(usable) > 1 and _area(usable[0].box) < GALLERY_DOMINANCE * _area(usable[1].box):
                    self._reject(name, f"{len(usable)} faces of similar size; cannot tell which is {label!r}",
                                 strict)
                    continue
                faces.append(self.align(img, usable[0]))
                keep.append((label, name))
            if faces:
                feats.append(self.predictor.embed(faces, self.flip))
                labels += [lab for lab, _ in keep]
                names += [n for _, n in keep]
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        dim = self.predictor.embedding_size
        return (np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)), labels, names

    def _reject(self, name: str, reason: str, strict: bool) -> None:
        if strict:
            raise InputError(f"gallery image {name}: {reason}")
        log.warning("gallery image %s skipped: %s", name, reason)
        self.last_rejected.append((name, reason))

    def build_index(self, gallery_imgs: Any, gallery_label: Any, metric_type: str = "IP",
                    index_type: str = "HNSW32", backend: str = "faiss", strict: bool = False,
                    progress: bool = False, **backend_kwargs: Any):
        """Embed a gallery and build a new index (FAISS by default, or Milvus)."""
        from facefeat.index import create_index

        feats, labels, names = self.gallery_features(gallery_imgs, gallery_label, strict, progress)
        if len(labels) == 0:
            raise InputError(f"gallery has no usable face: {len(self.last_rejected)} image(s) rejected "
                             f"(first: {self.last_rejected[0] if self.last_rejected else 'none given'})")
        index = create_index(backend=backend, dim=self.predictor.embedding_size, metric_type=metric_type,
                             index_type=index_type, model_name=self.predictor.model_name, **backend_kwargs)
        index.add(feats, labels, names)
        return index

    def append_index(self, gallery_imgs: Any, gallery_label: Any, index, strict: bool = False,
                     progress: bool = False) -> list[int]:
        """Embed more gallery images and add them to ``index``; returns the new ids."""
        index.check_model(self.predictor.model_name, self.predictor.embedding_size)
        feats, labels, names = self.gallery_features(gallery_imgs, gallery_label, strict, progress)
        return index.add(feats, labels, names) if labels else []

    @staticmethod
    def remove_index(remove_ids: int | Iterable[int] | str | os.PathLike, index) -> int:
        """Remove ids (an int, a list, or a text file of ids one per line) from ``index``."""
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
        return index.remove(ids)

    # -- recognition -------------------------------------------------------------------------------
    def predict(self, inputs: Any, index: Any = None, det_threshold: float | None = None,
                rec_threshold: float | None = None, rec_topk: int | None = None,
                flip: bool | None = None) -> Iterator[FaceRecResult]:
        """Yield a FaceRecResult per image: every face with its top-k gallery matches."""
        index = self.index if index is None else index
        if index is not None:
            index.check_model(self.predictor.model_name, self.predictor.embedding_size)
        thr = self.rec_threshold if rec_threshold is None else float(rec_threshold)
        topk = self.rec_topk if rec_topk is None else int(rec_topk)
        if topk < 1:
            raise InputError(f"rec_topk must be >= 1, got {topk}")
        for (item, img), faces in self._embed_items(expand_inputs(inputs), det_threshold, flip):
            queries = [f for f in faces if f["feature"] is not None]
            hits = index.search(np.asarray([f["feature"] for f in queries], np.float32), topk) \
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
                    if h and _is_match(index.metric_type, h[0].score, thr):
                        box["labels"] = [x.label for x in h]
                        box["rec_scores"] = [round(float(x.score), 6) for x in h]
                boxes.append(box)
            yield FaceRecResult(input_path=item.name, boxes=boxes, _img=img)

    __call__ = predict
