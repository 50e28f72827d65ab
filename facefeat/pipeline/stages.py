"""The pipeline's stages for the faces of a photo: detect (YuNet, with retries), align (the model's
own crop, the 5-point alignment or PaddleX's box crop), embed; :meth:`FaceStages.embed` runs them
all and is the path :meth:`~facefeat.pipeline.face_recognition.FaceRecognitionPipeline.predict`,
verification and clustering take."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from facefeat.errors import InputError
from facefeat.io import expand_inputs, read_image
from facefeat.io.image import iter_batches
from facefeat.predict.prefetch import prefetch
from facefeat.vision.align import align as align_detection
from facefeat.vision.choice import order_faces
from facefeat.vision.crops import face_view, model_crop
from facefeat.vision.quality import face_quality
from facefeat.vision.retry import RetryDetector


class FaceStages:
    """Detect, align and embed (a mixin of :class:`~facefeat.pipeline.face_recognition.FaceRecognitionPipeline`,
    which sets ``predictor``, ``detector``, ``refiner``, ``det_threshold``, ``align_mode`` and ``flip``)."""

    def detect(self, img: Any, det_threshold: float | None = None) -> list:
        """Faces in one image (largest first) as ``Detection`` objects (landmarks as ``landmarks`` says)."""
        img = read_image(img)
        return self.refiner.refine(img, self.detector.detect(img, det_threshold), det_threshold)

    def align(self, img: np.ndarray, detection) -> np.ndarray:
        """The face as the model takes it: its own ``face_crop`` (facefeat.vision.crops) where it
        has one, else the 5-point alignment (or PaddleX's box crop with ``align="crop"``)."""
        face_crop = self.predictor.meta.extra.get("face_crop")
        if face_crop and self.align_mode == "align":
            return model_crop(img, detection, face_crop)
        return align_detection(img, detection, mode=self.align_mode)

    def face_view(self, face: np.ndarray) -> np.ndarray:
        """The 5-point aligned face inside what :meth:`align` returned (the same image for most
        models; a fused model's canvas holds several crops): for quality figures and thumbnails."""
        return face_view(face, self.predictor.meta.extra.get("face_crop"))

    def detect_retry(self, img: np.ndarray, det_threshold: float | None = None) -> tuple[list, dict]:
        """Detect, and when no usable face is found retry on padded / rotated copies and at a lower
        threshold (:class:`~facefeat.vision.retry.RetryDetector`); returns ``(faces, path)``."""
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

        def prepared(chunk: list):  # a chunk's failures are handed over with it, so they keep their place
            failed: list | None = None if failures is None else []
            chunk, imgs = self._read_chunk(chunk, failed)
            return chunk, imgs, [self._detect_align(img, thr, retry) for img in imgs], failed

        chunks = (prepared(c) for c in iter_batches(items, batch_images))
        if len(items) > batch_images:  # several chunks: the next one is read and detected while this one embeds
            chunks = prefetch(chunks)
        for chunk, imgs, per_img, failed in chunks:
            if failed:
                failures.extend(failed)
            flat = [f for _, faces in per_img for f in faces]
            feats = iter(self._embed_batch(flat, flip))
            for it, img, (dets, aligned) in zip(chunk, imgs, per_img):
                faces = []
                for d, a in zip(dets, aligned):
                    face = d.to_dict()
                    if quality and a is not None:
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
