"""1:1 verification: are these two faces the same person?

Each side is an image (anything :func:`facefeat.io.read_image` reads), a face feature (a 1-D
vector of the model's dimension), or, for the second side, a person of a gallery index
(``person="label"``: the best score over that person's samples). In an image with several faces
the photo's subject is used (:mod:`facefeat.vision.choice`) and the others are reported.

The flip test (each face's feature is the mean of the crop's and its mirror's) is on by default
between two images (:data:`VERIFY_FLIP`): measured on LFW's 6,000 pairs with SFace it gives 99.15 %
instead of 99.03 %, for two more embeddings per call, and leaves the impostor scores' distribution as
it was (mean 0.079, deviation 0.091), so the calibrated thresholds hold. Against a gallery person it
follows the pipeline's ``flip`` (galleries are enrolled without it; a flipped probe against plain
samples measured 99.00 %, no gain). Searching (``predict``, video, clustering) and enrolment keep
``flip=False`` by default: flipping one side gains nothing and flipping both doubles the cost of
every query. ``flip=False`` / ``True`` on the call decides it explicitly. The threshold is the model's calibrated 1:1
operating point (``far=1e-3`` by default, see :mod:`facefeat.thresholds`) unless a number is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facefeat.errors import InputError
from facefeat.index.people import People
from facefeat.index.resolve import resolve_index
from facefeat.results import BaseResult
from facefeat.thresholds import is_match
from facefeat.utils import l2_normalize


#: the flip test between two images (see the module doc); None on a call means this
VERIFY_FLIP = True


class VerifyResult(BaseResult):
    """``{"verified", "score", "threshold", "far", "operating_point", "faces": [side 1, side 2]}``."""

    default_stem = "verify"


def _is_feature(x: Any, dim: int) -> bool:
    if isinstance(x, np.ndarray):
        return x.ndim == 1 or (x.ndim == 2 and x.shape[0] == 1 and x.shape[1] == dim)
    return isinstance(x, (list, tuple)) and len(x) == dim and all(
        isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) for v in x)


def _side(pipe, x: Any, what: str, det_threshold: float | None, flip: bool | None) -> tuple[np.ndarray, dict]:
    """(unit feature, description) of one side."""
    dim = pipe.predictor.embedding_size
    if _is_feature(x, dim):
        f = np.asarray(x, np.float32).reshape(1, -1)
        if f.shape[1] != dim or not np.all(np.isfinite(f)) or not np.any(f):
            raise InputError(f"{what}: a feature must be {dim} finite numbers, not all zero (got shape {f.shape})")
        return l2_normalize(f)[0], {"input": "feature"}
    faces = pipe.embed(x, det_threshold=det_threshold, flip=flip, retry=True, quality=True)
    if faces and isinstance(faces[0], list):
        raise InputError(f"{what}: give one image, not {len(faces)}")
    name = x if isinstance(x, str) else type(x).__name__
    usable = [f for f in faces if f.get("feature") is not None]
    if not usable:
        why = "no face detected" if not faces else f"{len(faces)} face(s), all too small to align"
        raise InputError(f"{what} ({name}): {why}; use a photo with a visible face")
    face = usable[0]  # the photo's subject (facefeat.vision.choice)
    desc = {"input": name, "coordinate": face["coordinate"], "det_score": face["det_score"],
            "landmarks": face["landmarks"],
            "other_faces": [{"coordinate": f["coordinate"], "det_score": f["det_score"]} for f in faces if f is not face]}
    for k in ("detected_by", "quality"):
        if k in face:
            desc[k] = face[k]
    return np.asarray(face["feature"], np.float32), desc


def verify(pipe, img1: Any, img2: Any = None, *, person: str | None = None, index: Any = None,
           rec_threshold: float | str | None = None, far: float | None = None,
           det_threshold: float | None = None, flip: bool | None = None,
           names: tuple[str, str] = ("img1", "img2")) -> VerifyResult:
    """Verify ``img1`` against ``img2``, or against gallery ``person`` of ``index``; ``names``: what
    errors call the two sides (e.g. a service's request fields)."""
    if (img2 is None) == (person is None):
        raise InputError("verify: give a second image/feature, or person= (a label in the gallery index), not both")
    if flip is None and person is None:
        flip = VERIFY_FLIP
    f1, d1 = _side(pipe, img1, names[0], det_threshold, flip)
    if person is not None:
        index = pipe.index if index is None else resolve_index(index)  # a directory, as predict takes
        if index is None:
            raise InputError("verify(person=...) needs a gallery index (index=...)")
        index.check_model(pipe.predictor.model_name, pipe.predictor.embedding_size)
        hit, count = People(index).best_match(f1, person)
        score = float(hit.score)
        d2 = {"input": "person", "person": person, "sample_id": hit.id, "samples": count}
        metric = index.metric_type
    else:
        f2, d2 = _side(pipe, img2, names[1], det_threshold, flip)
        score = float(f1 @ f2)
        metric, index = "IP", None
    # in the score's unit: a person's score from an L2 index is a squared distance
    thr, op = pipe.operating_point("verify", rec_threshold, far, None, index)
    verified = is_match(score, thr, metric)
    return VerifyResult(verified=bool(verified), score=round(score, 6), threshold=round(float(thr), 6),
                        far=(op.get("measured") or {}).get("far"), operating_point=op, faces=[d1, d2])


__all__ = ["VERIFY_FLIP", "VerifyResult", "verify"]
