"""Draw recognised faces onto an image with OpenCV: box, caption on a filled background, landmarks.

A face is a dict in PaddleX's face-recognition result style::

    {"coordinate": [xmin, ymin, xmax, ymax],
     "labels": ["Alice", ...], "rec_scores": [0.83, ...],   # top-k, best first; may be empty/None
     "det_score": 0.92, "landmarks": [[x, y] * 5]}          # optional

(``"label"``/``"score"`` are accepted for a single top-1 too.) The caption is the top-1 label and
its score, or ``Unknown`` when there is no label. OpenCV's Hershey fonts only hold ASCII, so other
characters in labels are drawn as ``?``.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import cv2
import numpy as np

from facefeat.errors import InputError

UNKNOWN = "Unknown"
_UNKNOWN_COLOR = (128, 128, 128)
_LANDMARK_COLORS = ((0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255))
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_color(label: str | None) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per label (gray for unknown)."""
    if not label:
        return _UNKNOWN_COLOR
    h = int(hashlib.md5(label.encode("utf-8")).hexdigest()[:4], 16) % 180
    hsv = np.uint8([[[h, 200, 230]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _top1(face: dict) -> tuple[str | None, float | None]:
    labels = face.get("labels")
    scores = face.get("rec_scores")
    if labels is None and "label" in face:
        labels = [face.get("label")]
        scores = [face.get("score")] if face.get("score") is not None else None
    if isinstance(labels, str):
        labels = [labels]
    if isinstance(scores, (int, float, np.floating)):
        scores = [scores]
    label = labels[0] if labels else None
    score = scores[0] if scores is not None and len(scores) else None
    if label is None or (isinstance(label, str) and not label.strip()):
        return None, None
    return str(label), (None if score is None else float(score))


def caption(face: dict) -> str:
    label, score = _top1(face)
    if label is None:
        return UNKNOWN
    text = label if score is None else f"{label} {score:.2f}"
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def draw_faces(img: np.ndarray, faces: Sequence[dict], thickness: int | None = None) -> np.ndarray:
    """A copy of ``img`` (BGR uint8) with every face's box, caption and landmarks drawn."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise InputError(f"draw_faces: expected a BGR uint8 image, got {getattr(img, 'shape', type(img).__name__)}")
    out = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[:, :, :3].copy()
    out = np.ascontiguousarray(out)
    h, w = out.shape[:2]
    base = max(1, round(min(h, w) / 300)) if thickness is None else max(1, int(thickness))
    font_scale = max(0.4, 0.5 * base)
    for i, face in enumerate(faces or []):
        if not isinstance(face, dict) or face.get("coordinate") is None:
            raise InputError(f"draw_faces: face #{i} must be a dict with a 'coordinate' [xmin, ymin, xmax, ymax]")
        box = np.asarray(face["coordinate"], dtype=np.float64).reshape(-1)
        if box.size != 4 or not np.isfinite(box).all():
            raise InputError(f"draw_faces: face #{i} has a bad coordinate {face['coordinate']!r}")
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        label, _ = _top1(face)
        color = label_color(label)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, base, cv2.LINE_AA)

        text = caption(face)
        (tw, th), baseline = cv2.getTextSize(text, _FONT, font_scale, base)
        pad = 2 * base
        ty = y0 - pad - baseline  # text baseline above the box, or inside it at the image top
        if ty - th - pad < 0:
            ty = y0 + th + pad
        tx = min(max(x0, 0), max(0, w - tw - 2 * pad))
        cv2.rectangle(out, (tx, ty - th - pad), (tx + tw + 2 * pad, ty + baseline + pad // 2), color, cv2.FILLED)
        luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
        text_color = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        cv2.putText(out, text, (tx + pad, ty), _FONT, font_scale, text_color, base, cv2.LINE_AA)

        lms = face.get("landmarks")
        if lms is not None:
            pts = np.asarray(lms, dtype=np.float64).reshape(-1, 2)
            for j, (px, py) in enumerate(pts):
                if np.isfinite(px) and np.isfinite(py):
                    cv2.circle(out, (int(round(px)), int(round(py))), max(1, base + 1),
                               _LANDMARK_COLORS[j % len(_LANDMARK_COLORS)], cv2.FILLED, cv2.LINE_AA)
    return out


__all__ = ["UNKNOWN", "caption", "draw_faces", "label_color"]
