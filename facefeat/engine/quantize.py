"""int8 quantisation, calibrated on photos or on a gallery's own faces, with an agreement check.

:func:`quantize_model` is ``facefeat quantize``: the fp32 model (a zoo model, or an fp32 model
directory) is quantised by NNCF (:mod:`facefeat.runtime.quantize`) into an int8 model directory.

* ``calib=DIR``: calibration faces from a folder of photos (detected and aligned).
* ``from_index=DIR_OR_URL``: calibration faces are the gallery's own stored crops (spread over its
  people), the model is the gallery's model (its name and weights hash as recorded; naming another
  one is an error), and the int8 model is then checked against the fp32 model on the gallery's own
  same-person and different-person pairs (:mod:`facefeat.engine.quantize_check`). Below the bar
  (:data:`~facefeat.engine.quantize_check.AGREEMENT_BAR`) nothing is written unless ``force``.
  The report is written into the model directory (``quantize.json``); ``facefeat index migrate
  --model DIR`` then moves the gallery to the int8 model.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from facefeat.engine.quantize_check import agreement, check_pairs, gallery_model, passes, read_crops, spread
from facefeat.errors import InputError, QuantizationError
from facefeat.index.persist import open_existing_store
from facefeat.predict.predictor import create_model
from facefeat.runtime.quantize import (
    MIN_CALIBRATION_FACES,
    calibration_faces,
    calibration_paths,
    quantize_faces,
    source_model,
)
from facefeat.utils import atomic_dir, atomic_write_json, json_safe

#: the report written into the int8 model directory
REPORT_FILE = "quantize.json"
CHECK_IMAGES = 1000
MAX_PAIRS = 2000


def quantize_model(model_name: str | None = None, weights: str | os.PathLike | None = None, *,
                   model_dir: str | os.PathLike | None = None, calib: str | os.PathLike | None = None,
                   from_index: str | os.PathLike | None = None, gallery: str | None = None,
                   out_dir: str | os.PathLike, max_images: int = 300, check_images: int = CHECK_IMAGES,
                   max_pairs: int = MAX_PAIRS, force: bool = False, seed: int = 0) -> dict[str, Any]:
    """Quantise a zoo model (or an fp32 model directory) to int8 into ``out_dir``; returns the report.

    Exactly one of ``calib`` (a folder of face photos) and ``from_index`` (a gallery directory or
    ``postgresql://`` URL; ``gallery`` names one in a shared database) gives the calibration faces.
    With ``from_index`` the int8 model's agreement with the fp32 model is checked on the gallery's
    pairs (at most ``check_images`` crops, ``max_pairs`` pairs of each kind) and a model below the
    bar raises :class:`~facefeat.errors.QuantizationError` (nothing written) unless ``force``.
    """
    if (calib is None) == (from_index is None):
        raise InputError("give exactly one source of calibration faces: calib (--calib DIR) or "
                         "from_index (--from-index GALLERY)")
    if int(max_images) < MIN_CALIBRATION_FACES:
        raise InputError(f"max_images must be >= {MIN_CALIBRATION_FACES}, got {max_images}")
    t0 = time.perf_counter()
    if calib is not None:
        src_dir, src_file, src = source_model(model_name, weights, model_dir)
        faces, skipped = calibration_faces(calibration_paths(calib, int(max_images)), src.preprocess,
                                           src.extra.get("face_crop"))
        if len(faces) < MIN_CALIBRATION_FACES:
            raise InputError(f"calibration set {str(calib)!r}: only {len(faces)} usable faces "
                             f"(need >= {MIN_CALIBRATION_FACES}); skipped: {skipped[:5]}")
        with atomic_dir(out_dir) as tmp:
            quantize_faces(src_file, src, faces, tmp, {"calibration": {"from": "images"}})
        return {"model_name": src.model_name, "out_dir": str(out_dir), "source": str(src_dir),
                "calibration_images": len(faces), "skipped": len(skipped),
                "seconds": round(time.perf_counter() - t0, 1)}
    return _from_index(model_name, weights, model_dir, from_index, gallery, out_dir, int(max_images),
                       int(check_images), int(max_pairs), force, seed, t0)


def _from_index(model_name: Any, weights: Any, model_dir: Any, location: Any, gallery: str | None, out_dir: Any,
                max_images: int, check_images: int, max_pairs: int, force: bool, seed: int, t0: float) -> dict:
    store = open_existing_store(location, gallery)
    try:
        where = store.location
        fp32, src_dir, src_file, src, thresholds = gallery_model(store, model_name, weights, model_dir)
        ids, labels = [], []
        for chunk_ids, chunk_labels, *_ in store.load():
            ids += [int(i) for i in chunk_ids]
            labels += [str(lab) for lab in chunk_labels]
        people = len(set(labels))
        calib_ids = spread(ids, labels, max_images)
        check_ids = spread(ids, labels, max(check_images, 2))
        label_of = dict(zip(ids, labels))
        same, diff = check_pairs(check_ids, label_of, max_pairs, seed)
        if len(calib_ids) < MIN_CALIBRATION_FACES or people < 2 or not same or not diff:
            raise InputError(
                f"gallery {where!r} is too small to quantise from: {len(ids)} stored face(s) of {people} "
                f"person(s), {len(same)} same-person and {len(diff)} different-person pair(s); need >= "
                f"{MIN_CALIBRATION_FACES} faces of >= 2 people, one of them with >= 2 faces (or use --calib PHOTOS)")
        size = tuple(int(v) for v in (src.extra.get("face_crop") or {}).get("size", src.preprocess.input_size))
        faces = read_crops(store, sorted(set(calib_ids) | set(check_ids)), size, src.model_name)
    finally:
        store.close()
    with atomic_dir(out_dir) as tmp:
        quantize_faces(src_file, src, [faces[i] for i in calib_ids], tmp,
                       {"calibration": {"from": "gallery", "gallery": where, "images": len(calib_ids)},
                        **({"thresholds": thresholds} if thresholds and "thresholds" not in src.extra else {})})
        int8 = create_model(model_dir=tmp, precision="int8")
        report = agreement(fp32, int8, faces, check_ids, same, diff, thresholds)
        report["passed"] = passes(report)
        doc = {"model_name": src.model_name, "out_dir": str(out_dir), "source": str(src_dir),
               "calibration": {"from": where, "images": len(calib_ids), "people": len({label_of[i] for i in calib_ids})},
               "agreement": report, "forced": bool(force and not report["passed"])}
        if not report["passed"] and not force:
            raise QuantizationError(
                f"int8 model of {src.model_name} disagrees with the fp32 model on gallery {where!r} beyond the bar "
                f"({_summary(report)}); nothing written. Calibrate on more faces (--max-images, --calib PHOTOS) "
                "or write it anyway with --force")
        doc["seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(Path(tmp) / REPORT_FILE, json_safe(doc), indent=2)
    return doc


def _summary(report: dict) -> str:
    return (f"min cosine {report['cosine']['min']:.4f} (bar {report['bar']['min_cosine']}), "
            f"AUC fp32 {report['fp32']['auc']:.4f} / int8 {report['int8']['auc']:.4f}, "
            f"{report['flips']} of {report['pairs']['same'] + report['pairs']['different']} decisions flipped "
            f"at threshold {report['threshold']:.4f}")


def summary_line(doc: dict) -> str:
    """One line for the CLI."""
    if "agreement" not in doc:
        return f"int8 model -> {doc['out_dir']} ({doc['calibration_images']} calibration faces)"
    a = doc["agreement"]
    verdict = "passed" if a["passed"] else "BELOW THE BAR, written with --force"
    return f"int8 model -> {doc['out_dir']}: {_summary(a)}; agreement {verdict}"


__all__ = ["REPORT_FILE", "quantize_model", "summary_line"]
