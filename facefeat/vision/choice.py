"""The face-choice rule: which detected face a photo is "of" (embed, verify, enrolment alike).

The subject is **the largest face whose box contains the image centre; without one, the largest
face**. Single-subject photos are framed on their subject (LFW's crops, ID photos, selfies): a
bigger face near the edge is someone else. In a group photo no box holds the centre, so the
largest face stands for the photo; enrolment then still asks it to dominate (:func:`is_dominant`,
the gallery rule). Faces too small to align are never the subject while a usable one exists.

:func:`order_faces` puts the subject first and the rest largest first: ``pipe.embed``'s first face,
``verify``'s face and the enrolled face are the same one.
"""

from __future__ import annotations

from typing import Any, Sequence

#: the gallery rule: a photo's subject stands for it when its box is at least this many times the
#: area of every other usable face (a portrait with faces in the background)
GALLERY_DOMINANCE = 2.0


def _box(d: Any) -> Sequence[float]:
    return d["coordinate"] if isinstance(d, dict) else d.box


def _area(b: Sequence[float]) -> float:
    return max(0.0, float(b[2]) - float(b[0])) * max(0.0, float(b[3]) - float(b[1]))


def subject_key(d: Any, width: int, height: int) -> tuple[bool, bool, float]:
    """Sort key, highest is the subject: usable, box holds the centre, area."""
    b = _box(d)
    cx, cy = width / 2.0, height / 2.0
    holds = b[0] <= cx <= b[2] and b[1] <= cy <= b[3]
    small = d.get("too_small", False) if isinstance(d, dict) else getattr(d, "too_small", False)
    return (not small, holds, _area(b))


def order_faces(dets: Sequence[Any], width: int, height: int) -> list:
    """The faces with the subject first, then the others largest first (a stable order)."""
    dets = list(dets)
    if not dets:
        return dets
    first = max(range(len(dets)), key=lambda i: subject_key(dets[i], width, height))
    rest = sorted((d for i, d in enumerate(dets) if i != first), key=lambda d: (
        not (d.get("too_small", False) if isinstance(d, dict) else getattr(d, "too_small", False)), _area(_box(d))),
        reverse=True)
    return [dets[first]] + rest


def is_dominant(boxes: Sequence[Sequence[float]]) -> bool:
    """The gallery rule: the first of a photo's usable face ``boxes`` (its subject, see
    :func:`order_faces`) stands for the photo when it is alone or at least
    :data:`GALLERY_DOMINANCE` times the area of every other one."""
    return len(boxes) == 1 or _area(boxes[0]) >= GALLERY_DOMINANCE * max(_area(b) for b in boxes[1:])


def choose_face(dets: Sequence[Any], width: int, height: int) -> Any | None:
    """The subject of a photo (see the module docstring), or None without detections."""
    return order_faces(dets, width, height)[0] if dets else None


__all__ = ["GALLERY_DOMINANCE", "choose_face", "is_dominant", "order_faces", "subject_key"]
