"""Detection that does not give up early: when a detector finds no usable face, try again.

:class:`RetryDetector` wraps any detector whose ``detect(bgr, score_threshold)`` returns
:class:`~facefeat.vision.detector.Detection` objects. When the first pass
finds no face that is large enough, it tries, in order and stopping at the first success:
1. a copy padded by ``pad`` of the image size on every side (faces cut by the border);
2. rotated copies (``angles``: 90°, 270°, 180°, +30°, -30° by default: sideways, upside-down and
   tilted photos), at the first-pass threshold;
3. the image at each lower score threshold of ``lower_thresholds`` (bounded; each face keeps its
   own score, so a caller sees how confident it was). Last, because at low scores YuNet takes an
   upside-down face for an upright one with its landmarks in the wrong places.

Also, once a face is found (first pass or padded copy), its orientation is checked: YuNet also
"finds" upside-down and sideways faces, less surely, but puts the landmarks where an upright face's
would be, which wrecks the alignment. The main face's square crop is detected turned by 0/90/180/
270°, and the best-scoring turn wins (``"orientation"`` in the path says which). Upright LFW faces
score 0.92-0.94, their turned copies at least 0.05 less. A face tilted beyond ``roll_refine``
degrees is detected once more on a crop turned upright (YuNet's landmarks lag behind the tilt);
``"deroll"`` gives the roll that was undone.

The retries of a large image (longer side above ``max_side``, default that of the detector) run
on a copy downscaled to ``max_side``: the detector sees no more than that anyway, and padded or
rotated copies of a 5000x5000 image would cost seconds and hundreds of MB each.

A face the plain pass found with profile landmarks (:func:`is_profile`: the nose outside the
span of the eyes, or the eyes close together for the box's width) is left as found: the roll is
read from the eye line, which means nothing on a profile, and re-detecting it only moves its
landmarks (measured on a held-out profile set: -1.07 points of verification accuracy).

Boxes and landmarks are mapped back to the original image (a rotated box becomes the axis-aligned
box of its corners, clipped to the image); landmarks keep YuNet's order, so the 5-point alignment
undoes the rotation. :meth:`RetryDetector.detect_with_path` also says which path found the faces.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import cv2
import numpy as np

from facefeat.vision.quality import pose_from_landmarks

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


def _rot90_affine(angle: int, w: int, h: int) -> np.ndarray:
    """The 2x3 affine of ``cv2.rotate`` by a multiple of 90° (counter-clockwise) on a w x h image."""
    a = int(angle) % 360
    return {0: np.array([[1.0, 0, 0], [0, 1.0, 0]]),
            90: np.array([[0, 1.0, 0], [-1.0, 0, w - 1.0]]),
            180: np.array([[-1.0, 0, w - 1.0], [0, -1.0, h - 1.0]]),
            270: np.array([[0, -1.0, h - 1.0], [1.0, 0, 0]])}[a]


def _rotate90(img: np.ndarray, angle: int) -> np.ndarray:
    a = int(angle) % 360
    if a == 0:
        return img
    return cv2.rotate(img, {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}[a])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine ``a`` after ``b`` (both 2x3)."""
    A, B = np.vstack([a, [0, 0, 1]]), np.vstack([b, [0, 0, 1]])
    return (A @ B)[:2]


#: a face whose eye distance is under this fraction of its box width is seen from the side
PROFILE_EYE_SPAN = 0.25


def is_profile(det: Any) -> bool:
    """Landmarks of a face seen from the side: the nose beyond either eye along the eye line, or the
    eyes closer together than ``PROFILE_EYE_SPAN`` of the box width."""
    p = np.asarray(det.landmarks, np.float64).reshape(5, 2)
    eye_r, eye_l, nose = p[0], p[1], p[2]
    d = eye_l - eye_r
    dist = float(np.hypot(*d))
    width = max(float(det.box[2]) - float(det.box[0]), 1e-6)
    if dist < PROFILE_EYE_SPAN * width:
        return True
    along = float(np.dot(nose - (eye_r + eye_l) / 2.0, d / dist))  # nose offset along the eye line
    return abs(along) > dist / 2.0


def _central(dets: list, w: float, h: float):
    usable = [d for d in dets if not d.too_small]
    if not usable:
        return None
    return min(usable, key=lambda d: np.hypot((d.box[0] + d.box[2]) / 2 - w / 2, (d.box[1] + d.box[3]) / 2 - h / 2))


class _AtThreshold:
    """``detector`` with its score threshold fixed (``detect(img)``), for the tries below."""

    def __init__(self, detector: Any, threshold: float):
        self.detector, self.threshold = detector, float(threshold)

    def detect(self, img: np.ndarray) -> list:
        return self.detector.detect(img, self.threshold)


