"""Enrolment of people into a gallery, image by image, with partial success.

:func:`enroll` takes ``(image, person)`` items (or :func:`folder_items` of a ``gallery/<name>/*.jpg``
folder), and for each image: reads it, detects the face (with retries, see
:meth:`FaceRecognitionPipeline.detect_retry`), applies the gallery rule (one face, or a face at
least ``GALLERY_DOMINANCE`` times larger than the next), measures its quality
(:mod:`facefeat.vision.quality`) and judges it by the policy. Accepted faces are embedded and
added to the person with their quality figures; every other image is listed with its reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from facefeat.errors import InputError
from facefeat.results import BaseResult

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class EnrolReport(BaseResult):
    """``{"policy", "added": [{"id", "label", "path", "quality"}], "rejected": [{"path", "label", "reason"}]}``."""

    default_stem = "enrol"


def folder_items(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """``(image path, person)`` for every image of ``folder/<person>/``, sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"gallery folder {str(folder)!r} is not a directory")
    items = [(str(f), d.name) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
             for f in sorted(d.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise InputError(f"gallery folder {root} has no <person>/<image> files ({', '.join(IMAGE_SUFFIXES)})")
    return items


def enroll(pipe, people, items: Iterable[tuple[Any, str]], quality: str | Mapping | Any = "standard",
           strict: bool = False, batch: int = 16) -> EnrolReport:
    """Enrol ``(image, person)`` items into ``people`` (a :class:`~facefeat.index.people.People`)."""
    from facefeat.io import read_image
    from facefeat.pipeline.face_recognition import is_dominant
    from facefeat.vision.quality import face_quality, get_policy

    policy = get_policy(quality)
    people.index.check_model(pipe.predictor.model_name, pipe.predictor.embedding_size)
    report = EnrolReport(policy=policy.name, added=[], rejected=[])
    pending: list[tuple[np.ndarray, str, str, dict]] = []

    def reject(name: str, label: str, reason: str) -> None:
        if strict:
            raise InputError(f"enrolment image {name} ({label}): {reason}")
        report["rejected"].append({"path": name, "label": label, "reason": reason})

    def flush() -> None:
        if not pending:
            return
        feats = pipe.predictor.embed([p[0] for p in pending], pipe.flip)
        for f, (_, label, name, fig) in zip(feats, pending):
            (i,) = people.add(label, f[None], [name], [fig])
            report["added"].append({"id": i, "label": label, "path": name, **fig})
        pending.clear()

    for n, (src, label) in enumerate(items):
        name = src if isinstance(src, str) else f"image[{n}]"
        if not isinstance(label, str) or not label.strip():
            reject(name, str(label), f"person label {label!r} must be a non-empty string")
            continue
        try:
            img = read_image(src, name)
        except InputError as exc:
            reject(name, label, str(exc))
            continue
        dets, path = pipe.detect_retry(img)
        usable = [d for d in dets if not d.too_small]
        if not usable:
            reject(name, label, "no face detected" if not dets else "face too small to align")
            continue
        if not is_dominant([d.box for d in usable]):  # usable[0]: the subject (vision.choice)
            reject(name, label, f"{len(usable)} faces of similar size; cannot tell which is {label!r}")
            continue
        face = pipe.align(img, usable[0])
        q = face_quality(pipe.face_view(face), usable[0])
        why = policy.reasons(q)
        if why:
            reject(name, label, "quality: " + "; ".join(why))
            continue
        fig = {"quality": q}
        if path["path"] != "default":
            fig["detected_by"] = path
        pending.append((face, label, name, fig))
        if len(pending) >= batch:
            flush()
    flush()
    return report


__all__ = ["EnrolReport", "enroll", "folder_items"]
