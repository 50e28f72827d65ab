"""Pipelines built on the face feature module."""

from __future__ import annotations

import os
from typing import Any, Mapping

from facefeat.pipeline.face_recognition import FaceRecognitionPipeline
from facefeat.pipeline.result import FaceRecResult

PIPELINES = {"face_recognition": FaceRecognitionPipeline}

__all__ = ["FaceRecResult", "FaceRecognitionPipeline", "create_pipeline"]


def create_pipeline(pipeline: str | os.PathLike | None = None, *, config: Mapping | None = None,
                    device: str | None = None, **kwargs: Any) -> FaceRecognitionPipeline:
    """Create a pipeline as PaddleX does: by name (``"face_recognition"``: the shipped
    ``facefeat/configs/face_recognition.yaml``), from a YAML file, or from ``config=dict``.

    ``device`` and other keyword arguments (the :class:`FaceRecognitionPipeline` arguments: ``model``,
    ``weights``, ``model_dir``, ``index``, ``det_threshold``, ...) override the config.
    """
    from facefeat.config import load_pipeline_config

    if pipeline is None and config is None:
        pipeline = "face_recognition"
    cfg = load_pipeline_config(pipeline, config)
    return PIPELINES[cfg["pipeline_name"]].from_config(cfg, device=device, **kwargs)
