"""Turn a zoo model + weights into a cached ONNX model directory, once per weights file."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from facefeat.errors import InputError, WeightsError
from facefeat.io.files import file_sha256
from facefeat.registry import ModelSpec, get_spec
from facefeat.runtime.model_dir import META_FILE, MODEL_FILE, ModelMeta, model_file, read_model_dir, write_model_meta
from facefeat.runtime.torch_build import build_torch_model, export_onnx
from facefeat.utils import atomic_dir, cache_dir
from facefeat.weights.facenet import convert_facenet
from facefeat.weights.fused import compose
from facefeat.weights.onnx_import import convert_sface_to_fp32
from facefeat.weights.ref import WeightsRef
from facefeat.weights.resolver import resolve

log = logging.getLogger("facefeat")


@lru_cache(maxsize=64)
def _hash(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)[:16]


def weights_key(path: Path) -> str:
    if Path(path).is_dir():  # a PaddleX inference model: its parameters file identifies it
        path = Path(path) / "inference.pdiparams"
    st = os.stat(path)
    return _hash(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def models_cache_dir() -> Path:
    return cache_dir() / "models"


def prepare_model_dir(spec: ModelSpec, weights: WeightsRef) -> Path:
    """Return a model directory (``inference.onnx`` + ``inference.yml``) for ``spec`` + the
    resolved ``weights``. Its content depends on the weights' bytes only: the calibrated operating
    points that apply to the zoo's default weights are the caller's to add
    (:meth:`facefeat.weights.ref.WeightsRef.is_default`).

    SFace converts its int8bq ONNX to fp32 with numpy + onnx only (no torch). Other models are
    built in PyTorch from their weights and exported once; the result is cached under
    ``$FACEFEAT_HOME/models/<name>-<sha256 of weights>``. A cached directory whose
    ``inference.onnx`` no longer matches its recorded checksum (truncated, corrupted), or that
    has no checksum, is reported with its path and rebuilt.
    """
    path, fmt = weights.path, weights.format
    key = weights_key(path)
    parts = []
    if fmt == "fused":  # the parts' own directories (their default weights), and a key over them and the fusion
        import hashlib
        import json


        parts = [prepare_model_dir(get_spec(name), resolve(None, name)) for name in spec.fusion["models"]]
        blob = json.dumps([p.name for p in parts] + [spec.fusion, spec.face_crop], sort_keys=True)
        key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    out = models_cache_dir() / f"{spec.name}-{key}"
    if model_file(out).is_file() or (out / META_FILE).is_file():
        try:
            _, meta = read_model_dir(out)
            if meta.onnx_sha256:
                return out
            reason = "it has no checksum (written by an older facefeat)"
        except (InputError, WeightsError) as exc:
            reason = str(exc)
        log.warning("model cache %s is unusable, rebuilding it: %s", out, reason)
    meta = ModelMeta.from_spec(spec, weights_sha256_16=key, weights_file=path.name)
    if fmt == "onnx_int8bq":
        with atomic_dir(out) as tmp:
            convert_sface_to_fp32(path, tmp / MODEL_FILE)
            write_model_meta(tmp, meta)
        return out
    if fmt in ("tf_facenet", "fused"):  # converted / composed by OpenVINO: stored as IR
        with atomic_dir(out) as tmp:
            if fmt == "tf_facenet":
                convert_facenet(path, tmp)
            else:
                compose([model_file(p) for p in parts], spec.face_crop["regions"], spec.face_crop["size"],
                        spec.fusion, tmp)
            write_model_meta(tmp, meta)
        return out
    if not spec.arch:
        raise WeightsError(f"{spec.name}: weights of format {fmt!r} cannot be built into this model")

    model = build_torch_model(spec, weights)
    return export_onnx(model, meta, out)


def zoo_model_dir(spec: ModelSpec, weights: WeightsRef) -> tuple[Path, Path, ModelMeta]:
    """``(model dir, its ONNX file, its meta)`` for ``spec`` + ``weights`` (see
    :func:`prepare_model_dir`); the meta carries ``spec``'s calibrated operating points when, and
    only when, the weights are its default ones (decided by the reference's kind)."""
    mdir = prepare_model_dir(spec, weights)
    onnx_path, meta = read_model_dir(mdir)
    calibrated = weights.calibration(spec)
    meta.extra.pop("thresholds", None)  # a cache made by an older facefeat may hold them
    if calibrated:
        meta.extra["thresholds"] = calibrated
    return mdir, onnx_path, meta


def no_int8_build(spec: ModelSpec) -> str:
    """What to do when ``precision="int8"`` is asked of a zoo model: the zoo ships no int8 builds
    (int8 needs calibration faces, and the user's own make the best ones)."""
    slug = spec.name.lower().replace("+", "-")
    return (f"precision='int8': the zoo has no int8 build of {spec.name}; make one (pip install "
            f"'facefeat[quantize]') from about 300 photos of faces (a folder, searched recursively; faces are "
            f"detected and aligned): facefeat quantize --model {spec.name} --calib PHOTOS_DIR --out {slug}-int8 ; "
            f"or from a gallery's own faces, checked against the fp32 model on its pairs: facefeat quantize "
            f"--from-index GALLERY_DIR_OR_URL --out {slug}-int8 ; then create_model(model_dir='{slug}-int8') "
            f"(CLI: --model-dir {slug}-int8)")
