"""Face image quality for enrolment (and optionally queries): figures, and a policy that judges them.

Figures (:func:`face_quality`) of one detected face:

* ``face_size``: the shorter side of the detection box, pixels of the original image;
* ``det_score``: the detector's confidence;
* ``sharpness``: variance of the Laplacian of the aligned 112x112 face (grey) - blur lowers it;
* ``brightness`` / ``contrast``: mean and standard deviation of the aligned face's grey levels;
* ``yaw`` / ``roll``: head pose in degrees from the 5 landmarks. Roll is the eye line's angle;
  yaw comes from how far the nose tip sits from the eyes' midpoint, relative to the eye distance,
  once roll is undone (``atan(offset / (NOSE_DEPTH * eye distance))``, a rough estimate that is
  0 for a frontal face and grows to ~60° for a profile).

A :class:`QualityPolicy` (``off`` | ``standard`` | ``strict``, or your own limits) says whether
the figures are good enough and, if not, every reason why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

import cv2
import numpy as np

from facefeat.errors import InputError

#: nose tip depth in front of the eyes' plane, as a fraction of the eye distance (anthropometric)
NOSE_DEPTH = 0.55


def pose_from_landmarks(landmarks: Any) -> tuple[float, float]:
    """``(yaw, roll)`` in degrees from YuNet's 5 landmarks (see the module doc)."""
    p = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye_r, eye_l, nose = p[0], p[1], p[2]  # image-left eye first for an upright face
    d = eye_l - eye_r
    roll = math.degrees(math.atan2(d[1], d[0]))
    dist = float(np.hypot(*d))
    if dist < 1e-6:
        return 0.0, roll
    c, s = math.cos(math.radians(-roll)), math.sin(math.radians(-roll))
    mid = (eye_r + eye_l) / 2.0
    off = nose - mid
    x = c * off[0] - s * off[1]  # nose offset along the (de-rolled) eye line
    yaw = math.degrees(math.atan2(x, NOSE_DEPTH * dist))
    return yaw, roll


def face_quality(aligned_face: np.ndarray, detection: Any) -> dict:
    """Quality figures of one face: its aligned 112x112 BGR crop and its ``Detection``."""
    if not isinstance(aligned_face, np.ndarray) or aligned_face.ndim not in (2, 3):
        raise InputError(f"face_quality: expected an aligned BGR face image, got {type(aligned_face).__name__}")
    g = aligned_face if aligned_face.ndim == 2 else cv2.cvtColor(aligned_face, cv2.COLOR_BGR2GRAY)
    # the centre of the aligned face: the template leaves black borders outside the image
    h, w = g.shape
    core = g[h // 8: h - h // 8, w // 8: w - w // 8]
    yaw, roll = pose_from_landmarks(detection.landmarks)
    return {
        "face_size": round(float(min(detection.width, detection.height)), 1),
        "det_score": round(float(detection.score), 4),
        "sharpness": round(float(cv2.Laplacian(core, cv2.CV_64F).var()), 1),
        "brightness": round(float(core.mean()), 1),
        "contrast": round(float(core.std()), 1),
        "yaw": round(yaw, 1),
        "roll": round(roll, 1),
    }


@dataclass(frozen=True)
class QualityPolicy:
    """Limits on the quality figures; ``None`` disables a check."""

    name: str = "custom"
    min_face_size: float | None = None
    min_det_score: float | None = None
    min_sharpness: float | None = None
    min_brightness: float | None = None
    max_brightness: float | None = None
    min_contrast: float | None = None
    max_abs_yaw: float | None = None
    max_abs_roll: float | None = None

    def reasons(self, q: Mapping[str, float]) -> list[str]:
        """Why these figures fail the policy (empty when they pass)."""
        out = []

        def low(key: str, lim: float | None, what: str) -> None:
            if lim is not None and q[key] < lim:
                out.append(f"{what} {q[key]:g} < {lim:g}")

        low("face_size", self.min_face_size, "face too small:")
        low("det_score", self.min_det_score, "detection score")
        low("sharpness", self.min_sharpness, "too blurred: sharpness")
        low("brightness", self.min_brightness, "too dark: brightness")
        if self.max_brightness is not None and q["brightness"] > self.max_brightness:
            out.append(f"too bright: brightness {q['brightness']:g} > {self.max_brightness:g}")
        low("contrast", self.min_contrast, "too flat: contrast")
        if self.max_abs_yaw is not None and abs(q["yaw"]) > self.max_abs_yaw:
            out.append(f"face turned: yaw {q['yaw']:g}° beyond ±{self.max_abs_yaw:g}°")
        if self.max_abs_roll is not None and abs(q["roll"]) > self.max_abs_roll:
            out.append(f"head tilted: roll {q['roll']:g}° beyond ±{self.max_abs_roll:g}°")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


POLICIES: dict[str, QualityPolicy] = {
    "off": QualityPolicy("off"),
    "standard": QualityPolicy("standard", min_face_size=40, min_det_score=0.6, min_sharpness=40,
                              min_brightness=40, max_brightness=220, min_contrast=15,
                              max_abs_yaw=45, max_abs_roll=40),
    "strict": QualityPolicy("strict", min_face_size=80, min_det_score=0.8, min_sharpness=100,
                            min_brightness=60, max_brightness=200, min_contrast=25,
                            max_abs_yaw=25, max_abs_roll=20),
}


def get_policy(policy: str | QualityPolicy | Mapping | None, **overrides: Any) -> QualityPolicy:
    """A policy by name (``off`` | ``standard`` | ``strict``), a QualityPolicy, or a dict of limits
    (starting from ``standard``); keyword overrides change single limits."""
    if policy is None:
        policy = "off"
    if isinstance(policy, QualityPolicy):
        base = policy
    elif isinstance(policy, str):
        if policy not in POLICIES:
            raise InputError(f"quality policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        base = POLICIES[policy]
    elif isinstance(policy, Mapping):
        base, overrides = replace(POLICIES["standard"], name="custom"), {**policy, **overrides}
    else:
        raise InputError(f"quality policy must be a name, QualityPolicy or dict, got {type(policy).__name__}")
    if overrides:
        known = set(QualityPolicy.__dataclass_fields__) - {"name"}
        bad = sorted(set(overrides) - known)
        if bad:
            raise InputError(f"unknown quality limit(s) {bad}; known: {', '.join(sorted(known))}")
        base = replace(base, **overrides)
    return base


__all__ = ["POLICIES", "QualityPolicy", "face_quality", "get_policy", "pose_from_landmarks"]
