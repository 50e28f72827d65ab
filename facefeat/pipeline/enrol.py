"""Enrolment of people into a gallery, image by image, with partial success.

:func:`enroll` takes ``(image, person)`` items (or :func:`folder_items` of a ``gallery/<name>/*.jpg``
folder) through the one enrolment path (:meth:`FaceRecognitionPipeline.gallery_features`, then
:func:`add_gallery`), and for each image: reads it, detects the face (with retries, see
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
from facefeat.index.enrolment import add_gallery
from facefeat.index.store import SampleRecord, content_hash
from facefeat.results import BaseResult
from facefeat.vision.quality import get_policy

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class EnrolReport(BaseResult):
    """``{"policy", "added": [{"id", "label", "path", "quality"}], "rejected": [{"path", "label", "reason"}],
    "duplicates": [{"id", "label", "path"}]}`` (a duplicate: the same image already enrolled for that person)."""

    default_stem = "enrol"


def folder_items(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """``(image path, person)`` for every image of ``folder/<person>/``, sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"gallery folder {str(folder)!r} is not a directory")
    items = [(str(f), d.name) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
             for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES
             and not (f.is_dir() and not f.is_symlink())]  # FIFOs, loops: reading rejects them
    if not items:
        raise InputError(f"gallery folder {root} has no <person>/<image> files ({', '.join(IMAGE_SUFFIXES)})")
    return items


CROP_JPEG_QUALITY = 95


def weights_hash(predictor: Any) -> str | None:
    """The hash of the weights a predictor embeds with (what the gallery records per sample)."""
    try:
        info = predictor.runtime_info() if predictor is not None else {}
    except Exception:  # noqa: BLE001 - a predictor without runtime_info
        return None
    return info.get("weights_sha256") or info.get("model_sha256")


def sample_record(img: np.ndarray, face: np.ndarray, det: Any, figures: Mapping | None = None,
                  path: Mapping | None = None, weights: str | None = None):
    """What the gallery keeps of one enrolled image: the aligned crop (JPEG), the detection, the
    content hash of the decoded image, the figures, and the hash of the weights that embed it."""
    import cv2

    ok, buf = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
    fig = dict(figures or {})
    if path is not None and path.get("path") not in (None, "default", "none"):
        fig["detected_by"] = dict(path)
    return SampleRecord(crop=buf.tobytes() if ok else None, figures=fig or None, det=det.to_dict(),
                        content_hash=content_hash(img), weights_hash=weights)


def enroll(pipe, people, items: Iterable[tuple[Any, str]], quality: str | Mapping | Any = "standard",
           strict: bool = False, batch: int = 16) -> EnrolReport:
    """Enrol ``(image, person)`` items into ``people`` (a :class:`~facefeat.index.people.People`):
    :meth:`~facefeat.pipeline.face_recognition.FaceRecognitionPipeline.gallery_features` with the
    quality policy, then :func:`add_gallery`, ``batch`` images at a time."""
    policy = get_policy(quality)
    people.index.check_model(pipe.predictor.model_name, pipe.predictor.embedding_size)
    report = EnrolReport(policy=policy.name, added=[], rejected=[], duplicates=[])
    items = list(items)
    for s in range(0, len(items), batch):
        chunk = items[s:s + batch]
        names = [src if isinstance(src, str) else f"image[{s + n}]" for n, (src, _) in enumerate(chunk)]
        g = pipe.gallery_features([src for src, _ in chunk], [str(lab) for _, lab in chunk], strict=strict,
                                  quality=policy)
        for r in g.rejected:
            report["rejected"].append({"path": names[r.index], "label": r.label, "reason": r.reason})
        res = add_gallery(people.index, g)
        dup = set(res.duplicates)
        for p, (i, label, pos) in enumerate(zip(res.ids, g.labels, g.positions)):
            row = {"id": i, "label": label, "path": names[pos]}
            if p in dup:
                report["duplicates"].append(row)
            else:
                report["added"].append({**row, **(g.figures[p] if g.figures else {})})
    return report


__all__ = ["EnrolReport", "add_gallery", "enroll", "folder_items", "sample_record", "weights_hash"]
