"""The exported inference model directory: ``inference.onnx`` + ``inference.yml``.

``inference.yml`` keeps PaddleX's sections (``Global.model_name``, ``PreProcess``,
``PostProcess``) for familiarity and adds a ``facefeat`` block that is the source of truth:
model name, embedding size and preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facefeat.errors import InputError
from facefeat.registry import ModelSpec
from facefeat.utils import atomic_write_text

MODEL_FILE = "inference.onnx"
META_FILE = "inference.yml"
FORMAT_VERSION = 1


@dataclass
class ModelMeta:
    """What a runtime needs to know about an exported model."""

    model_name: str
    embedding_size: int
    input_size: tuple[int, int] = (112, 112)
    channel_order: str = "RGB"
    mean: tuple[float, ...] = (127.5, 127.5, 127.5)
    std: tuple[float, ...] = (127.5, 127.5, 127.5)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: ModelSpec, **extra: Any) -> "ModelMeta":
        return cls(
            model_name=spec.name,
            embedding_size=spec.embedding_size,
            input_size=tuple(spec.input_size),
            channel_order=spec.channel_order,
            mean=tuple(spec.mean),
            std=tuple(spec.std),
            extra=dict(extra),
        )

    def to_yaml_dict(self) -> dict[str, Any]:
        h, w = self.input_size
        scale = [1.0 / s for s in self.std]
        return {
            "Global": {"model_name": self.model_name},
            "PreProcess": {
                "transform_ops": [
                    {"ResizeImage": {"size": [w, h], "interpolation": "bilinear", "backend": "cv2"}},
                    {"NormalizeImage": {"mean": list(self.mean), "scale": scale, "order": "hwc"}},
                    {"ToCHWImage": None},
                ]
            },
            "PostProcess": {"NormalizeFeatures": None},
            "facefeat": {
                "format_version": FORMAT_VERSION,
                "model_name": self.model_name,
                "embedding_size": int(self.embedding_size),
                "input_size": [int(h), int(w)],
                "channel_order": self.channel_order,
                "mean": [float(m) for m in self.mean],
                "std": [float(s) for s in self.std],
                **self.extra,
            },
        }


def write_model_meta(model_dir: str | Path, meta: ModelMeta) -> Path:
    return atomic_write_text(Path(model_dir) / META_FILE, yaml.safe_dump(meta.to_yaml_dict(), sort_keys=False))


def read_model_dir(model_dir: str | Path) -> tuple[Path, ModelMeta]:
    """Validate an exported model directory and return ``(onnx path, meta)``."""
    d = Path(model_dir)
    if not d.is_dir():
        raise InputError(f"model_dir {str(model_dir)!r} is not a directory")
    onnx_path, meta_path = d / MODEL_FILE, d / META_FILE
    for p in (onnx_path, meta_path):
        if not p.is_file():
            raise InputError(
                f"model_dir {str(model_dir)!r} has no {p.name}; export a model with "
                "'facefeat export' (or train one) to create it"
            )
    try:
        doc = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
        ff = doc["facefeat"]
        meta = ModelMeta(
            model_name=str(ff["model_name"]),
            embedding_size=int(ff["embedding_size"]),
            input_size=tuple(int(v) for v in ff["input_size"]),
            channel_order=str(ff.get("channel_order", "RGB")),
            mean=tuple(float(v) for v in ff["mean"]),
            std=tuple(float(v) for v in ff["std"]),
            extra={k: v for k, v in ff.items() if k not in {
                "model_name", "embedding_size", "input_size", "channel_order", "mean", "std"}},
        )
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{meta_path}: not a valid facefeat inference.yml ({exc!r})") from exc
    return onnx_path, meta
