"""Pipelines built on the face feature module."""

from __future__ import annotations

from typing import Any

from facefeat.errors import InputError
from facefeat.pipeline.face_recognition import FaceRecognitionPipeline
from facefeat.pipeline.result import FaceRecResult

PIPELINES = {"face_recognition": FaceRecognitionPipeline}

__all__ = ["FaceRecResult", "FaceRecognitionPipeline", "create_pipeline"]


def create_pipeline(name: str = "face_recognition", **kwargs: Any) -> FaceRecognitionPipeline:
    """Create a pipeline by name (``"face_recognition"``); kwargs go to its constructor."""
    if name not in PIPELINES:
        raise InputError(f"unknown pipeline {name!r}; available: {', '.join(PIPELINES)}")
    return PIPELINES[name](**kwargs)
