"""The exported inference model directory: ``inference.onnx`` + ``inference.yml``.

``inference.yml`` keeps PaddleX's sections (``Global.model_name``, ``PreProcess``,
``PostProcess``) for familiarity and adds a ``facefeat`` block that is the source of truth:
model name, embedding size, preprocessing, the weights' precision (``fp32`` or ``int8``) and the
SHA-256 of ``inference.onnx``, checked on every load so a truncated or corrupted file is caught
(and, for the zoo cache, rebuilt) instead of failing deep in a runtime or giving NaN features.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from facefeat.errors import InputError, WeightsError
from facefeat.runtime.preprocess import HasPreprocess, Preprocess
from facefeat.utils import atomic_write_text

if TYPE_CHECKING:
    from facefeat.registry import ModelSpec

MODEL_FILE = "inference.onnx"
#: a model OpenVINO converted from another framework (FaceNet's TensorFlow graph) is stored as IR
IR_FILE = "inference.xml"
META_FILE = "inference.yml"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "int8")
_CORE_KEYS = {"format_version", "model_name", "embedding_size", "input_size", "channel_order", "mean", "std",
              "normalize_in_graph", "precision", "onnx_sha256"}


@dataclass
class ModelMeta(HasPreprocess):
    """What a runtime needs to know about an exported model."""

    model_name: str
    embedding_size: int
    preprocess: Preprocess = Preprocess()
    precision: str = "fp32"  # of the stored weights: "fp32" or "int8" (quantised, QDQ)
    onnx_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: "ModelSpec", **extra: Any) -> "ModelMeta":
        own = {k: v for k, v in (("face_crop", spec.face_crop), ("fusion", spec.fusion)) if v}
        return cls(model_name=spec.name, embedding_size=spec.embedding_size, preprocess=spec.preprocess,
                   extra={**own, **extra})

    def to_yaml_dict(self) -> dict[str, Any]:
        pp = self.preprocess
        h, w = pp.input_size
        scale = [1.0 / s for s in pp.std]
        return {
            "Global": {"model_name": self.model_name},
            "PreProcess": {
                "transform_ops": [
                    {"ResizeImage": {"size": [w, h], "interpolation": "bilinear", "backend": "cv2"}},
                    {"NormalizeImage": {"mean": list(pp.mean), "scale": scale, "order": "hwc"}},
                    {"ToCHWImage": None},
                ]
            },
            "PostProcess": {"NormalizeFeatures": None},
            "facefeat": {
                "format_version": FORMAT_VERSION,
                "model_name": self.model_name,
                "embedding_size": int(self.embedding_size),
                "input_size": [int(h), int(w)],
                "channel_order": pp.channel_order,
                "mean": [float(m) for m in pp.mean],
                "std": [float(s) for s in pp.std],
                "normalize_in_graph": bool(pp.normalize_in_graph),
                "precision": self.precision,
                **({"onnx_sha256": self.onnx_sha256} if self.onnx_sha256 else {}),
                **self.extra,
            },
        }


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    from facefeat.io.files import file_sha256

    return file_sha256(path)


def onnx_sha256(path: str | Path) -> str:
    """SHA-256 of a model file, computed once per (path, size, mtime) in a process; for OpenVINO IR
    (``.xml``) that of the ``.xml`` and its ``.bin`` (the weights) together."""
    st = os.stat(path)
    digest = _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if Path(path).suffix == ".xml":
        import hashlib

        return hashlib.sha256((digest + onnx_sha256(Path(path).with_suffix(".bin"))).encode()).hexdigest()
    return digest


def model_file(model_dir: str | Path) -> Path:
    """The model file of a directory: ``inference.onnx``, else OpenVINO IR ``inference.xml``."""
    d = Path(model_dir)
    return d / IR_FILE if not (d / MODEL_FILE).is_file() and (d / IR_FILE).is_file() else d / MODEL_FILE


def write_model_meta(model_dir: str | Path, meta: ModelMeta) -> Path:
    """Write ``inference.yml``, recording the checksum of the ``inference.onnx`` beside it."""
    onnx_path = model_file(model_dir)
    if onnx_path.is_file():
        meta.onnx_sha256 = onnx_sha256(onnx_path)
    return atomic_write_text(Path(model_dir) / META_FILE, yaml.safe_dump(meta.to_yaml_dict(), sort_keys=False))


def read_model_dir(model_dir: str | Path, verify: bool = True) -> tuple[Path, ModelMeta]:
    """Validate an exported model directory and return ``(onnx path, meta)``.

    With ``verify``, an ``inference.onnx`` whose SHA-256 differs from the one recorded in
    ``inference.yml`` raises :class:`WeightsError` naming the file (directories written before
    checksums were recorded are accepted as they are).
    """
    d = Path(model_dir)
    if not d.is_dir():
        raise InputError(f"model_dir {str(model_dir)!r} is not a directory")
    onnx_path, meta_path = model_file(d), d / META_FILE
    for p in (onnx_path, meta_path):
        if not p.is_file():
            raise InputError(
                f"model_dir {str(model_dir)!r} has no {p.name}; export a model with "
                "'facefeat export' (or train one) to create it"
            )
    if onnx_path.suffix == ".xml" and not onnx_path.with_suffix(".bin").is_file():
        raise InputError(f"model_dir {str(model_dir)!r} has {IR_FILE} but not its weights file "
                         f"{onnx_path.with_suffix('.bin').name}; delete the directory to rebuild it")
    try:
        doc = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
        ff = doc["facefeat"]
        meta = ModelMeta(
            model_name=str(ff["model_name"]),
            embedding_size=int(ff["embedding_size"]),
            preprocess=Preprocess.from_dict(ff),
            precision=str(ff.get("precision", "fp32")),
            onnx_sha256=ff.get("onnx_sha256"),
            extra={k: v for k, v in ff.items() if k not in _CORE_KEYS},
        )
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{meta_path}: not a valid facefeat inference.yml ({exc!r})") from exc
    if meta.precision not in PRECISIONS:
        raise InputError(f"{meta_path}: precision must be one of {PRECISIONS}, got {meta.precision!r}")
    if verify and meta.onnx_sha256 and onnx_sha256(onnx_path) != meta.onnx_sha256:
        raise WeightsError(
            f"{onnx_path}: file is corrupted or truncated ({onnx_path.stat().st_size} bytes; its SHA-256 "
            f"differs from the one recorded in {META_FILE}); re-export the model (a zoo model's cache "
            "directory is rebuilt automatically)"
        )
    return onnx_path, meta
