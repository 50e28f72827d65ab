"""A model's own face crop: what a model directory's ``face_crop`` says to cut from a photo.

Most models take the 5-point ArcFace alignment (:func:`facefeat.vision.align.align_face`) and have
no ``face_crop``. Others were trained on other crops: FaceNet on the detector's box grown by a
margin and stretched to 160x160, without rotation. A ``face_crop`` is a canvas ``size`` (height,
width) and regions, each drawn into the canvas at ``at`` (row, column):

* ``{"kind": "align", "size": 112, "at": [r, c]}``: the ArcFace 5-point alignment;
* ``{"kind": "box", "size": [h, w], "grow": g, "at": [r, c]}``: the box grown by ``g`` (1.25 =
  25 % wider and taller, about its centre) and stretched to ``h x w``; outside the image is black.

A fused model (``SFace+FaceNet``) takes both crops on one canvas; its graph slices them apart.
Regions are centred on the canvas's vertical axis, so mirroring the canvas (the flip test)
mirrors each crop in place.
"""

from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from facefeat.errors import InputError
from facefeat.vision.align import align_face

REGION_KINDS = ("align", "box")


def _hw(size: Any, what: str) -> tuple[int, int]:
    s = [int(size), int(size)] if np.isscalar(size) else [int(v) for v in size]
    if len(s) != 2 or min(s) < 8:
        raise InputError(f"face_crop {what}: size must be N or [height, width] >= 8, got {size!r}")
    return s[0], s[1]


def check_face_crop(spec: Mapping[str, Any]) -> dict:
    """Validate a ``face_crop`` and return it as plain data (for a model directory's YAML)."""
    if not isinstance(spec, Mapping) or "regions" not in spec or "size" not in spec:
        raise InputError(f"face_crop must be a mapping with 'size' and 'regions', got {spec!r}")
    ch, cw = _hw(spec["size"], "canvas")
    regions = []
    for i, r in enumerate(spec["regions"]):
        kind = r.get("kind")
        if kind not in REGION_KINDS:
            raise InputError(f"face_crop region {i}: kind must be one of {REGION_KINDS}, got {kind!r}")
        h, w = _hw(r["size"], f"region {i}")
        y, x = (int(v) for v in r.get("at", (0, 0)))
        if y < 0 or x < 0 or y + h > ch or x + w > cw:
            raise InputError(f"face_crop region {i} ({h}x{w} at {y},{x}) does not fit the {ch}x{cw} canvas")
        grow = float(r.get("grow", 1.0))
        if not 0.5 <= grow <= 3.0:
            raise InputError(f"face_crop region {i}: grow must be in [0.5, 3], got {grow}")
        regions.append({"kind": kind, "size": [h, w], "at": [y, x], **({"grow": grow} if kind == "box" else {})})
    return {"size": [ch, cw], "regions": regions}


def box_crop(img: np.ndarray, box: Any, size: tuple[int, int], grow: float = 1.0) -> np.ndarray:
    """The box ``[x0, y0, x1, y1]`` grown by ``grow`` about its centre, stretched to ``size`` (h, w)
    with one affine warp (bilinear); pixels outside the image are black."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).reshape(-1)[:4])
    if not (x1 > x0 and y1 > y0):
        raise InputError(f"box_crop: box {[x0, y0, x1, y1]} is empty")
    h, w = size
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bw, bh = (x1 - x0) * grow, (y1 - y0) * grow
    sx, sy = w / bw, h / bh
    m = np.array([[sx, 0.0, w / 2 - sx * cx], [0.0, sy, h / 2 - sy * cy]])
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def model_crop(img: np.ndarray, detection: Any, face_crop: Mapping[str, Any]) -> np.ndarray:
    """The canvas ``face_crop`` describes, for one detected face (a ``Detection`` or a dict with
    ``coordinate`` and ``landmarks``)."""
    if isinstance(detection, Mapping):
        box, lms = detection.get("coordinate", detection.get("box")), detection.get("landmarks")
    else:
        box, lms = detection.box, detection.landmarks
    ch, cw = _hw(face_crop["size"], "canvas")
    canvas = np.zeros((ch, cw) + img.shape[2:], img.dtype)
    for r in face_crop["regions"]:
        h, w = _hw(r["size"], "region")
        y, x = (int(v) for v in r.get("at", (0, 0)))
        if r["kind"] == "align":
            if lms is None:
                raise InputError("this model's face crop needs the face's 5 landmarks")
            canvas[y:y + h, x:x + w] = align_face(img, lms, h)
        else:
            canvas[y:y + h, x:x + w] = box_crop(img, box, (h, w), float(r.get("grow", 1.0)))
    return canvas


def face_view(canvas: np.ndarray, face_crop: Mapping[str, Any] | None) -> np.ndarray:
    """The 5-point aligned face inside a model's canvas (for quality figures and thumbnails), or
    the canvas itself where the crop has no aligned region."""
    for r in (face_crop or {}).get("regions", ()):
        if r["kind"] == "align":
            (y, x), (h, w) = r.get("at", (0, 0)), _hw(r["size"], "region")
            return canvas[y:y + h, x:x + w]
    return canvas


__all__ = ["REGION_KINDS", "box_crop", "check_face_crop", "face_view", "model_crop"]
