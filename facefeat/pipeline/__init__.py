"""Pipelines built on the face feature module."""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

from facefeat.config import load_pipeline_config
from facefeat.pipeline.face_recognition import FaceRecognitionPipeline
from facefeat.pipeline.result import FaceRecResult

PIPELINES = {"face_recognition": FaceRecognitionPipeline}

__all__ = ["FaceRecResult", "FaceRecognitionPipeline", "create_pipeline"]


def create_pipeline(pipeline: str | os.PathLike | None = None, *, config: Mapping | None = None,
                    device: str | None = None, engine: Any = None, engine_config: Any = None,
                    pp_option: Any = None, use_hpip: Any = None, hpi_config: Any = None,
                    **kwargs: Any) -> FaceRecognitionPipeline:
    """Create a pipeline as PaddleX does: by name (``"face_recognition"``: the shipped
    ``facefeat/configs/face_recognition.yaml``), from a YAML file, or from ``config=dict``.

    ``device`` and other keyword arguments (the :class:`FaceRecognitionPipeline` arguments: ``model``,
    ``weights``, ``model_dir``, ``index``, ``det_threshold``, ...) override the config. PaddleX's
    ``engine``, ``engine_config``, ``pp_option``, ``use_hpip`` and ``hpi_config`` are accepted and
    ignored (logged).
    """
    paddle_only = {"engine": engine, "engine_config": engine_config, "pp_option": pp_option,
                   "use_hpip": use_hpip, "hpi_config": hpi_config}
    for name, value in paddle_only.items():
        if value not in (None, False):
            logging.getLogger("facefeat").info("create_pipeline: %s is a PaddleX option facefeat does not use; "
                                               "ignored", name)

    if pipeline is None and config is None:
        pipeline = "face_recognition"
    cfg = load_pipeline_config(pipeline, config)
    return PIPELINES[cfg["pipeline_name"]].from_config(cfg, device=device, **kwargs)
