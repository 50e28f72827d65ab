"""Detection that does not give up early: when a detector finds no usable face, try again.

:class:`RetryDetector` wraps any detector factory (``score_threshold -> detector`` whose
``detect(bgr)`` returns :class:`~facefeat.vision.detector.Detection` objects). When the first pass
finds no face that is large enough, it tries, in order and stopping at the first success:

1. a copy padded by ``pad`` of the image size on every side (faces cut by the border);
2. rotated copies (``angles``: 90°, 270°, 180°, +30°, -30° by default: sideways, upside-down and
   tilted photos), at the first-pass threshold;
3. the image at each lower score threshold of ``lower_thresholds`` (bounded; each face keeps its
   own score, so a caller sees how confident it was). Last, because at low scores YuNet takes an
   upside-down face for an upright one with its landmarks in the wrong places.

Boxes and landmarks are mapped back to the original image (a rotated box becomes the axis-aligned
box of its corners, clipped to the image); landmarks keep YuNet's order, so the 5-point alignment
undoes the rotation. :meth:`RetryDetector.detect_with_path` also says which path found the faces.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import cv2
import numpy as np

DEFAULT_ANGLES = (90, 270, 180, 30, -30)


def _rotation(angle: float, w: int, h: int) -> tuple[np.ndarray, tuple[int, int]]:
    """2x3 affine rotating an image ``angle`` degrees counter-clockwise onto a canvas that holds
    all of it, and that canvas's (width, height)."""
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(round(h * s + w * c)), int(round(h * c + w * s))
    m[0, 2] += nw / 2.0 - w / 2.0
    m[1, 2] += nh / 2.0 - h / 2.0
    return m, (nw, nh)


def _map_back(dets: list, inv: np.ndarray, w: int, h: int, min_face_size: float) -> list:
    """Detections of a transformed copy, in original-image coordinates (``inv``: 2x3 affine)."""
    out = []
    for d in dets:
        x0, y0, x1, y1 = (float(v) for v in d.box)
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        pc = corners @ inv[:, :2].T + inv[:, 2]
        box = np.array([max(0.0, pc[:, 0].min()), max(0.0, pc[:, 1].min()),
                        min(float(w), pc[:, 0].max()), min(float(h), pc[:, 1].max())], np.float32)
        if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
            continue
        lms = (np.asarray(d.landmarks, np.float64) @ inv[:, :2].T + inv[:, 2]).astype(np.float32)
        small = min(box[2] - box[0], box[3] - box[1]) < min_face_size
        out.append(replace(d, box=box, landmarks=lms, too_small=bool(small or d.too_small)))
    out.sort(key=lambda d: d.area, reverse=True)
    return out


class RetryDetector:
    """Wraps ``factory(score_threshold) -> detector`` with the retries of the module doc."""

    def __init__(self, factory: Callable[[float], Any], score_threshold: float = 0.5,
                 lower_thresholds: Sequence[float] = (0.3,), pad: float = 0.25,
                 angles: Sequence[float] = DEFAULT_ANGLES, min_face_size: float | None = None):
        self.factory = factory
        self.score_threshold = float(score_threshold)
        self.lower_thresholds = [float(t) for t in lower_thresholds if float(t) < self.score_threshold]
        self.pad = float(pad)
        self.angles = [float(a) for a in angles]
        self.min_face_size = float(getattr(factory(self.score_threshold), "min_face_size", 0.0)
                                   if min_face_size is None else min_face_size)

    def detect(self, img_bgr: np.ndarray) -> list:
        return self.detect_with_path(img_bgr)[0]

    __call__ = detect

    def detect_with_path(self, img_bgr: np.ndarray) -> tuple[list, dict]:
        """``(detections, path)``; ``path`` is ``{"path": "default" | "lower_threshold" | "padded" |
        "rotated", "score_threshold", ["angle"]}`` (``"none"`` when every try failed)."""
        base = self.factory(self.score_threshold)
        dets = base.detect(img_bgr)
        if any(not d.too_small for d in dets):
            return dets, {"path": "default", "score_threshold": self.score_threshold}
        first = dets
        img = img_bgr if img_bgr.ndim == 3 else cv2.cvtColor(img_bgr, cv2.COLOR_GRAY2BGR)
        h, w = img.shape[:2]
        if self.pad > 0:
            p = int(round(self.pad * max(h, w)))
            padded = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            inv = np.array([[1.0, 0.0, -p], [0.0, 1.0, -p]])
            dets = _map_back(base.detect(padded), inv, w, h, self.min_face_size)
            if any(not d.too_small for d in dets):
                return dets, {"path": "padded", "score_threshold": self.score_threshold, "pad": p}
        for a in self.angles:
            m, (nw, nh) = _rotation(a, w, h)
            if a % 90 == 0:  # exact, no interpolation
                code = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180,
                        270: cv2.ROTATE_90_CLOCKWISE}[int(a) % 360]
                rot = cv2.rotate(img, code)
            else:
                rot = cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
            dets = _map_back(base.detect(rot), cv2.invertAffineTransform(m), w, h, self.min_face_size)
            if any(not d.too_small for d in dets):
                return dets, {"path": "rotated", "score_threshold": self.score_threshold, "angle": a}
        for t in self.lower_thresholds:  # last: an upside-down face passes as an upright one at low scores
            dets = self.factory(t).detect(img_bgr)
            if any(not d.too_small for d in dets):
                return dets, {"path": "lower_threshold", "score_threshold": t}
        return first, {"path": "none", "score_threshold": self.score_threshold}


__all__ = ["DEFAULT_ANGLES", "RetryDetector"]
