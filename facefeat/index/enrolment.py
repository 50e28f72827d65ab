"""The one way enrolled faces enter a gallery (the pipeline's enrolment, the CLI, the service and
corrections all call :func:`add_gallery`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from facefeat.index.base import AddResult


def add_gallery(index: Any, g: Any) -> AddResult:
    """The one way enrolled images enter a gallery: ``g`` (a
    :class:`~facefeat.pipeline.face_recognition.GalleryFeatures`) added to ``index`` with its
    records; returns the :class:`~facefeat.index.base.AddResult` (duplicates reported, not added)."""
    if not g.labels:
        return AddResult([])
    index.check_model(*_model_of(index, g))
    return index.add_samples(g.features, g.labels, g.names, g.records)


def _model_of(index: Any, g: Any) -> tuple:
    return index.model_name, int(np.asarray(g.features).shape[1])


__all__ = ["add_gallery"]