class _Scaled:
    """A detector on a copy scaled by ``scale``: ``too_small`` judged as in the original image."""

    def __init__(self, detector: Any, scale: float, min_face_size: float):
        self.detector, self.scale, self.min_face_size = detector, scale, min_face_size * scale

    def detect(self, img: np.ndarray, score_threshold: float | None = None) -> list:
        return [replace(d, too_small=bool(min(d.width, d.height) < self.min_face_size))
                for d in self.detector.detect(img, score_threshold)]


def _scaled(d: Any, k: float, min_face_size: float) -> Any:
    box = (np.asarray(d.box, np.float64) * k).astype(np.float32)
    out = replace(d, box=box, landmarks=(np.asarray(d.landmarks, np.float64) * k).astype(np.float32),
                  too_small=bool(min(box[2] - box[0], box[3] - box[1]) < min_face_size))
    if getattr(d, "detected_by", None) is not None:
        out.detected_by = d.detected_by
    return out


class RetryDetector:
    """Wraps a detector (``detect(img, score_threshold)``, as :class:`~facefeat.vision.detector.YuNetDetector`)
    with the retries of the module doc."""

    def __init__(self, detector: Any, score_threshold: float = 0.5,
                 lower_thresholds: Sequence[float] = (0.3,), pad: float = 0.25,
                 angles: Sequence[float] = DEFAULT_ANGLES, min_face_size: float | None = None,
                 check_orientation: bool = True, orientation_margin: float = 0.02,
                 roll_refine: float | None = 8.0, max_side: int | None = -1, keep_profiles: bool = True):
        self.detector = detector
        #: retries of larger images run on a copy this size (-1: the detector's max_side; None: full size)
        self.max_side = getattr(detector, "max_side", None) if max_side == -1 else max_side
        self.score_threshold = float(score_threshold)
        self.lower_thresholds = [float(t) for t in lower_thresholds if float(t) < self.score_threshold]
        self.pad = float(pad)
        self.angles = [float(a) for a in angles]
        self.check_orientation = bool(check_orientation)
        self.orientation_margin = float(orientation_margin)
        self.roll_refine = None if roll_refine is None else float(roll_refine)
        #: leave a profile found by the plain pass as it is (False: check it like any face, as before)
        self.keep_profiles = bool(keep_profiles)
        self.min_face_size = float(getattr(detector, "min_face_size", 0.0)
                                   if min_face_size is None else min_face_size)

    def detect(self, img_bgr: np.ndarray) -> list:
        return self.detect_with_path(img_bgr)[0]

    def _at(self, threshold: float) -> "_AtThreshold":
        return _AtThreshold(self.detector, threshold)

    def _orient(self, img: np.ndarray, dets: list, path: dict) -> tuple[list, dict]:
        """Check the main face's orientation: detect on a square crop around it turned by 0/90/180/270°
        and, when a quarter turn scores higher than the crop as it is, take that face (landmarks
        mapped back) instead; the other faces stay as found."""
        if not self.check_orientation:
            return dets, path
        h, w = img.shape[:2]
        main = next(d for d in dets if not d.too_small)
        low = self._at(min([self.score_threshold, *self.lower_thresholds]))
        dets, path = self._deroll(img, dets, main, path, low)  # a tilted face first stands upright
        main = dets[0] if "deroll" in path else main
        cx, cy = (main.box[0] + main.box[2]) / 2.0, (main.box[1] + main.box[3]) / 2.0
        side = 1.6 * max(main.width, main.height)
        size = int(min(max(side, 64), 192))
        sc = size / side
        crop_m = np.array([[sc, 0, -sc * (cx - side / 2)], [0, sc, -sc * (cy - side / 2)]])
        crop = cv2.warpAffine(img, crop_m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        scores = {}
        for a in (0, 90, 180, 270):
            d = _central(low.detect(_rotate90(crop, a)), size, size)
            scores[a] = (d.score if d is not None else -1.0, d)
        a = max(scores, key=lambda k: scores[k][0])
        if a != 0 and scores[a][0] > scores[0][0] + self.orientation_margin:
            m = _compose(_rot90_affine(a, size, size), crop_m)
            (fixed,) = _map_back([scores[a][1]], cv2.invertAffineTransform(m), w, h, self.min_face_size) or [None]
            if fixed is not None:
                fixed = replace(fixed, too_small=bool(main.too_small))
                dets, path, main = [fixed] + [d for d in dets if d is not main], {**path, "orientation": a}, fixed
                return self._deroll(img, dets, main, path, low)
        return dets, path

    def _deroll(self, img: np.ndarray, dets: list, main, path: dict, low) -> tuple[list, dict]:
        """A tilted face (roll beyond ``roll_refine``°): YuNet's landmarks lag behind the tilt, so
        detect again on a crop turned upright and map that face's landmarks back."""

        undone = None
        for _ in range(2):  # the second pass starts from the better landmarks of the first
            roll = pose_from_landmarks(main.landmarks)[1]
            if self.roll_refine is None or abs(roll) <= self.roll_refine:
                break
            fixed = self._deroll_once(img, main, roll, low)
            if fixed is None:
                break
            dets, main, undone = [fixed] + [x for x in dets if x is not main], fixed, roll
        return dets, path if undone is None else {**path, "deroll": round(float(undone), 1)}

    def _deroll_once(self, img: np.ndarray, main, roll: float, low):
        h, w = img.shape[:2]
        cx, cy = (main.box[0] + main.box[2]) / 2.0, (main.box[1] + main.box[3]) / 2.0
        side = 1.8 * max(main.width, main.height)
        size = int(min(max(side, 64), 224))
        m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(roll), size / side)
        m[:, 2] += (size / 2.0 - cx, size / 2.0 - cy)
        crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        d = _central(low.detect(crop), size, size)
        if d is None:
            return None
        (fixed,) = _map_back([d], cv2.invertAffineTransform(m), w, h, self.min_face_size) or [None]
        return None if fixed is None else replace(fixed, too_small=bool(main.too_small))

    __call__ = detect

    def _retry_downscaled(self, img: np.ndarray, first: list) -> tuple[list, dict]:
        """The retries on a copy downscaled to ``max_side``, results mapped back."""
        h, w = img.shape[:2]
        k = self.max_side / float(max(h, w))
        small = cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
        inner = RetryDetector(_Scaled(self.detector, k, self.min_face_size), self.score_threshold,
                              self.lower_thresholds, self.pad, self.angles, self.min_face_size * k,
                              self.check_orientation, self.orientation_margin, self.roll_refine, max_side=None, keep_profiles=self.keep_profiles)
        dets, path = inner.detect_with_path(small)
        if path["path"] == "none":
            return first, path
        sx, sy = w / small.shape[1], h / small.shape[0]
        return [_scaled(d, (sx + sy) / 2.0, self.min_face_size) for d in dets], {**path, "downscaled_to": self.max_side}

    def detect_with_path(self, img_bgr: np.ndarray) -> tuple[list, dict]:
        """``(detections, path)``; ``path`` is ``{"path": "default" | "lower_threshold" | "padded" |
        "rotated", "score_threshold", ["angle"], ["orientation"]}`` (``"none"`` when every try failed)."""
        base = self._at(self.score_threshold)
        img = img_bgr if img_bgr.ndim == 3 else cv2.cvtColor(img_bgr, cv2.COLOR_GRAY2BGR)
        h, w = img.shape[:2]
        dets = base.detect(img_bgr)
        if any(not d.too_small for d in dets):
            path = {"path": "default", "score_threshold": self.score_threshold}
            if self.keep_profiles and is_profile(next(d for d in dets if not d.too_small)):
                return dets, path  # a profile's landmarks stay as the plain pass found them
            return self._orient(img, dets, path)
        if self.max_side and max(h, w) > self.max_side:
            return self._retry_downscaled(img, dets)
        first = dets
        if self.pad > 0:
            p = int(round(self.pad * max(h, w)))
            padded = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            inv = np.array([[1.0, 0.0, -p], [0.0, 1.0, -p]])
            dets = _map_back(base.detect(padded), inv, w, h, self.min_face_size)
            if any(not d.too_small for d in dets):
                return self._orient(img, dets, {"path": "padded", "score_threshold": self.score_threshold, "pad": p})
        # quarter turns: the best-scoring one (YuNet also "finds" a face upside down, less surely,
        # with its landmarks where an upright face's would be)
        best = None
        for a in [a for a in self.angles if a % 90 == 0]:
            found = _map_back(base.detect(_rotate90(img, int(a))), cv2.invertAffineTransform(_rot90_affine(int(a), w, h)),
                              w, h, self.min_face_size)
            top = max((d.score for d in found if not d.too_small), default=None)
            if top is not None and (best is None or top > best[0]):
                best = (top, found, a)
        if best is not None:
            return best[1], {"path": "rotated", "score_threshold": self.score_threshold, "angle": best[2]}
        for a in [a for a in self.angles if a % 90 != 0]:
            m, (nw, nh) = _rotation(a, w, h)
            rot = cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
            dets = _map_back(base.detect(rot), cv2.invertAffineTransform(m), w, h, self.min_face_size)
            if any(not d.too_small for d in dets):
                return dets, {"path": "rotated", "score_threshold": self.score_threshold, "angle": a}
        for t in self.lower_thresholds:  # last: an upside-down face passes as an upright one at low scores
            dets = self._at(t).detect(img_bgr)
            if any(not d.too_small for d in dets):
                return dets, {"path": "lower_threshold", "score_threshold": t}
        return first, {"path": "none", "score_threshold": self.score_threshold}


__all__ = ["DEFAULT_ANGLES", "PROFILE_EYE_SPAN", "RetryDetector", "is_profile"]
