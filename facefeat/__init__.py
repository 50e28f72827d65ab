"""facefeat: face image -> discriminative, L2-normalised embedding; models, training, pipeline, serving.

The public surface::

    from facefeat import create_model, create_pipeline, list_models
    model = create_model("SFace")
    for res in model.predict("face.jpg"):
        res.print()
"""

from __future__ import annotations

from typing import Any

from facefeat.errors import FacefeatError
from facefeat.registry import get_spec, list_models

__version__ = "0.1.0"

__all__ = ["FacefeatError", "__version__", "create_model", "create_pipeline", "get_spec", "list_models"]


def create_model(*args: Any, **kwargs: Any):
    """Create a face feature predictor; see :func:`facefeat.predict.predictor.create_model`."""
    from facefeat.predict.predictor import create_model as _create

    return _create(*args, **kwargs)




def create_pipeline(pipeline: Any = None, **kwargs: Any):
    """Create a pipeline by name, YAML file or ``config=dict``; see :func:`facefeat.pipeline.create_pipeline`."""
    from facefeat.pipeline import create_pipeline as _create

    return _create(pipeline, **kwargs)
