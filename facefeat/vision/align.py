"""Face alignment: a 5-point similarity transform onto the ArcFace template, or PaddleX's box crop.

* ``mode="align"`` (:func:`align_face`): estimate the similarity transform (rotation, uniform
  scale, translation - Umeyama's least squares) that maps the detector's 5 landmarks onto
  :data:`ARCFACE_TEMPLATE` and warp with ``cv2.warpAffine`` (bilinear). Pixels from outside the
  image are black (``BORDER_CONSTANT`` 0), as in insightface's ``norm_crop`` that ArcFace-style
  models were trained with.
* ``mode="crop"`` (:func:`crop_face`): PaddleX's face-recognition behaviour: cut the detection box
  (integer coordinates, clipped to the image) and stretch it to ``size x size`` with
  ``cv2.resize`` (bilinear), ignoring the aspect ratio.

Landmark order everywhere: YuNet's (subject's right eye, left eye, nose, right mouth corner, left
mouth corner) - for a frontal face, the image-left eye first, matching the template's points.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from facefeat.errors import InputError

#: ArcFace's 112x112 template: right eye, left eye (of the subject), nose, right/left mouth corners
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ALIGN_MODES = ("align", "crop")


def _points(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 2:
        raise InputError(f"{what}: expected [N, 2] points (N >= 2), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{what}: points contain NaN or infinite values")
    return a


def similarity_transform(src_pts: Any, dst_pts: Any) -> np.ndarray:
    """The 2x3 similarity matrix ``M`` minimising ``sum |M @ [src, 1] - dst|^2`` (Umeyama, 1991).

    No reflection is allowed (``det(R) = +1``).
    """
    src = _points(src_pts, "similarity_transform src_pts")
    dst = _points(dst_pts, "similarity_transform dst_pts")
    if src.shape != dst.shape:
        raise InputError(f"similarity_transform: {src.shape[0]} source points but {dst.shape[0]} destination points")
    n = src.shape[0]
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / n
    if var_s < 1e-12:
        raise InputError("similarity_transform: the source points all coincide; no transform is defined")
    cov = d0.T @ s0 / n
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    r = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var_s)
    t = mu_d - scale * (r @ mu_s)
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = scale * r
    m[:, 2] = t
    return m


def template(size: int = 112) -> np.ndarray:
    """The ArcFace template scaled to ``size x size``."""
    return ARCFACE_TEMPLATE * (float(size) / 112.0)


def _check_img(img: Any, what: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise InputError(f"{what}: expected an HxWx3 BGR image array, got {getattr(img, 'shape', type(img).__name__)}")
    return img


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise InputError(f"size must be an integer >= 8, got {size!r}")
    return int(size)


def align_face(img: np.ndarray, landmarks: Any, size: int = 112) -> np.ndarray:
    """Warp the face with these 5 landmarks onto the ArcFace template: ``size x size x 3`` BGR."""
    img = _check_img(img, "align_face")
    size = _check_size(size)
    lms = _points(landmarks, "align_face landmarks")
    if lms.shape[0] != 5:
        raise InputError(f"align_face: expected 5 landmarks, got {lms.shape[0]}")
    m = similarity_transform(lms, template(size))
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_face(img: np.ndarray, box: Any, size: int = 112) -> np.ndarray:
    """PaddleX's crop: the box ``[xmin, ymin, xmax, ymax]`` (truncated to int, clipped to the
    image) stretched to ``size x size`` (bilinear)."""
    img = _check_img(img, "crop_face")
    size = _check_size(size)
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.size != 4 or not np.isfinite(b).all():
        raise InputError(f"crop_face: box must be 4 finite numbers [xmin, ymin, xmax, ymax], got {box!r}")
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in b)
    x0, x1 = max(0, min(x0, w)), max(0, min(x1, w))
    y0, y1 = max(0, min(y0, h)), max(0, min(y1, h))
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"crop_face: box {b.tolist()} is empty once clipped to the {w}x{h} image")
    return cv2.resize(img[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_LINEAR)


def align(img: np.ndarray, detection: Any, mode: str = "align", size: int = 112) -> np.ndarray:
    """Align (``"align"``) or crop (``"crop"``) one detected face; ``detection`` is a
    :class:`~facefeat.vision.detector.Detection` or a dict with ``coordinate`` (and ``landmarks``)."""
    if mode not in ALIGN_MODES:
        raise InputError(f"align mode {mode!r} is not supported; use 'align' or 'crop'")
    if isinstance(detection, dict):
        box, lms = detection.get("coordinate", detection.get("box")), detection.get("landmarks")
    else:
        box, lms = getattr(detection, "box", None), getattr(detection, "landmarks", None)
    if mode == "align":
        if lms is None:
            raise InputError("align: mode 'align' needs the face's 5 landmarks; use mode 'crop' for boxes only")
        return align_face(img, lms, size)
    if box is None:
        raise InputError("align: mode 'crop' needs the face's box ('coordinate')")
    return crop_face(img, box, size)


__all__ = ["ALIGN_MODES", "ARCFACE_TEMPLATE", "align", "align_face", "crop_face", "similarity_transform", "template"]
