"""Photos where aligned face crops are expected: tell them apart, and align their subject.

A face model embeds *aligned* crops (the eyes, nose and mouth on the ArcFace template, at the
model's input size). A photo resized to that size gives a poor feature (SFace on LFW's raw
250x250 photos: 85.9% instead of 99.5%). :class:`PhotoAligner` finds the photo's subject - the
largest face containing the image centre, else the largest face (:func:`central_face`) - with the
pipeline's detector (YuNet) and aligns it as the pipeline does (5-point similarity transform).
Images already of the input size are taken as aligned crops and pass unchanged.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from facefeat.errors import InputError
from facefeat.vision.align import align
from facefeat.vision.detector import YuNetDetector, central_face
from facefeat.vision.refine import LandmarkRefiner, check_landmark_mode

#: what ``align=`` options mean, for the predictor and evaluate
ALIGN_MODES = ("auto", "warn", "off")


def check_align_mode(align: str) -> str:
    if align not in ALIGN_MODES:
        raise InputError(f"align must be one of {', '.join(ALIGN_MODES)}, got {align!r}")
    return align


class PhotoAligner:
    """Aligned crops of ``input_size`` (height, width) from photos; thread-safe, the detector is
    created on first use."""

    def __init__(self, input_size: Sequence[int] = (112, 112), det_threshold: float = 0.5,
                 landmarks: str = "mirror"):
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.det_threshold = float(det_threshold)
        self.landmarks = check_landmark_mode(landmarks)  # placed as the pipeline does (vision.refine)
        self._detector = None
        self._refiner = None
        self._lock = threading.Lock()

    def is_aligned(self, img: np.ndarray) -> bool:
        """True when ``img`` has the model's input size (taken as an aligned crop)."""
        return tuple(img.shape[:2]) == self.input_size

    @property
    def detector(self):
        with self._lock:
            if self._detector is None:
                self._detector = YuNetDetector(self.det_threshold)
                self._refiner = LandmarkRefiner(self._detector, self.landmarks)
            return self._detector

    def has_face(self, img: np.ndarray) -> bool:
        """Whether the detector finds a face in ``img`` (an aligned crop holds one: YuNet finds it in
        every aligned LFW crop tried; a crop without one is no face crop at all)."""
        return bool(self.detector.detect(img))

    def face(self, img: np.ndarray) -> np.ndarray | None:
        """``img`` itself when aligned, else its subject's aligned crop; None when no face is found."""
        if self.is_aligned(img):
            return img

        dets = self.detector.detect(img)
        det = central_face(self._refiner.refine(img, dets), img.shape[1], img.shape[0])
        if det is None:
            return None
        h, w = self.input_size
        crop = align(img, det, size=w)
        if crop.shape[:2] != (h, w):  # a non-square input: the template is square
            import cv2

            crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
        return crop


#: in ``align="warn"`` mode, inputs of the input size checked for a face per call (detection costs
#: about as much as embedding; ``"auto"`` checks every input)
FACE_CHECKS_WHEN_WARNING = 8


def no_face_warning(name: str, input_size: Sequence[int]) -> str:
    """The loud warning for an input of the model's size in which no face is found."""
    h, w = int(input_size[0]), int(input_size[1])
    return (f"{name}: no face found in this {w}x{h} input; the model expects an aligned {w}x{h} face crop, so "
            "its feature describes no face (align photos with the face_recognition pipeline, facefeat align, "
            "or align='auto' on the full photo)")


def not_aligned_warning(name: str, img: np.ndarray, input_size: Sequence[int], count: int = 1) -> str:
    """The loud warning for photos embedded as if they were aligned crops."""
    h, w = int(input_size[0]), int(input_size[1])
    return (f"{name} is {img.shape[1]}x{img.shape[0]}, not an aligned {w}x{h} face crop"
            + (f" (and {count - 1} more input(s) like it)" if count > 1 else "")
            + ": it is resized, not aligned, and its feature is poor (SFace on LFW photos: 85.9% instead of "
            "99.5%). Pass align='auto' (CLI: --align auto) to detect and align the face, or use the "
            "face_recognition pipeline (facefeat embed / create_pipeline('face_recognition'))")


__all__ = ["ALIGN_MODES", "FACE_CHECKS_WHEN_WARNING", "PhotoAligner", "check_align_mode", "no_face_warning",
           "not_aligned_warning"]
